"""The collector's functions on a test instance (runs, stale workers, assets, late partitions,
checks, the gate, the champion in a local MLflow store, drift), the collector's time budget and
failure handling, the names and labels it exports, and the push hooks (a run whose push fails still
succeeds)."""

import datetime as dt
import os
import subprocess
import sys
import threading
import time

import dagster as dg
import pandas as pd
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from prometheus_client.parser import text_string_to_metric_families

from churn_platform.observability import PlatformCollector, Scope, build_push_hooks
from churn_platform.observability import collector as metrics
from churn_platform.observability.exporter import render
from churn_platform.observability.push import registries, step_report
from churn_platform.orchestration import asset_keys as keys
from churn_platform.settings.observability import ObservabilitySettings
from churn_platform.storage.files import write_bytes_atomic
from churn_platform.storage.model_registry import MLflowTracking
from churn_platform.storage.parquet_io_manager import ParquetIOManager
from churn_platform_tests.support.servers import free_port

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")
LOCAL_LAUNCHER = {
    "run_launcher": {"module": "churn_platform.orchestration.run_launcher", "class": "LocalRunLauncher"}
}


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides=LOCAL_LAUNCHER) as instance:
        yield instance


def add_run(instance, job: str, status: dg.DagsterRunStatus, tags=None) -> dg.DagsterRun:
    # A queued run names the code location the daemon will launch it from.
    location = GrpcServerCodeLocationOrigin(host="localhost", port=4266, location_name="churn_platform")
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job)
    return instance.add_run(
        dg.DagsterRun(job_name=job, status=status, tags=tags or {}, remote_job_origin=origin)
    )


def start(instance, run: dg.DagsterRun, worker_pid: int | None, at: float | None = None) -> None:
    """As a run worker does: RUN_START (the run's start time), and the engine event naming its pid."""
    instance.report_dagster_event(
        DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name), run.run_id, timestamp=at
    )
    if worker_pid is not None:
        instance.report_engine_event(
            f"Started process for run (pid: {worker_pid}).", run, EngineEventData.in_process(worker_pid)
        )


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def materialize(instance, key, partition=None, **metadata) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition, metadata=metadata))


# -- runs -------------------------------------------------------------------------------------------------
def test_runs_are_counted_by_job_and_status_with_zeros_and_other_jobs(instance):
    for status in [dg.DagsterRunStatus.SUCCESS] * 3 + [
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.QUEUED,
    ]:
        add_run(instance, "daily_ingestion_job", status)
    add_run(instance, "training_job", dg.DagsterRunStatus.CANCELING)
    add_run(instance, "a_removed_job", dg.DagsterRunStatus.FAILURE)
    counts = metrics.run_counts(instance, ["daily_ingestion_job", "training_job"])
    assert counts[("daily_ingestion_job", "success")] == 3
    assert counts[("daily_ingestion_job", "failure")] == 1
    assert counts[("daily_ingestion_job", "queued")] == 1
    assert counts[("training_job", "success")] == 0  # a zero, so rates and alerts have a start
    assert counts[("training_job", "canceling")] == 1 and counts[("daily_ingestion_job", "canceling")] == 0
    assert counts[("other", "failure")] == 1
    assert ("training_job", "managed") not in counts  # rare statuses only when some run has them


def test_a_started_run_whose_worker_died_is_stale_and_one_past_its_limit_is_overdue(instance):
    dead = add_run(instance, "daily_ingestion_job", dg.DagsterRunStatus.STARTED)
    start(instance, dead, dead_pid())
    alive = add_run(instance, "training_job", dg.DagsterRunStatus.STARTED)
    start(instance, alive, os.getpid())  # this process: alive
    tagged = add_run(instance, "scoring_job", dg.DagsterRunStatus.STARTED, {"dagster/max_runtime": "60"})
    start(instance, tagged, os.getpid())
    not_yet = add_run(instance, "labels_job", dg.DagsterRunStatus.STARTED)
    start(instance, not_yet, None)  # no worker recorded yet: not judged by health
    now = time.time()
    stale = {run.run_id: run.reason for run in metrics.stale_runs(instance, max_run_seconds=3600, now=now)}
    assert stale == {dead.run_id: "worker_dead"}
    later = {
        run.run_id: run.reason for run in metrics.stale_runs(instance, max_run_seconds=3600, now=now + 120)
    }
    assert later == {dead.run_id: "worker_dead", tagged.run_id: "overdue"}  # its own tag: 60 s
    hours = {run.run_id: run.reason for run in metrics.stale_runs(instance, 3600, now + 7200)}
    assert hours == {
        dead.run_id: "worker_dead",
        alive.run_id: "overdue",
        tagged.run_id: "overdue",
        not_yet.run_id: "overdue",
    }


