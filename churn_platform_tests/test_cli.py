"""`churn-platform generate` and `churn-platform demo`, run as a user runs them."""

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from churn_platform.cli.main import main
from churn_platform.orchestration import asset_keys as keys

pytestmark = pytest.mark.slow
CLI = os.path.join(os.path.dirname(sys.executable), "churn-platform")


TODAY = dt.datetime.now(dt.UTC).date()
REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    *args: str, cwd: Path, env: dict | None = None, timeout: int = 120
) -> subprocess.CompletedProcess:
    """The installed `churn-platform` in ``cwd`` (it reads ./.env there, as a user's shell would)."""
    return subprocess.run(
        [CLI, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def landed(data: Path) -> dict[str, bytes]:
    root = data / "landing" / "interaction_logs"
    return (
        {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jsonl"))}
        if root.exists()
        else {}
    )


def one_error_line(result) -> str:
    """A failure prints exactly one ``Error:`` line and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert getattr(result, "exception", None) is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_demo_is_current_quiet_and_idempotent(tmp_path):
    """A demo over current dates: the data ends the day before yesterday, CHURN_START_DATE follows it
    into ./.env, Dagster's event stream goes to a log file instead of the terminal, and a second
    demo reports the same files, rows and metrics."""
    shutil.copyfile(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    env = {"CHURN_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("CHURN_START_DATE", None)
    args = ("demo", "--days", "75", "--customers", "400", "--seed", "2")
    first = run_cli(*args, cwd=tmp_path, env=env, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    last, start = TODAY - dt.timedelta(days=2), TODAY - dt.timedelta(days=76)
    out = first.stdout
    assert f"{start}..{last}" in out
    assert f"CHURN_START_DATE={start}\n" in (tmp_path / "home" / "churn.env").read_text()
    assert not (tmp_path / ".env").exists()  # never the directory's .env, which Dagster's CLI loads
    assert f"{keys.INTERACTION_LOGS.to_user_string():34s}   75/75   partitions" in out
    assert f"{keys.CHURN_LABELS.to_user_string():34s}   45/45   partitions" in out
    # Quiet: Dagster's DEBUG stream and library warnings are in the log file, not on the terminal.
    log = tmp_path / "home" / "logs" / "demo.log"
    assert "DEBUG" not in out + first.stderr and "STEP_SUCCESS" in log.read_text()
    assert len(out.splitlines()) < 60, out
    assert "promotion gate: passed - promoted version 1 to champion" in out
    # Rows are counted in the files: they equal a direct count of the landed events.
    events = sum(len(b.splitlines()) for b in landed(tmp_path / "data").values())
    assert f"{events:>10,d} rows" in out.split(keys.INTERACTION_LOGS.to_user_string())[1].splitlines()[0]

    files_before = landed(tmp_path / "data")
    second = run_cli(*args, cwd=tmp_path, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "unchanged=true" in second.stdout and landed(tmp_path / "data") == files_before

    def tables_and_metrics(text: str) -> list[str]:
        metrics = ("  roc_auc", "  pr_auc", "  brier", "  log_loss")
        return [line for line in text.splitlines() if " partitions " in line or line.startswith(metrics)]

    assert len(tables_and_metrics(out)) >= 12
    assert tables_and_metrics(second.stdout) == tables_and_metrics(out)


def test_demo_validates_its_arguments_before_writing(tmp_path):
    env = {"CHURN_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    result = run_cli("demo", "--days", "20", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "needs more than 37 days" in one_error_line(result)
    assert not (tmp_path / "data").exists() and not (tmp_path / "home").exists()


def test_generate_refuses_to_mix_datasets_and_appends_a_day(tmp_path):
    data = tmp_path / "data"
    env = {"CHURN_DATA_DIR": str(data)}
    created = run_cli("generate", "--days", "3", "--customers", "20", "--seed", "1", cwd=tmp_path, env=env)
    assert created.returncode == 0, created.stderr
    assert "days=3 customers=20" in created.stdout
    window = [(TODAY - dt.timedelta(days=n)).isoformat() for n in (4, 3, 2)]  # ends the day before yesterday
    assert sorted({name.split("/")[0] for name in landed(data)}) == [f"date={d}" for d in window]
    assert (data / "crm" / "tickets.jsonl").exists()
    before = landed(data)

    # Another dataset (another seed) is refused, naming the way forward; nothing is written.
    other = run_cli("generate", "--days", "3", "--customers", "20", "--seed", "2", cwd=tmp_path, env=env)
    assert other.returncode == 1
    line = one_error_line(other)
    assert "holds another generated dataset (seed 1, 20 customers" in line and "--force" in line
    assert landed(data) == before

    # The same dataset again changes nothing.
    again = run_cli("generate", "--days", "3", "--customers", "20", "--seed", "1", cwd=tmp_path, env=env)
    assert again.returncode == 0 and "unchanged=true" in again.stdout and landed(data) == before

    # --append-day lands yesterday; the earlier days stay byte for byte what they were.
    appended = run_cli("generate", "--append-day", cwd=tmp_path, env=env)
    assert appended.returncode == 0, appended.stderr
    yesterday = (TODAY - dt.timedelta(days=1)).isoformat()
    after = landed(data)
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(set(after) - set(before)) == [
        f"date={yesterday}/events-am.jsonl",
        f"date={yesterday}/events-pm.jsonl",
    ]
    # The original request again (e.g. the demo re-run after the README's --append-day): nothing
    # to do, every day asked for is landed.
    rerun = run_cli("generate", "--days", "3", "--customers", "20", "--seed", "1", cwd=tmp_path, env=env)
    assert (
        rerun.returncode == 0
        and "unchanged=true" in rerun.stdout
        and f"landed_up_to={yesterday}" in rerun.stdout
    )
    assert landed(data) == after
    # The next day is today: its partition does not exist yet.
    too_soon = run_cli("generate", "--append-day", cwd=tmp_path, env=env)
    assert too_soon.returncode == 1 and "has not ended yet" in one_error_line(too_soon)

    # --force replaces the dataset: only the new one's days remain.
    forced = run_cli(
        "generate", "--days", "2", "--customers", "20", "--seed", "2", "--force", cwd=tmp_path, env=env
    )
    assert forced.returncode == 0, forced.stderr
    assert sorted({name.split("/")[0] for name in landed(data)}) == [f"date={d}" for d in window[1:]]


def test_generate_refuses_files_it_did_not_write(tmp_path):
    data = tmp_path / "data"
    foreign = data / "landing" / "interaction_logs" / "date=2026-03-01" / "export.jsonl"
    foreign.parent.mkdir(parents=True)
    foreign.write_text('{"customer_id": 1}\n')
    result = run_cli(
        "generate", "--days", "3", "--customers", "20", cwd=tmp_path, env={"CHURN_DATA_DIR": str(data)}
    )
    assert result.returncode == 1
    assert "already holds log files for 1 days (2026-03-01..2026-03-01)" in one_error_line(result)
    assert landed(data) == {"date=2026-03-01/export.jsonl": b'{"customer_id": 1}\n'}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("generate", "--days", "0"), 2, "0 is not in the range x>=1"),
        (("generate", "--start-date", "2026-13-01"), 2, "'2026-13-01' is not a date (YYYY-MM-DD)"),
        (("generate", "--force", "--append-day"), 2, "--append-day extends the dataset"),
        (("generate", "--append-day"), 1, "holds no generated dataset to extend"),
        (("backfill", "--from", "2026-02-30", "--to", "2026-03-01"), 2, "'2026-02-30' is not a date"),
        (
            ("backfill", "--from", "20260105", "--to", "2026-01-06"),
            2,
            "'20260105' is not a date (YYYY-MM-DD)",
        ),
        (("generate", "--seed", "-1"), 2, "-1 is not in the range x>=0"),
        (
            ("backfill", "--from", "2025-12-01", "--to", "2026-01-05"),
            2,
            "before the first daily partition, 2026-01-01",
        ),
        (
            ("backfill", "--from", "2026-01-02", "--to", "2999-01-01"),
            2,
            "2999-01-01 has no partition yet: the last is",
        ),
        (
            ("backfill", "--from", "2026-01-05", "--to", "2026-01-02"),
            2,
            "--from 2026-01-05 is after --to 2026-01-02",
        ),
        (
            ("backfill", "--from", "2026-01-02", "--to", "2026-01-03", "--group", "rwa"),
            2,
            "rwa is not a group of daily-partitioned assets; valid: backups, enriched, features, ml, online, raw",
        ),
        (
            ("backfill", "--from", "2026-01-02", "--to", "2026-01-03", "--url", "http://127.0.0.1:9"),
            1,
            "could not reach the Dagster webserver at http://127.0.0.1:9",
        ),
        (("restore", "metadata/none"), 1, "metadata/none"),
    ],
)
def test_cli_mistakes_are_one_actionable_line(tmp_path, monkeypatch, args, code, message):
    """In process (click's runner), as the command line calls it: exit code and the one line."""
    monkeypatch.chdir(tmp_path)
    env = {
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "CHURN_START_DATE": "2026-01-01",
        "DAGSTER_HOME": str(tmp_path),
    }
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == code, result.output
    assert message in one_error_line(result)


def test_debug_shows_the_traceback(tmp_path):
    env = {"CHURN_DATA_DIR": str(tmp_path / "data")}
    quiet = run_cli("generate", "--append-day", cwd=tmp_path, env=env)
    assert "(run with --debug for the traceback)" in one_error_line(quiet)
    loud = run_cli("--debug", "generate", "--append-day", cwd=tmp_path, env=env)
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "DatasetConflict" in loud.stderr


def test_crm_simulator_command_serves_the_export(tmp_path):
    import httpx

    from churn_platform_tests.support.servers import free_port, wait_for_port

    env = {**os.environ, "CHURN_DATA_DIR": str(tmp_path), "ZENDESK_OAUTH_TOKEN": "tok"}
    generated = run_cli("generate", "--days", "3", "--customers", "200", "--seed", "1", cwd=tmp_path, env=env)
    assert generated.returncode == 0, generated.stderr
    port = free_port()
    server = subprocess.Popen(
        [CLI, "crm-simulator", "--port", str(port), "--faults", "server_error=0.0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, timeout=60)
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v2/incremental/tickets/cursor.json",
            params={"start_time": 0},
            headers={"Authorization": "Bearer tok"},
        )
        assert response.status_code == 200 and response.json()["end_of_stream"] is True
        assert len(response.json()["tickets"]) > 0
        assert httpx.get(f"http://127.0.0.1:{port}/api/v2/tickets.json").status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_demo_replaces_only_its_own_dataset(tmp_path, monkeypatch):
    """The demo replaces an earlier demo dataset by itself, never one `generate` wrote: it stops,
    naming what the landing zone holds, before writing anything (its settings file included)."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    env = {"CHURN_DATA_DIR": str(data), "DAGSTER_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["generate", "--days", "40", "--customers", "20", "--seed", "1"], env=env
        ).exit_code
        == 0
    )
    before = landed(data)
    result = runner.invoke(main, ["demo", "--days", "40", "--customers", "20", "--seed", "2"], env=env)
    assert result.exit_code == 1
    assert "holds another generated dataset (seed 1, 20 customers" in one_error_line(result)
    assert landed(data) == before and not (tmp_path / "home" / "churn.env").exists()
