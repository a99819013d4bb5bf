"""Secret-leak scans: a secret (and any form derived from it, e.g. a Basic auth header) must appear
in none of the places a failure is reported: the exception (message, chained causes, traceback),
the run's event log (messages, metadata, errors with their stacks, the run record), Python logs
(captured at DEBUG) and the process's stdout/stderr.

Use the ``leak_scan`` fixture (conftest.py): it captures logs at DEBUG from the start of the test.
"""

import logging
import traceback
from collections.abc import Iterable

import dagster as dg


def exception_text(error: BaseException) -> str:
    """Everything an exception shows: message, repr, and the formatted chain of causes."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


def event_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """The run's event log and record as stored (every entry serialized, so metadata values and
    error stacks are included), plus their string forms."""
    entries = instance.all_logs(run_id)
    parts = [dg.serialize_value(entry) for entry in entries] + [str(entry) for entry in entries]
    run = instance.get_run_by_id(run_id)
    if run is not None:
        parts += [dg.serialize_value(run), str(run.run_config), str(run.tags)]
    return "\n".join(parts)


class LeakScan:
    def __init__(self, caplog, capfd) -> None:
        self._caplog, self._capfd = caplog, capfd
        caplog.set_level(logging.DEBUG)
        self.scanned: dict[str, int] = {}  # what the last scan looked at, and how many characters

    def assert_absent(
        self,
        secrets: Iterable[str],
        *,
        error: BaseException | str | None = None,
        instance: dg.DagsterInstance | None = None,
        run_id: str | None = None,
    ) -> None:
        secrets = list(secrets)
        assert secrets and all(len(s) >= 8 for s in secrets), "scan for distinctive secrets only"
        out, err = self._capfd.readouterr()
        places = {
            "captured logs": self._caplog.text
            + "\n".join(str(r.getMessage()) + str(r.__dict__) for r in self._caplog.records),
            "stdout/stderr": out + err,
        }
        if error is not None:
            places["exception"] = error if isinstance(error, str) else exception_text(error)
        if run_id is not None:
            assert instance is not None
            places["run's event log"] = event_log_text(instance, run_id)
        self.scanned = {name: len(text) for name, text in places.items()}
        leaks = [
            f"secret #{n} ({secret[:4]}...) in the {name}"
            for n, secret in enumerate(secrets)
            for name, text in places.items()
            if secret in text
        ]
        assert not leaks, "secrets leaked: " + "; ".join(leaks)
