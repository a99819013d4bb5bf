"""A real Dagster deployment on loopback for end-to-end tests and benchmarks: `dagster dev`
(webserver, daemon and code server as separate processes) on a temporary DAGSTER_HOME holding
the repo's dagster.yaml, and history seeded by real runs in a separate process.

`python -m churn_platform_tests.stack seed FIRST LAST` (run with the platform's environment)
materializes the history up to LAST except LAST's interaction logs, which the test lands itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.graphql import GraphQLError, graphql
from churn_platform.orchestration.partitions import LABEL_HORIZON_DAYS
from churn_platform_tests.support.servers import free_port, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Small data makes a weak model; the promotion gate is not what the automation tests are about.
PERMISSIVE_GATE = {"min_roc_auc": 0.5, "min_pr_auc_lift": 1.0}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class DagsterDev:
    """`dagster dev -w workspace.yaml` in its own process group, stopped with everything it started."""

    def __init__(self, home: Path, env: Mapping[str, str]) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():  # a test may have written its own instance
            shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
        self.log_path = home / "dagster-dev.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> DagsterDev:
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1"]
            + ["-p", str(self.port)],
            # Not the repository: `dagster dev` loads ./.env, where `churn-platform demo` writes its settings.
            cwd=self.home,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, timeout=timeout)
        wait_until(self._daemons_healthy, timeout, "the Dagster daemons to report healthy", interval=1)
        return self

    def _daemons_healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            data = self.graphql("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }")
        except GraphQLError:
            return False
        statuses = {
            d["daemonType"]: d["healthy"] for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]
        }
        return all(
            statuses.get(name) for name in ("SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR", "BACKFILL")
        )

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return graphql(self.url, query, variables, timeout=30)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        # `dagster dev` often outlives SIGTERM by 40 s and more; a test needs no graceful shutdown.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # runs and code servers it started, if any survived
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait(timeout=10)


def run_seed(env: Mapping[str, str], first: str, last: str, home: Path) -> None:
    """Materialize the history in a separate process (so that it sees the platform's environment)."""
    subprocess.run(
        [sys.executable, "-m", "churn_platform_tests.support.stack", "seed", first, last],
        cwd=REPO_ROOT,
        env={**os.environ, **env, "DAGSTER_HOME": str(home)},
        check=True,
    )


def _seed(first: str, last: str) -> None:
    import dagster as dg

    from churn_platform.definitions import defs
    from churn_platform.ml.checks import promotion_gate_run_config
    from churn_platform.orchestration.run_tags import partition_range_tags

    day = dt.timedelta(days=1)
    last_day = dt.date.fromisoformat(last)
    before_last = (last_day - day).isoformat()
    last_labelled = (last_day - dt.timedelta(days=LABEL_HORIZON_DAYS + 1)).isoformat()
    crm = [keys.CRM_TICKETS, keys.TICKET_SENTIMENT]
    steps = [
        ("daily_ingestion_job", {"tags": partition_range_tags(first, before_last)}),
        (
            "daily_ingestion_job",
            {"partition_key": last, "asset_selection": crm},
        ),  # as the daily schedule would
        ("labels_job", {"tags": partition_range_tags(first, last_labelled)}),
        (
            "training_job",
            {"partition_key": last_labelled, "run_config": promotion_gate_run_config(PERMISSIVE_GATE)},
        ),
        ("scoring_job", {"tags": partition_range_tags((last_day - 7 * day).isoformat(), before_last)}),
    ]
    with dg.DagsterInstance.get() as instance:
        for job_name, kwargs in steps:
            result = defs.resolve_job_def(job_name).execute_in_process(
                instance=instance, raise_on_error=True, **kwargs
            )
            assert result.success, job_name


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command != "seed":
        raise SystemExit(f"unknown command {command!r}")
    _seed(*args)
