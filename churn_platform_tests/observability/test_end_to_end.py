"""End to end: Prometheus, the Pushgateway and `churn-platform metrics serve` as real processes on
loopback over a real (SQLite) Dagster instance in a temporary DAGSTER_HOME and a local MLflow store.

The platform's state: the demo's runs over 48 days of 200 customers (each asset step pushing its
metrics to the Pushgateway), a run that fails (scoring a day whose features are missing), a run whose
worker is SIGKILLed mid-step (a real `dagster api execute_run` worker, as the local run launcher
starts them) and then failed by Dagster's run monitoring, and a materialization that quarantined
rows. Prometheus scrapes the exporter and the gateway with the repo's alert rules loaded; everything
is asserted through Prometheus's HTTP API, as a dashboard or an alert would see it."""

import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import time

import dagster as dg
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from churn_platform.cli.demo import DemoPlan, run_demo
from churn_platform.definitions import build_definitions
from churn_platform.ml.checks import promotion_gate_run_config
from churn_platform.orchestration import asset_keys as keys
from churn_platform.resources import build_resources
from churn_platform.storage.model_registry import CHAMPION
from churn_platform_tests.observability import prometheus as prom
from churn_platform_tests.observability.test_rules import DASHBOARD, referenced_names, rule_queries
from churn_platform_tests.support.data import START, generate_into, settings_for
from churn_platform_tests.support.stack import PERMISSIVE_GATE, wait_until

pytestmark = pytest.mark.slow

DAYS, CUSTOMERS = 48, 200
PUSHED = "churn_platform_runs"  # the Pushgateway `job` label of what runs push
# Metrics this state cannot have: no predictions were served, so no prediction drift.
NOT_IN_THIS_STATE = {"churn_prediction_psi", "churn_prediction_drift_psi_threshold"}


