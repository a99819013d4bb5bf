"""The production instance (deploy/dagster.yaml) on a real PostgreSQL server: runs, event logs and
schedules in Postgres, concurrent runs, and a run worker killed mid-run failed and alerted."""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psutil
import psycopg2
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.run_launcher import run_worker_pid
from churn_platform_tests.support.data import START, generate_into, settings_for
from churn_platform_tests.support.deployment import postgres_database, production_instance_home
from churn_platform_tests.support.servers import WebhookReceiver
from churn_platform_tests.support.stack import BIN, REPO_ROOT, DagsterDev, wait_until

DAYS = [(START.replace(day=d)).isoformat() for d in range(1, 6)]
INGESTION = "group:raw or group:enriched or group:features"


def materialize(env: dict[str, str], selection: str, partition_args: list[str]) -> subprocess.Popen:
    """What a user types: `dagster asset materialize` against the instance in DAGSTER_HOME."""
    return subprocess.Popen(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "churn_platform.definitions",
            "--select",
            selection,
        ]
        + partition_args,
        cwd=env["DAGSTER_HOME"],  # not the repository, whose ./.env (from `make demo`) Dagster would load
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finished(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]
    return output.decode(errors="replace")


@contextlib.contextmanager
def production(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    """The instance as the deployment's processes open it (its configuration reads the environment)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            yield instance


@pytest.fixture
def production_instance(tmp_path):
    settings = settings_for(str(tmp_path / "data"))
    generate_into(settings, days=12, customers=40, seed=5)
    with postgres_database() as database:
        home = production_instance_home(tmp_path / "dagster_home")
        env = {
            "DAGSTER_HOME": str(home),
            "CHURN_DATA_DIR": settings.storage.data_dir,
            "CHURN_START_DATE": START.isoformat(),
            **database.dagster_env,
        }
        yield env, database


def test_the_production_instance_keeps_runs_events_and_materializations_in_postgres(production_instance):
    env, database = production_instance
    # A few partitions of the graph in one range run, then two runs at the same time.
    finished(materialize(env, INGESTION, ["--partition-range", f"{DAYS[0]}...{DAYS[2]}"]))
    # (Raw and enriched data only: a day's features read the previous days' activity.)
    both = [materialize(env, "group:raw or group:enriched", ["--partition", day]) for day in DAYS[3:5]]
    for process in both:
        finished(process)

    with production(env) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        records = instance.get_run_records()
        assert len(records) == 3
        assert {r.dagster_run.status for r in records} == {dg.DagsterRunStatus.SUCCESS}
        # The two single-day runs overlapped in time: concurrent writers on one Postgres instance.
        first, second = sorted(records, key=lambda r: r.start_time)[1:]
        assert second.start_time < first.end_time
        expected = {
            keys.INTERACTION_LOGS: DAYS,
            keys.TICKET_SENTIMENT: DAYS,
            keys.CUSTOMER_FEATURES: DAYS[:3],
        }
        for key, days in expected.items():
            materialized = {
                event.partition_key
                for event in instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=key), limit=100
                ).records
            }
            assert materialized == set(days), key

    # Read back from the database itself, not through Dagster: the rows are really in Postgres.
    with psycopg2.connect(database.url.replace("+psycopg2", "")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
        assert cursor.fetchone()[0] == 3
        cursor.execute(
            "SELECT count(DISTINCT partition) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
            "AND asset_key = %s",
            (keys.INTERACTION_LOGS.to_string(),),
        )
        assert cursor.fetchone()[0] == len(DAYS)


@pytest.mark.slow
@pytest.mark.parametrize("lost", ["worker", "worker and code server"])
def test_a_run_whose_worker_dies_is_failed_and_alerted_once(production_instance, lost):
    """The run worker is SIGKILLed mid-run (the kernel's OOM killer). With its code server alive,
    the code server notices at once; with the code server frozen too (the machine or pod gone),
    run monitoring notices, through the run launcher's worker health check, within its poll
    interval. Either way the run is failed, its partition's slot freed, and Slack told once how."""
    env, _ = production_instance
    production_instance_home(Path(env["DAGSTER_HOME"]), monitoring={"poll_interval_seconds": 2})
    webhook = WebhookReceiver()
    env = {**env, "SLACK_WEBHOOK_URL": webhook.url}
    dev = DagsterDev(Path(env["DAGSTER_HOME"]), env)
    frozen: psutil.Process | None = None
    try:
        subprocess.run(
            [
                str(BIN / "dagster"),
                "sensor",
                "start",
                "run_failure_alert",
                "-w",
                str(REPO_ROOT / "workspace.yaml"),
            ],
            cwd=dev.home,
            env=dev.env,
            check=True,
            capture_output=True,
        )
        dev.start()
        subprocess.run(
            [str(BIN / "churn-platform"), "backfill", "--from", DAYS[0], "--to", "2026-01-12"]
            + ["--url", dev.url, "--no-wait"],
            env=dev.env,
            check=True,
            capture_output=True,
        )
        with production(env) as instance:
            started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
            run = wait_until(
                lambda: next(iter(instance.get_runs(started)), None), 120, "the backfill's run to start"
            )
            pid = wait_until(lambda: run_worker_pid(instance, run.run_id), 30, "the run worker's pid")
            if lost == "worker and code server":
                frozen = psutil.Process(pid).parent()  # the code server that started the worker
                frozen.suspend()
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_until(
                lambda: instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
                60,
                "the killed run to be marked failed",
            )
            detected_after = time.monotonic() - killed_at
            if frozen is not None:
                assert detected_after < 2 * 2 + 10  # two poll intervals, and the daemon's own loop
                frozen.resume()
                frozen = None
            failure = instance.get_run_by_id(run.run_id)
            assert failure.status == dg.DagsterRunStatus.FAILURE
            # The failure sensor alerts it exactly once, saying what happened to the worker.
            wait_until(lambda: webhook.bodies, 120, "the failure alert to reach Slack")
            time.sleep(5)
            assert len(webhook.bodies) == 1
            alert = str(webhook.bodies[0])
            assert run.run_id in alert
            monitoring_saw_it = (
                "Detected run worker status FAILED" in alert and f"run worker process {pid} is gone" in alert
            )
            if lost == "worker":
                # Usually the code server reports the signal first; on a loaded machine run
                # monitoring's poll (every 2 s here) can win the race. Either names what happened.
                assert "terminated by signal 9 (SIGKILL)" in alert or monitoring_saw_it
            else:
                assert monitoring_saw_it
    except BaseException:
        print(dev.log_tail())
        raise
    finally:
        if frozen is not None:
            frozen.resume()
        dev.stop()
        webhook.stop()