def test_the_oldest_queued_run_s_wait(instance):
    assert metrics.oldest_queued_age(instance, time.time()) == 0
    add_run(instance, "training_job", dg.DagsterRunStatus.QUEUED)
    time.sleep(0.05)
    add_run(instance, "scoring_job", dg.DagsterRunStatus.QUEUED)
    age = metrics.oldest_queued_age(instance, time.time() + 100)
    assert 100 < age < 110


# -- assets -----------------------------------------------------------------------------------------------
def test_asset_states_newest_partition_freshness_rows_bytes_and_quarantine(instance):
    features, metadata = keys.CUSTOMER_FEATURES, keys.PLATFORM_METADATA
    materialize(instance, features, "2026-03-03", **{"dagster/row_count": 120, "bytes": 4096})
    materialize(
        instance, features, "2026-03-01", **{"dagster/row_count": 100, "bytes": 2048}
    )  # a late backfill
    materialize(instance, metadata, None, bytes_total=9000, rows_total=7, quarantined_rows=3)
    now = dt.datetime(2026, 3, 5, 6, tzinfo=dt.UTC).timestamp()
    states = {
        s.asset: s
        for s in metrics.asset_states(
            instance, {features: DAILY, metadata: None, keys.CHURN_SCORES: DAILY}, now
        )
    }
    assert set(states) == {
        "features/customer_features",
        "backups/platform_metadata",
    }  # scores: never materialized
    daily = states["features/customer_features"]
    assert daily.latest_partition == "2026-03-03" and daily.materialized_partitions == 2
    assert daily.latest_partition_timestamp == dt.datetime(2026, 3, 3, tzinfo=dt.UTC).timestamp()
    # The newest partition ended at 2026-03-04 00:00: 30 hours before now, whatever was run last.
    assert daily.freshness_lag_seconds == 30 * 3600
    assert (daily.rows, daily.bytes, daily.quarantined_rows) == (100, 2048, 0)  # the latest event's
    assert daily.duration_seconds is None  # reported without a run: no step
    snapshot = states["backups/platform_metadata"]
    assert (snapshot.rows, snapshot.bytes, snapshot.quarantined_rows) == (7, 9000, 3)
    # Unpartitioned: how long ago it was materialized.
    later = snapshot.last_materialization_timestamp + 600
    [snapshot] = metrics.asset_states(instance, {metadata: None}, later)
    assert snapshot.freshness_lag_seconds == 600


def test_late_partitions_are_counted_per_asset_partition_by_partition(instance):
    """An old day backfilled last (the newest event) hides nothing: the missing recent day counts."""
    from churn_platform.definitions import build_definitions
    from churn_platform.orchestration.freshness import Deadline
    from churn_platform.settings import load_settings

    deadline = Deadline(dt.timedelta(hours=2), DAILY, lookback_days=7)
    now = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC).timestamp()
    for day in (
        "2026-03-03",
        "2026-03-04",
        "2026-03-05",
        "2026-03-06",
        "2026-03-08",
        "2026-03-09",
        "2026-01-20",
    ):
        materialize(instance, keys.CUSTOMER_FEATURES, day)
    deadlines = {keys.CUSTOMER_FEATURES: deadline, keys.CHURN_SCORES: deadline}
    assert metrics.late_partition_counts(instance, deadlines, now) == {
        "features/customer_features": 1,  # 2026-03-07
        "ml/churn_scores": 7,  # nothing at all: the week the look-back covers
    }
    collector = PlatformCollector(instance, Scope(jobs=(), assets={}, deadlines=deadlines), clock=lambda: now)
    try:
        families = scrape(collector)
    finally:
        collector.close()
    assert value(families, "churn_asset_late_partitions", asset="features/customer_features") == 1
    assert value(families, "churn_asset_late_partitions", asset="ml/churn_scores") == 7
    # The exporter reads the deadlines the definitions carry.
    scope = Scope.from_definitions(
        build_definitions(load_settings({"CHURN_FRESHNESS_DEADLINES": "ml/churn_scores=off"}))
    )
    assert keys.CUSTOMER_FEATURES in scope.deadlines and keys.CHURN_SCORES not in scope.deadlines