def launch_run_worker(
    instance, defs, job_name: str, env: dict, log, **run_args
) -> tuple[dg.DagsterRun, subprocess.Popen]:
    """A run executed as the local run launcher executes it: a `dagster api execute_run` process,
    which records its pid in the run's first engine event (what the launcher's health check reads)."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._grpc.types import ExecuteRunArgs
    from dagster._serdes import serialize_value

    origin = (
        ReconstructableRepository.for_module("churn_platform.definitions", "defs", str(prom.REPO_ROOT))
        .get_reconstructable_job(job_name)
        .get_python_origin()
    )
    run = instance.create_run_for_job(defs.resolve_job_def(job_name), job_code_origin=origin, **run_args)
    args = ExecuteRunArgs(
        job_origin=origin, run_id=run.run_id, instance_ref=instance.get_ref(), set_exit_code_on_failure=True
    )
    process = subprocess.Popen(
        [str(prom.BIN / "dagster"), "api", "execute_run", serialize_value(args)],
        env={**os.environ, **env},
        cwd=prom.REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return run, process


def step_started(instance, run_id: str, step_key: str) -> bool:
    return any(
        r.step_key == step_key for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("observability")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copyfile(
        prom.REPO_ROOT / "dagster.yaml", home / "dagster.yaml"
    )  # LocalRunLauncher, run monitoring
    processes: list[prom.Process] = []
    try:
        gateway = prom.pushgateway(root)
        processes.append(gateway)
        environ = {
            "DAGSTER_HOME": str(home),
            "CHURN_DATA_DIR": str(root / "data"),
            "CHURN_START_DATE": START.isoformat(),
            "CHURN_TRAINING_WINDOW_DAYS": "14",
            "CHURN_PUSHGATEWAY_URL": gateway.url,
            "CHURN_METRICS_SCRAPE_TIMEOUT_SECONDS": "1",
        }
        settings = settings_for(environ["CHURN_DATA_DIR"], **environ)
        with dg.DagsterInstance.from_config(str(home)) as instance:  # creates the instance's databases
            # The exporter starts (imports, loads the definitions) while the platform runs.
            exporter = prom.exporter(environ, root)
            processes.append(exporter)
            generate_into(settings, days=DAYS, customers=CUSTOMERS, seed=23)
            defs = build_definitions(settings)
            plan = DemoPlan.for_days(START, DAYS)
            # One OpenMP thread: on 2 shared cores busy with other work, scikit-learn's thread pool
            # made the small model's step take 19-38 s instead of 4 s.
            with threadpool_limits(1):
                run_demo(defs, instance, plan, gate=PERMISSIVE_GATE)
            # A run that fails: scoring the day after the data, whose features were never made.
            missing_day = (dt.date.fromisoformat(plan.last_day) + dt.timedelta(days=1)).isoformat()
            failed = defs.resolve_job_def("scoring_job").execute_in_process(
                instance=instance, partition_key=missing_day, raise_on_error=False
            )
            assert not failed.success
            # A run whose worker dies mid-step (the OOM killer): it stays STARTED, pushes nothing.
            with open(root / "worker.log", "wb") as log:
                crashed, worker = launch_run_worker(
                    instance,
                    defs,
                    "training_job",
                    environ,
                    log,
                    tags={"dagster/partition": plan.last_labelled_day},
                    run_config=promotion_gate_run_config(PERMISSIVE_GATE),
                )
                wait_until(
                    lambda: (
                        step_started(instance, crashed.run_id, "ml__churn_model") or worker.poll() is not None
                    ),
                    90,
                    "the run worker to start training",
                    interval=0.1,
                )
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=30)
            assert instance.get_run_by_id(crashed.run_id).status == dg.DagsterRunStatus.STARTED, (
                root / "worker.log"
            ).read_text()[-3000:]
            # What the data contracts record when they quarantine rows (7 of 100 here).
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    keys.INFERENCE_LOGS,
                    partition=plan.last_day,
                    metadata={"dagster/row_count": 93, "quarantined_rows": 7},
                )
            )
            server = prom.prometheus(root / "prometheus", exporter.port, gateway.port, interval="2s")
            processes.append(server)
            yield {
                "url": server.url,
                "instance": instance,
                "settings": settings,
                "plan": plan,
                "crashed": crashed,
                "failed": failed,
                "processes": processes,
            }
    except BaseException:
        for process in processes:
            print(f"--- {process.log.name}\n{process.log_tail()}")
        raise
    finally:
        for process in reversed(processes):
            process.stop()


def series(stack, expr: str, timeout: float = 40) -> dict[tuple, float]:
    """The query's result once Prometheus has one (it scrapes every 2 s)."""
    return wait_until(lambda: prom.query(stack["url"], expr), timeout, f"Prometheus to have {expr}")


def one(stack, expr: str, timeout: float = 40) -> float:
    [value] = series(stack, expr, timeout).values()
    return value


def test_runs_by_job_and_status_include_the_failed_and_the_crashed_run(stack):
    url, crashed = stack["url"], stack["crashed"]
    success = series(stack, 'churn_runs{job="churn_platform_exporter", status="success"} > 0')
    assert {dict(k)["dagster_job"]: v for k, v in success.items()} == {
        "daily_ingestion_job": 1,
        "labels_job": 1,
        "training_job": 1,
        "scoring_job": 1,
        "metadata_backup_job": 1,
    }
    assert one(stack, 'churn_runs{dagster_job="scoring_job", status="failure"}') == 1
    # The crashed run: STARTED with a dead worker, which only pulling from the instance can see.
    assert one(stack, 'churn_runs_stale{dagster_job="training_job", reason="worker_dead"} == 1') == 1
    assert one(stack, 'churn_runs{dagster_job="training_job", status="started"}') == 1
    assert one(stack, 'churn_runs{dagster_job="training_job", status="failure"}') == 0
    # Run monitoring (one poll of the daemon's own function, with the instance's LocalRunLauncher)
    # fails it; the exporter then counts it as a failure and no longer as stale.
    from dagster._daemon.monitoring.run_monitoring import monitor_started_run

    instance = stack["instance"]
    monitor_started_run(
        instance, None, instance.get_run_record_by_id(crashed.run_id), logging.getLogger("test")
    )
    assert instance.get_run_by_id(crashed.run_id).status == dg.DagsterRunStatus.FAILURE
    assert one(stack, 'churn_runs{dagster_job="training_job", status="failure"} == 1') == 1
    assert one(stack, 'churn_runs_stale{dagster_job="training_job", reason="worker_dead"} == 0') == 0
    assert one(stack, 'sum(churn_runs{status="failure"})') == 2
    assert prom.query(url, 'up{job="churn_platform_exporter"}') == {
        (("instance", f"127.0.0.1:{stack['processes'][1].port}"), ("job", "churn_platform_exporter")): 1.0
    }