def test_materialization_duration_is_the_step_s(instance):
    @dg.asset(partitions_def=DAILY)
    def tiny(context) -> dg.MaterializeResult:
        time.sleep(0.2)
        return dg.MaterializeResult(metadata={"dagster/row_count": 5})

    assert dg.materialize([tiny], instance=instance, partition_key="2026-01-02").success
    [state] = metrics.asset_states(instance, {tiny.key: DAILY}, time.time())
    assert state.rows == 5 and 0.2 <= state.duration_seconds < 5


# -- checks and the gate ----------------------------------------------------------------------------------
def evaluate(
    instance, check_key: dg.AssetCheckKey, passed: bool, severity=dg.AssetCheckSeverity.ERROR, **meta
):
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=check_key.asset_key,
            check_name=check_key.name,
            passed=passed,
            severity=severity,
            metadata=meta,
        )
    )


def test_check_states_and_gate_decisions(instance):
    assert metrics.gate_decisions(instance) == metrics.GateDecisions()
    evaluate(instance, keys.PROMOTION_GATE, True, roc_auc=0.81)
    evaluate(instance, keys.PROMOTION_GATE, False, roc_auc=0.62)
    evaluate(instance, keys.PROMOTION_GATE, False, roc_auc=0.64)
    evaluate(instance, keys.DRIFT_BELOW_THRESHOLD, False, dg.AssetCheckSeverity.WARN)
    checks = [keys.PROMOTION_GATE, keys.DRIFT_BELOW_THRESHOLD, keys.RECOVERY_OBJECTIVES]
    states = {(s.asset, s.check): s for s in metrics.check_states(instance, checks)}
    assert set(states) == {
        ("ml/churn_model", "promotion_gate"),
        ("ml/feature_drift", "drift_below_threshold"),
    }
    assert not states[("ml/churn_model", "promotion_gate")].passed  # the latest
    assert states[("ml/feature_drift", "drift_below_threshold")].severity == "warn"
    gate = metrics.gate_decisions(instance)
    assert (gate.passed, gate.rejected, gate.last_passed, gate.last_candidate_roc_auc) == (1, 2, False, 0.64)
    # Counted across pages.
    assert metrics.gate_decisions(instance, limit=2).rejected == 2
    paged = metrics.gate_decisions(instance, limit=3)
    assert (paged.passed, paged.rejected) == (1, 2)


# -- the champion -----------------------------------------------------------------------------------------
def test_the_champion_s_version_age_and_out_of_time_metrics(tmp_path):
    tracking = MLflowTracking(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "a")
    )
    assert metrics.champion_state(tracking, time.time()) is None  # no registered model at all
    client = tracking.client()
    run = client.create_run(tracking.experiment_id(client))
    client.log_metric(run.info.run_id, "roc_auc", 0.77)
    client.log_metric(run.info.run_id, "pr_auc", 0.41)
    client.create_registered_model(tracking.model_name)
    version = client.create_model_version(tracking.model_name, str(tmp_path / "m"), run_id=run.info.run_id)
    assert metrics.champion_state(tracking, time.time()) is None  # registered, not promoted
    client.set_model_version_tag(tracking.model_name, version.version, "training_cutoff", "2026-02-01")
    client.set_registered_model_alias(tracking.model_name, "champion", version.version)
    state = metrics.champion_state(tracking, version.creation_timestamp / 1000 + 3600)
    assert state.version == 1 and state.metrics == {"roc_auc": 0.77, "pr_auc": 0.41}
    assert state.age_seconds == pytest.approx(3600)
    assert state.training_cutoff_timestamp == dt.datetime(2026, 2, 1, tzinfo=dt.UTC).timestamp()


# -- drift ------------------------------------------------------------------------------------------------
def test_psi_per_feature_comes_from_the_newest_day_s_file(instance, tmp_path):
    warehouse = ParquetIOManager(base_path=str(tmp_path / "warehouse"))
    for day, spend in (("2026-03-02", 0.5), ("2026-03-01", 0.1)):
        frame = pd.DataFrame(
            {
                "as_of_date": [day] * 2,
                "feature": ["spend_30d", "events_7d"],
                "psi": [spend, 0.02],
                "drifted": [True, False],
            }
        )
        write_bytes_atomic(warehouse.path_for(keys.FEATURE_DRIFT, day), frame.to_parquet(index=False))
        materialize(
            instance, keys.FEATURE_DRIFT, day, psi_threshold=0.25, max_psi=spend, max_psi_by_day={day: spend}
        )
    drift = metrics.feature_drift(instance, warehouse)
    assert drift == metrics.DriftState("2026-03-02", {"spend_30d": 0.5, "events_7d": 0.02}, 0.5, 0.25)
    assert metrics.prediction_drift(instance) == (None, None)
    materialize(instance, keys.PREDICTION_DRIFT, "2026-03-02", psi=0.31, psi_threshold=0.25)
    assert metrics.prediction_drift(instance) == (0.31, 0.25)


# -- the collector ----------------------------------------------------------------------------------------
SCOPE = Scope(
    jobs=("daily_ingestion_job", "training_job", metrics.ASSET_JOB),
    assets={keys.CUSTOMER_FEATURES: DAILY, keys.PLATFORM_METADATA: None},
    checks=(keys.PROMOTION_GATE, keys.DRIFT_BELOW_THRESHOLD),
)


def scrape(collector) -> dict[str, list]:
    """Metric family name -> samples, as Prometheus would parse them."""
    return {f.name: f.samples for f in text_string_to_metric_families(render(collector).decode())}


def value(families, name, **labels):
    [sample] = [s for s in families[name] if all(s.labels.get(k) == v for k, v in labels.items())]
    return sample.value


def test_one_scrape_names_units_and_bounded_labels(instance):
    add_run(instance, "daily_ingestion_job", dg.DagsterRunStatus.FAILURE)
    dead = add_run(instance, "training_job", dg.DagsterRunStatus.STARTED)
    start(instance, dead, dead_pid())
    materialize(
        instance, keys.CUSTOMER_FEATURES, "2026-03-03", **{"dagster/row_count": 120, "quarantined_rows": 4}
    )
    evaluate(instance, keys.PROMOTION_GATE, True, roc_auc=0.8)
    collector = PlatformCollector(instance, SCOPE, timeout_seconds=5)
    try:
        families = scrape(collector)
    finally:
        collector.close()
    assert value(families, "churn_runs", dagster_job="daily_ingestion_job", status="failure") == 1
    assert value(families, "churn_runs_stale", dagster_job="training_job", reason="worker_dead") == 1
    assert value(families, "churn_asset_materialization_rows", asset="features/customer_features") == 120
    assert value(families, "churn_asset_quarantined_rows", asset="features/customer_features") == 4
    assert value(families, "churn_promotion_gate_decisions", decision="promoted") == 1  # ..._total
    assert value(families, "churn_asset_check_passed", check="promotion_gate") == 1
    for source in ("runs", "assets", "checks", "drift"):
        assert value(families, "churn_exporter_source_up", source=source) == 1
    # Conventions: the churn_ prefix, counters end in _total, no label Prometheus owns (job,
    # instance) and none that grows without bound (partition keys, run ids).
    labels = set()
    for name, samples in families.items():
        if name.startswith("process_"):
            continue
        assert name.startswith("churn_"), name
        for sample in samples:
            labels |= set(sample.labels)
            assert sample.name == name or sample.name == f"{name}_total", sample.name
    assert labels <= {
        "dagster_job",
        "status",
        "reason",
        "asset",
        "check",
        "severity",
        "decision",
        "feature",
        "source",
    }
    assert not any(
        dead.run_id in str(s.labels) or "2026-03-03" in str(s.labels) for f in families.values() for s in f
    )


def test_a_failing_source_is_left_out_and_reported_down(instance, monkeypatch):
    def broken(*_):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(metrics, "asset_states", broken)
    collector = PlatformCollector(instance, SCOPE, timeout_seconds=5)
    try:
        families = scrape(collector)
    finally:
        collector.close()
    assert value(families, "churn_exporter_source_up", source="assets") == 0
    assert value(families, "churn_exporter_source_up", source="runs") == 1
    assert "churn_asset_freshness_lag_seconds" not in families and "churn_runs" in families