def rows_in_files(settings, key: dg.AssetKey, days: list[str]) -> int:
    io_manager = build_resources(settings)["io_manager"]
    return sum(len(pd.read_parquet(io_manager.path_for(key, day).path)) for day in days)


def test_rows_freshness_and_quarantine_of_assets(stack):
    settings, plan = stack["settings"], stack["plan"]
    days = [(START + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
    expected_rows = rows_in_files(settings, keys.CUSTOMER_FEATURES, days)  # one range run wrote them all
    assert one(stack, 'churn_asset_materialization_rows{asset="features/customer_features"}') == expected_rows
    assert one(stack, 'churn_asset_materialized_partitions{asset="features/customer_features"}') == DAYS
    newest_end = dt.datetime.fromisoformat(plan.last_day).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    lag = one(stack, 'churn_asset_freshness_lag_seconds{asset="features/customer_features"}')
    assert abs(lag - (time.time() - newest_end.timestamp())) < 30
    assert (
        one(stack, 'churn_asset_latest_partition_timestamp_seconds{asset="features/customer_features"}')
        == (newest_end - dt.timedelta(days=1)).timestamp()
    )
    assert one(stack, 'churn_asset_materialization_duration_seconds{asset="ml/churn_model"}') > 0
    assert one(stack, 'churn_asset_quarantined_rows{asset="raw/inference_logs"}') == 7
    # Present for every materialized asset: 0 when its contract quarantined nothing.
    quarantined = series(stack, "churn_asset_quarantined_rows")
    assert {dict(k)["asset"] for k in quarantined} >= {"raw/interaction_logs", "features/customer_features"}


def test_the_champion_s_metrics_equal_the_registry_s(stack):
    tracking = build_resources(stack["settings"])["mlflow_tracking"]
    client = tracking.client()
    version = client.get_model_version_by_alias(tracking.model_name, CHAMPION)
    metrics = client.get_run(version.run_id).data.metrics
    assert one(stack, "churn_champion_roc_auc") == pytest.approx(metrics["roc_auc"], rel=1e-12)
    assert one(stack, "churn_champion_pr_auc") == pytest.approx(metrics["pr_auc"], rel=1e-12)
    assert one(stack, "churn_champion_version") == int(version.version)
    assert 0 < one(stack, "churn_champion_age_seconds") < time.time() - version.creation_timestamp / 1000 + 30
    assert one(stack, 'churn_promotion_gate_decisions_total{decision="promoted"}') == 1
    assert one(stack, 'churn_asset_check_passed{check="promotion_gate"}') == 1


def test_psi_per_feature(stack):
    psi = series(stack, "churn_feature_psi")
    assert len(psi) >= 5 and all(value >= 0 for value in psi.values())
    assert one(stack, "churn_feature_drift_max_psi") == pytest.approx(max(psi.values()))
    assert one(stack, "churn_feature_drift_psi_threshold") == 0.25


def test_runs_pushed_their_rows_duration_and_failure(stack):
    settings = stack["settings"]
    days = [(START + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
    pushed = f'churn_run_written_rows{{job="{PUSHED}", dagster_job="daily_ingestion_job", asset="features/customer_features"}}'
    assert one(stack, pushed) == rows_in_files(settings, keys.CUSTOMER_FEATURES, days)
    assert (
        one(stack, f'churn_run_written_partitions{{job="{PUSHED}", asset="features/customer_features"}}')
        == DAYS
    )
    assert one(stack, f'churn_run_duration_seconds{{job="{PUSHED}", dagster_job="daily_ingestion_job"}}') > 0
    assert one(stack, f'churn_run_failed{{job="{PUSHED}", dagster_job="daily_ingestion_job"}}') == 0
    # The deliberately failed run pushed its failure; the crashed one could not push anything.
    assert one(stack, f'churn_run_failed{{job="{PUSHED}", dagster_job="scoring_job"}}') == 1
    assert (
        one(
            stack,
            f'churn_run_step_success{{job="{PUSHED}", dagster_job="scoring_job", asset="ml/churn_scores"}}',
        )
        == 0
    )
    assert (
        one(stack, f'churn_run_failed{{job="{PUSHED}", dagster_job="training_job"}}') == 0
    )  # the demo's run


def test_alert_rules_fire_on_stale_data_quarantine_and_the_crashed_run(stack):
    """The demo's data ends in February: every daily asset's lag is months. The rule for stale data
    (15 minutes `for`) is pending at once; the quarantine rate (7 of 100 rows) fires at once; so does
    the failed-runs rule for the crashed run, failed by run monitoring while Prometheus watched (the
    scoring run failed before Prometheus started: it has no before to compare with)."""

    def alerts() -> dict[tuple[str, str], str]:
        found = prom.api(stack["url"], "alerts")["alerts"]
        return {
            (a["labels"]["alertname"], a["labels"].get("asset") or a["labels"].get("dagster_job", "")): a[
                "state"
            ]
            for a in found
        }

    expected = {
        ("ChurnDataStale", "features/customer_features"),
        ("ChurnQuarantineRate", "raw/inference_logs"),
        ("ChurnRunFailed", "training_job"),
    }

    def all_expected() -> dict[tuple[str, str], str] | None:
        found = alerts()
        return found if expected <= set(found) else None

    state = wait_until(all_expected, 40, f"alerts {expected}")
    assert state[("ChurnDataStale", "features/customer_features")] in ("pending", "firing")
    assert state[("ChurnQuarantineRate", "raw/inference_logs")] == "firing"
    assert state[("ChurnRunFailed", "training_job")] == "firing"
    assert ("ChurnDataStale", "ml/churn_model") not in state  # the model's lag includes its label horizon
    # None of these fires (one slow scrape on a loaded machine may make a source's alert pending:
    # the rules' `for` keeps it from firing, which is the point of it).
    assert not {name for (name, _), status in state.items() if status == "firing"} & {
        "ChurnExporterDown",
        "ChurnExporterSourceDown",
        "ChurnNoChampion",
    }


def test_every_dashboard_query_is_valid_and_shows_data(stack):
    series(stack, "churn_runs")  # scraped at least once
    series(stack, "churn_run_written_rows")
    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]
    for panel in panels:
        results = [
            prom.query(stack["url"], target["expr"]) for target in panel["targets"]
        ]  # raises if invalid
        assert any(results), f"panel {panel['title']!r} shows nothing"


def test_every_metric_the_rules_and_dashboard_use_is_exported(stack):
    series(stack, "churn_run_written_rows")
    names = set(prom.api(stack["url"], "label/__name__/values"))
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = set()
    for text in rule_queries() + [t["expr"] for p in panels if p["type"] != "row" for t in p["targets"]]:
        used |= referenced_names(text)
    assert used - NOT_IN_THIS_STATE <= names, sorted(used - NOT_IN_THIS_STATE - names)
    # Every rule's expression is valid PromQL for this Prometheus.
    for expr in rule_queries():
        prom.query(stack["url"], expr)