def test_a_scrape_takes_at_most_its_budget_and_a_stuck_source_is_not_started_twice(instance, monkeypatch):
    release, calls = threading.Event(), []

    def stuck(*_):
        calls.append(1)
        release.wait(30)
        return []

    monkeypatch.setattr(metrics, "check_states", stuck)
    collector = PlatformCollector(instance, SCOPE, timeout_seconds=0.5)
    try:
        for _ in range(2):
            started = time.monotonic()
            families = scrape(collector)
            assert time.monotonic() - started < 2.5
            assert value(families, "churn_exporter_source_up", source="checks") == 0
            assert value(families, "churn_exporter_source_up", source="runs") == 1
        assert len(calls) == 1  # the second scrape did not pile another call on the stuck one
        release.set()
        time.sleep(0.2)
        assert value(scrape(collector), "churn_exporter_source_up", source="checks") == 1
    finally:
        release.set()
        collector.close()


# -- pushes -----------------------------------------------------------------------------------------------
def test_without_a_pushgateway_there_are_no_hooks():
    assert build_push_hooks(ObservabilitySettings()) == set()


def test_a_push_that_fails_never_fails_the_run_and_the_report_is_what_the_step_wrote(instance):
    settings = ObservabilitySettings(
        pushgateway_url=f"http://127.0.0.1:{free_port()}", pushgateway_timeout_seconds=1
    )
    hooks = build_push_hooks(settings)

    @dg.asset(key=["raw", "tiny"], partitions_def=DAILY)
    def tiny() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"dagster/row_count": 5, "bytes": 64})

    @dg.asset(key=["features", "broken"], partitions_def=DAILY, deps=[tiny])
    def broken() -> None:
        raise RuntimeError("its input file is missing")

    assets = [a.with_hooks(hooks) for a in (tiny, broken)]
    result = dg.materialize(assets, instance=instance, partition_key="2026-01-02", raise_on_error=False)
    assert not result.success  # `broken` failed; the pushes' failures changed nothing
    assert result.is_node_success("raw__tiny")
    warnings = [
        r.user_message
        for r in instance.all_logs(result.run_id)
        if "were not pushed to the Pushgateway" in (r.user_message or "")
    ]
    assert len(warnings) == 2  # one per step, as warnings
    run = instance.get_run_record_by_id(result.run_id)
    report = step_report(
        instance, result.run_id, "__ASSET_JOB", "raw__tiny", True, run.end_time or time.time()
    )
    assert report.writes["raw/tiny"].rows == 5 and report.writes["raw/tiny"].bytes == 64
    assert report.succeeded and report.step_seconds is not None and report.run_seconds >= report.step_seconds
    failed = step_report(instance, result.run_id, "__ASSET_JOB", "features__broken", False, time.time())
    assert failed.run_failed and set(failed.writes) == {"features/broken"}
    groups = [grouping for _, grouping in registries(failed)]
    assert groups == [
        {"dagster_job": "__ASSET_JOB", "asset": "features/broken"},
        {"dagster_job": "__ASSET_JOB"},
    ]


def test_the_definitions_attach_the_push_hooks_to_every_asset_only_with_a_pushgateway(tmp_path):
    from churn_platform.definitions import build_definitions
    from churn_platform_tests.support.data import settings_for

    def hooks(**environ) -> set[frozenset[str]]:
        graph = build_definitions(settings_for(str(tmp_path / "data"), **environ)).resolve_asset_graph()
        return {frozenset(h.name for h in a.hook_defs) for a in graph.assets_defs if a.keys}  # not checks

    assert hooks() == {frozenset()}
    pushing = frozenset({"push_metrics_after_success", "push_metrics_after_failure"})
    assert hooks(CHURN_PUSHGATEWAY_URL="http://pushgateway:9091") == {pushing}


def test_metrics_print_reads_the_instance_of_dagster_home(tmp_path):
    from click.testing import CliRunner

    from churn_platform.cli.main import main

    home = tmp_path / "home"
    home.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        add_run(instance, "labels_job", dg.DagsterRunStatus.FAILURE)
    environ = {"DAGSTER_HOME": str(home), "CHURN_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(main, ["metrics", "print"], env=environ, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    families = {f.name: f.samples for f in text_string_to_metric_families(result.stdout)}
    assert value(families, "churn_runs", dagster_job="labels_job", status="failure") == 1
    assert value(families, "churn_champion_present") == 0  # an empty registry
    assert value(families, "churn_exporter_source_up", source="champion") == 1
