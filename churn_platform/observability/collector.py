"""The platform's health as Prometheus metrics, read from the Dagster instance and the MLflow
registry when Prometheus scrapes (nothing is cached between scrapes, nothing is written).

Plain functions read one thing each (``run_counts``, ``stale_runs``, ``asset_states``,
``late_partition_counts``, ``check_states``, ``gate_decisions``, ``champion_state``,
``feature_drift``); ``PlatformCollector`` runs them as five sources in parallel under one time
budget per scrape and turns their answers into metric families. A source that fails or does not
answer in time is left out of that scrape and reported as ``churn_exporter_source_up{source} 0``;
one still busy from an earlier scrape is not started twice.

Cardinality: every label value comes from a bounded set: the definitions' jobs (plus ``other``),
Dagster's run statuses, the definitions' asset keys and asset checks, the drift features, and a
few fixed words (``reason``, ``decision``, ``severity``, ``source``). Partition keys and run ids are
never labels: the newest partition is a value (``churn_asset_latest_partition_timestamp_seconds``)
and runs are counted, not listed.
"""

import concurrent.futures
import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.launcher.base import WorkerStatus
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.freshness import Deadline, deadlines_from_graph, late_partitions
from churn_platform.storage.files import read_bytes
from churn_platform.storage.materializations import latest_materialization
from churn_platform.storage.model_registry import CHAMPION, MLflowTracking
from churn_platform.storage.parquet_io_manager import ParquetIOManager, parquet_bytes_to_dataframe

log = logging.getLogger(__name__)

ASSET_JOB = "__ASSET_JOB"  # Dagster's job for runs launched by asset selection (UI, backfills)
OTHER_JOB = "other"  # runs of a job the definitions no longer have
RUN_STATUSES = tuple(dg.DagsterRunStatus)
# Reported for every job even at 0 (so rates and alerts start from a value); the rarer statuses
# (not_started, managed, starting, suspended, canceling) only when some run has them.
ALWAYS_REPORTED = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
}
MAX_RUNTIME_TAGS = (
    "dagster/max_runtime",
    "dagster/max_runtime_seconds",
)  # as Dagster's run monitoring reads them
COMPLETED_CHECKS = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}
# The champion's run metrics exported, by MLflow key (the evaluation rows are out of time).
CHAMPION_METRICS = {
    "roc_auc": ("churn_champion_roc_auc", "Out-of-time ROC AUC of the champion model."),
    "pr_auc": ("churn_champion_pr_auc", "Out-of-time PR AUC (average precision) of the champion model."),
    "brier": ("churn_champion_brier_score", "Out-of-time Brier score of the champion model."),
    "log_loss": ("churn_champion_log_loss", "Out-of-time log loss of the champion model."),
    "expected_saving_per_customer": (
        "churn_champion_expected_saving_per_customer",
        "Expected saving per customer of the champion at its decision threshold (currency units).",
    ),
}


def status_label(status: dg.DagsterRunStatus) -> str:
    return status.value.lower()


def asset_label(key: dg.AssetKey) -> str:
    return key.to_user_string()


@dataclass(frozen=True)
class Scope:
    """What the exporter reports on, taken from the definitions: the jobs, the assets (with their
    partitions, for freshness, and their partition deadlines) and the asset checks. These are the
    only label values it emits."""

    jobs: tuple[str, ...]
    assets: Mapping[dg.AssetKey, dg.PartitionsDefinition | None]
    checks: tuple[dg.AssetCheckKey, ...] = ()
    deadlines: Mapping[dg.AssetKey, Deadline] = field(default_factory=dict)

    @classmethod
    def from_definitions(cls, defs: dg.Definitions) -> "Scope":
        graph = defs.resolve_asset_graph()
        materializable = sorted(graph.materializable_asset_keys, key=asset_label)
        return cls(
            jobs=tuple(sorted({job.name for job in defs.resolve_all_job_defs()} | {ASSET_JOB})),
            assets={key: graph.get(key).partitions_def for key in materializable},
            checks=tuple(sorted(graph.asset_check_keys, key=lambda k: (asset_label(k.asset_key), k.name))),
            deadlines=deadlines_from_graph(graph),
        )


# -- runs ----------------------------------------------------------------------------------------------
def run_counts(instance: dg.DagsterInstance, jobs: Sequence[str]) -> dict[tuple[str, str], int]:
    """Runs the instance holds, by (job, status), for every job in ``jobs`` (zeros included for the
    main statuses, so rates start from a value); runs of other jobs are counted as ``other``.
    Count queries only: the cost does not grow with the runs' event logs."""
    counts: dict[tuple[str, str], int] = {}
    for status in RUN_STATUSES:
        total = instance.get_runs_count(dg.RunsFilter(statuses=[status]))
        if not total and status not in ALWAYS_REPORTED:
            continue
        known = 0
        for job in jobs:
            count = instance.get_runs_count(dg.RunsFilter(job_name=job, statuses=[status])) if total else 0
            counts[(job, status_label(status))] = count
            known += count
        if total > known:
            counts[(OTHER_JOB, status_label(status))] = total - known
    return counts


@dataclass(frozen=True)
class StaleRun:
    job: str
    run_id: str
    reason: str  # worker_dead | overdue
    running_seconds: float | None


def _health_checking_launcher(instance: dg.DagsterInstance):
    try:
        launcher = instance.run_launcher
    except Exception as exc:  # e.g. the K8s launcher outside a cluster
        log.warning("run launcher unavailable, stale runs are judged by age only: %s", exc)
        return None
    return launcher if launcher.supports_check_run_worker_health else None


def _max_runtime(run: dg.DagsterRun, default_seconds: float) -> float:
    for tag in MAX_RUNTIME_TAGS:
        try:
            if run.tags.get(tag):
                return float(run.tags[tag])
        except ValueError:
            pass
    return default_seconds


def stale_runs(
    instance: dg.DagsterInstance, max_run_seconds: float, now: float, limit: int = 500
) -> list[StaleRun]:
    """STARTED runs that are not really running: their worker is gone (the instance's run launcher
    says so: locally the worker's process, on Kubernetes the run's Job) or they have been running
    longer than ``max_run_seconds`` (or their own ``dagster/max_runtime`` tag). Such a run never
    reports anything itself; run monitoring fails it on its next poll, when it is enabled."""
    launcher = _health_checking_launcher(instance)
    stale = []
    records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=limit)
    for record in records:
        run = record.dagster_run
        running = now - record.start_time if record.start_time else None
        reason = None
        if launcher is not None:
            try:
                health = launcher.check_run_worker_health(run).status
            except Exception as exc:
                log.warning("worker health of run %s unknown: %s", run.run_id, exc)
                health = WorkerStatus.UNKNOWN
            if health in (WorkerStatus.FAILED, WorkerStatus.NOT_FOUND):
                reason = "worker_dead"
        if reason is None and running is not None and running > _max_runtime(run, max_run_seconds):
            reason = "overdue"
        if reason is not None:
            stale.append(StaleRun(run.job_name, run.run_id, reason, running))
    return stale


def oldest_queued_age(instance: dg.DagsterInstance, now: float) -> float:
    """Seconds the oldest QUEUED run has waited (0 when none waits)."""
    records = instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]), limit=1, ascending=True
    )
    return max(0.0, now - records[0].create_timestamp.timestamp()) if records else 0.0


# -- assets --------------------------------------------------------------------------------------------
def _number(metadata: Mapping[str, Any], *names: str) -> float | None:
    """The first of ``names`` present in the metadata as a number."""
    for name in names:
        value = metadata.get(name)
        value = getattr(value, "value", value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


@dataclass(frozen=True)
class AssetState:
    asset: str
    last_materialization_timestamp: float
    # Time-partitioned: now minus the end of the newest materialized partition (how old the newest
    # data is); otherwise now minus the last materialization.
    freshness_lag_seconds: float
    latest_partition: str | None
    latest_partition_timestamp: float | None  # start of the newest materialized partition
    materialized_partitions: int
    rows: float | None  # of the latest materialization (a range run: the whole range it wrote)
    bytes: float | None
    duration_seconds: float | None  # of the step that wrote the latest materialization
    quarantined_rows: float  # metadata `quarantined_rows` of the latest materialization, else 0


def _newest_partition(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> tuple[str | None, dt.datetime | None, dt.datetime | None, int]:
    """The newest materialized partition of a time-partitioned asset (key, window start, end), and
    how many partitions are materialized."""
    materialized = instance.get_materialized_partitions(key)
    parsed = {}
    for partition in materialized:
        try:
            parsed[partition] = dt.datetime.strptime(partition, partitions_def.fmt)
        except ValueError:
            continue
    if not parsed:
        return None, None, None, len(materialized)
    newest = max(parsed, key=parsed.__getitem__)
    window = partitions_def.time_window_for_partition_key(newest)
    return newest, window.start, window.end, len(materialized)


def _step_durations(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    return {
        record.step_key: record.dagster_event.event_specific_data.duration_ms / 1000
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        if record.step_key and record.dagster_event is not None
    }


def asset_states(
    instance: dg.DagsterInstance,
    assets: Mapping[dg.AssetKey, dg.PartitionsDefinition | None],
    now: float,
) -> list[AssetState]:
    """Each materialized asset's latest materialization: when, how much (rows, bytes, quarantined
    rows), how long its step took, and how fresh its newest partition is. One query for the latest
    events, one per time-partitioned asset for its partitions, one per run for step durations."""
    latest = instance.get_latest_materialization_events(list(assets))
    durations: dict[str, dict[str, float]] = {}
    states = []
    for key, partitions_def in assets.items():
        entry = latest.get(key)
        if entry is None or entry.asset_materialization is None:
            continue
        meta = entry.asset_materialization.metadata
        partition, start, end, count = entry.asset_materialization.partition, None, None, 0
        if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            newest, start, end, count = _newest_partition(instance, key, partitions_def)
            partition = newest or partition
        elif partitions_def is not None:
            count = len(instance.get_materialized_partitions(key))
        duration = None
        if entry.run_id and entry.step_key:
            if entry.run_id not in durations:
                durations[entry.run_id] = _step_durations(instance, entry.run_id)
            duration = durations[entry.run_id].get(entry.step_key)
        states.append(
            AssetState(
                asset=asset_label(key),
                last_materialization_timestamp=entry.timestamp,
                freshness_lag_seconds=max(0.0, now - (end.timestamp() if end else entry.timestamp)),
                latest_partition=partition,
                latest_partition_timestamp=start.timestamp() if start else None,
                materialized_partitions=count,
                rows=_number(meta, "dagster/row_count", "rows_total"),
                bytes=_number(meta, "bytes", "bytes_total"),
                duration_seconds=duration,
                quarantined_rows=_number(meta, "quarantined_rows") or 0.0,
            )
        )
    return states


def late_partition_counts(
    instance: dg.DagsterInstance, deadlines: Mapping[dg.AssetKey, Deadline], now: float
) -> dict[str, int]:
    """Per asset with a deadline: its partitions past their deadline (within the look-back) that do
    not exist, as partition_freshness sees them, but computed here, so that a stopped sensor does
    not hide them. One partition list per asset."""
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    counts = dict.fromkeys((asset_label(key) for key in deadlines), 0)
    for key, deadline in deadlines.items():
        materialized = {key: set(instance.get_materialized_partitions(key))}
        counts[asset_label(key)] = len(late_partitions({key: deadline}, materialized, when))
    return counts


# -- checks --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckState:
    asset: str
    check: str
    passed: bool
    severity: str  # error | warn
    timestamp: float


def check_states(instance: dg.DagsterInstance, checks: Iterable[dg.AssetCheckKey]) -> list[CheckState]:
    """Each check's latest completed evaluation (whatever its partition): passed or not, its severity."""
    states = []
    for key in checks:
        records = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=1, status=COMPLETED_CHECKS
        )
        if not records or records[0].event is None or records[0].event.dagster_event is None:
            continue
        evaluation = records[0].event.dagster_event.asset_check_evaluation_data
        states.append(
            CheckState(
                asset=asset_label(key.asset_key),
                check=key.name,
                passed=bool(evaluation.passed),
                severity=evaluation.severity.value.lower(),
                timestamp=records[0].event.timestamp,
            )
        )
    return states


@dataclass(frozen=True)
class GateDecisions:
    passed: int = 0
    rejected: int = 0
    last_timestamp: float | None = None
    last_passed: bool | None = None
    last_candidate_roc_auc: float | None = None


def gate_decisions(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey = keys.PROMOTION_GATE, limit: int = 10_000
) -> GateDecisions:
    """The promotion gate's decisions, from its check evaluations: how many promoted (passed) and
    rejected, and the latest one (the newest ``limit`` evaluations are counted: weekly retraining
    makes about fifty a year)."""
    storage, cursor, seen = instance.event_log_storage, None, 0
    passed = rejected = 0
    last = None
    while seen < limit:
        page_size = min(1000, limit - seen)
        page = storage.get_asset_check_execution_history(
            check_key, limit=page_size, cursor=cursor, status=COMPLETED_CHECKS
        )
        for record in page:
            last = last or record
            if record.status == AssetCheckExecutionRecordStatus.SUCCEEDED:
                passed += 1
            else:
                rejected += 1
        seen += len(page)
        if len(page) < page_size:
            break
        cursor = page[-1].id
    if last is None or last.event is None or last.event.dagster_event is None:
        return GateDecisions(passed, rejected)
    evaluation = last.event.dagster_event.asset_check_evaluation_data
    return GateDecisions(
        passed,
        rejected,
        last_timestamp=last.event.timestamp,
        last_passed=bool(evaluation.passed),
        last_candidate_roc_auc=_number(evaluation.metadata, "roc_auc"),
    )


# -- the champion (MLflow) -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChampionState:
    version: int
    created_timestamp: float
    age_seconds: float
    metrics: dict[str, float] = field(default_factory=dict)  # the training run's metrics
    training_cutoff_timestamp: float | None = None


def champion_state(tracking: MLflowTracking, now: float) -> ChampionState | None:
    """The version the `champion` alias names, when it was registered, and its training run's
    out-of-time metrics; None when there is no champion (a registry that cannot be reached raises)."""
    from mlflow.exceptions import MlflowException  # where used: runs that load the definitions skip MLflow

    client = tracking.client()
    try:
        version = client.get_model_version_by_alias(tracking.model_name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    metrics = dict(client.get_run(version.run_id).data.metrics) if version.run_id else {}
    created = version.creation_timestamp / 1000
    cutoff = version.tags.get("training_cutoff")
    cutoff_timestamp = None
    with contextlib.suppress(ValueError):
        if cutoff:
            cutoff_timestamp = dt.datetime.fromisoformat(cutoff[:10]).replace(tzinfo=dt.UTC).timestamp()
    return ChampionState(int(version.version), created, max(0.0, now - created), metrics, cutoff_timestamp)


# -- drift -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DriftState:
    partition: str
    psi: dict[str, float]  # feature -> PSI of the newest measured day
    max_psi: float | None
    threshold: float | None


def _newest_partition_key(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    partitions = instance.get_materialized_partitions(key)
    return max(partitions) if partitions else None  # ISO dates sort in time order


def feature_drift(instance: dg.DagsterInstance, warehouse: ParquetIOManager | None) -> DriftState | None:
    """PSI per feature on the newest day ml/feature_drift measured, read from that day's Parquet
    file (the metadata only keeps the day's maximum), with the day's maximum and the threshold."""
    newest = _newest_partition_key(instance, keys.FEATURE_DRIFT)
    if newest is None:
        return None
    entry = latest_materialization(instance, keys.FEATURE_DRIFT, newest)
    meta = entry.asset_materialization.metadata if entry is not None else {}
    psi: dict[str, float] = {}
    if warehouse is not None:
        frame = parquet_bytes_to_dataframe(read_bytes(warehouse.path_for(keys.FEATURE_DRIFT, newest)))
        if "as_of_date" in frame.columns:
            frame = frame[frame["as_of_date"].astype(str).str[:10] == newest]
        psi = {str(f): float(p) for f, p in zip(frame["feature"], frame["psi"], strict=True)}
    by_day = meta.get("max_psi_by_day")
    by_day = getattr(by_day, "value", None) or {}
    max_psi = by_day.get(newest) if isinstance(by_day, dict) else None
    if max_psi is None:
        max_psi = max(psi.values()) if psi else _number(meta, "max_psi")
    return DriftState(
        newest, psi, None if max_psi is None else float(max_psi), _number(meta, "psi_threshold")
    )


def prediction_drift(instance: dg.DagsterInstance) -> tuple[float | None, float | None]:
    """PSI of the probabilities served on the newest day ml/prediction_drift measured (None when
    nothing was served), and its threshold."""
    newest = _newest_partition_key(instance, keys.PREDICTION_DRIFT)
    if newest is None:
        return None, None
    entry = latest_materialization(instance, keys.PREDICTION_DRIFT, newest)
    meta = entry.asset_materialization.metadata if entry is not None else {}
    return _number(meta, "psi"), _number(meta, "psi_threshold")


# -- the collector ---------------------------------------------------------------------------------------
def _known_values(*gauges: tuple[str, str, float | None]) -> list[Metric]:
    """An unlabelled gauge for each (name, help, value) whose value is known; none for the others."""
    return [GaugeMetricFamily(name, help_, value=value) for name, help_, value in gauges if value is not None]


def _gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


class PlatformCollector(Collector):
    """A ``prometheus_client`` collector: each scrape reads the instance (and MLflow, and the drift
    file) afresh, in five parallel sources, and waits at most ``timeout_seconds`` for them."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        scope: Scope,
        tracking: MLflowTracking | None = None,
        warehouse: ParquetIOManager | None = None,
        timeout_seconds: float = 8.0,
        max_run_seconds: float = 43_200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instance, self.scope, self.tracking, self.warehouse = instance, scope, tracking, warehouse
        self.timeout_seconds, self.max_run_seconds, self.clock = timeout_seconds, max_run_seconds, clock
        self._sources: dict[str, Callable[[float], list[Metric]]] = {
            "runs": self._runs,
            "assets": self._assets,
            "checks": self._checks,
            "drift": self._drift,
        }
        if tracking is not None:
            self._sources["champion"] = self._champion
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=len(self._sources), thread_name_prefix="churn-metrics"
        )
        self._busy: dict[str, concurrent.futures.Future] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _timed(self, source: Callable[[float], list[Metric]], now: float) -> tuple[list[Metric], float]:
        started = time.monotonic()
        return source(now), time.monotonic() - started

    def collect(self) -> Iterator[Metric]:
        started, now = time.monotonic(), self.clock()
        with self._lock:  # one scrape at a time
            futures = {}
            for name, source in self._sources.items():
                busy = self._busy.get(name)
                if busy is not None and not busy.done():
                    continue  # still stuck in an earlier scrape: not started twice
                futures[name] = self._busy[name] = self._pool.submit(self._timed, source, now)
            concurrent.futures.wait(list(futures.values()), timeout=self.timeout_seconds)
        up = _gauge(
            "churn_exporter_source_up", "1 if the source answered within the scrape's budget.", ["source"]
        )
        took = _gauge(
            "churn_exporter_source_duration_seconds", "Seconds the source took to answer.", ["source"]
        )
        for name in self._sources:
            future = futures.get(name)
            answered = future is not None and future.done() and future.exception() is None
            if answered:
                families, seconds = future.result()
                yield from families
                took.add_metric([name], seconds)
            elif future is not None and future.done():
                error = future.exception()
                log.warning("metrics source %s failed: %s: %s", name, type(error).__name__, error)
            else:
                log.warning("metrics source %s did not answer within %ss", name, self.timeout_seconds)
            up.add_metric([name], 1.0 if answered else 0.0)
        yield up
        yield took
        yield GaugeMetricFamily(
            "churn_exporter_scrape_duration_seconds",
            "Seconds this scrape took.",
            value=time.monotonic() - started,
        )

    # -- sources: each returns its metric families --------------------------------------------------
    def _runs(self, now: float) -> list[Metric]:
        runs = _gauge(
            "churn_runs", "Runs the Dagster instance holds, by job and status.", ["dagster_job", "status"]
        )
        for (job, status), count in sorted(run_counts(self.instance, self.scope.jobs).items()):
            runs.add_metric([job, status], count)
        stale = _gauge(
            "churn_runs_stale",
            "STARTED runs whose worker is dead (reason worker_dead) or that run longer than allowed "
            "(reason overdue).",
            ["dagster_job", "reason"],
        )
        counted: dict[tuple[str, str], int] = {
            (job, reason): 0 for job in self.scope.jobs for reason in ("worker_dead", "overdue")
        }
        for run in stale_runs(self.instance, self.max_run_seconds, now):
            job = run.job if run.job in self.scope.jobs else OTHER_JOB
            counted[(job, run.reason)] = counted.get((job, run.reason), 0) + 1
        for (job, reason), count in sorted(counted.items()):
            stale.add_metric([job, reason], count)
        queued = GaugeMetricFamily(
            "churn_runs_queued_oldest_age_seconds",
            "Seconds the oldest queued run has waited (0: none waits).",
            value=oldest_queued_age(self.instance, now),
        )
        return [runs, stale, queued]

    def _assets(self, now: float) -> list[Metric]:
        label = ["asset"]
        families = {
            "last": _gauge(
                "churn_asset_last_materialization_timestamp_seconds",
                "When the asset was last materialized (Unix time).",
                label,
            ),
            "lag": _gauge(
                "churn_asset_freshness_lag_seconds",
                "Time-partitioned assets: now minus the end of the newest materialized partition; others: "
                "now minus the last materialization.",
                label,
            ),
            "partition": _gauge(
                "churn_asset_latest_partition_timestamp_seconds",
                "Start of the newest materialized partition (Unix time); the partition key as a value, not a label.",
                label,
            ),
            "partitions": _gauge(
                "churn_asset_materialized_partitions", "Partitions of the asset materialized.", label
            ),
            "rows": _gauge(
                "churn_asset_materialization_rows",
                "Rows written by the latest materialization (a range run: the whole range).",
                label,
            ),
            "bytes": _gauge(
                "churn_asset_materialization_bytes",
                "Bytes written by the latest materialization (a range run: the whole range).",
                label,
            ),
            "duration": _gauge(
                "churn_asset_materialization_duration_seconds",
                "Seconds the step of the latest materialization took.",
                label,
            ),
            "quarantined": _gauge(
                "churn_asset_quarantined_rows",
                "Rows the latest materialization put in quarantine (metadata quarantined_rows; 0 when absent).",
                label,
            ),
        }
        for state in asset_states(self.instance, self.scope.assets, now):
            labels = [state.asset]
            families["last"].add_metric(labels, state.last_materialization_timestamp)
            families["lag"].add_metric(labels, state.freshness_lag_seconds)
            families["quarantined"].add_metric(labels, state.quarantined_rows)
            if state.latest_partition_timestamp is not None:
                families["partition"].add_metric(labels, state.latest_partition_timestamp)
            if state.materialized_partitions:
                families["partitions"].add_metric(labels, state.materialized_partitions)
            for name, value in (
                ("rows", state.rows),
                ("bytes", state.bytes),
                ("duration", state.duration_seconds),
            ):
                if value is not None:
                    families[name].add_metric(labels, value)
        late = _gauge(
            "churn_asset_late_partitions",
            "Partitions past their freshness deadline (CHURN_FRESHNESS_*) within the look-back that do not exist.",
            label,
        )
        for asset, count in sorted(late_partition_counts(self.instance, self.scope.deadlines, now).items()):
            late.add_metric([asset], count)
        return [*families.values(), late]

    def _checks(self, now: float) -> list[Metric]:
        passed = _gauge(
            "churn_asset_check_passed",
            "1 if the check's latest evaluation passed, 0 if it failed (severity error blocks or fails, warn warns).",
            ["asset", "check", "severity"],
        )
        when = _gauge(
            "churn_asset_check_last_evaluation_timestamp_seconds",
            "When the check was last evaluated (Unix time).",
            ["asset", "check"],
        )
        for state in check_states(self.instance, self.scope.checks):
            passed.add_metric([state.asset, state.check, state.severity], 1.0 if state.passed else 0.0)
            when.add_metric([state.asset, state.check], state.timestamp)
        families: list[Metric] = [passed, when]
        if keys.PROMOTION_GATE in self.scope.checks:
            gate = gate_decisions(self.instance)
            decisions = CounterMetricFamily(
                "churn_promotion_gate_decisions",
                "The promotion gate's decisions: a new model version promoted to champion, or rejected.",
                labels=["decision"],
            )
            decisions.add_metric(["promoted"], gate.passed)
            decisions.add_metric(["rejected"], gate.rejected)
            families.append(decisions)
            decided = gate.last_timestamp is not None
            families += _known_values(
                (
                    "churn_promotion_gate_last_decision_timestamp_seconds",
                    "When the promotion gate last decided (Unix time).",
                    gate.last_timestamp,
                ),
                (
                    "churn_promotion_gate_last_promoted",
                    "1 if the gate's latest decision promoted the candidate, 0 if it rejected it.",
                    (1.0 if gate.last_passed else 0.0) if decided else None,
                ),
                (
                    "churn_promotion_gate_last_candidate_roc_auc",
                    "Out-of-time ROC AUC of the candidate the gate last decided on.",
                    gate.last_candidate_roc_auc,
                ),
            )
        return families

    def _champion(self, now: float) -> list[Metric]:
        champion = champion_state(self.tracking, now)
        families: list[Metric] = [
            GaugeMetricFamily(
                "churn_champion_present",
                "1 if the registry has a champion model.",
                value=1.0 if champion else 0.0,
            )
        ]
        if champion is None:
            return families
        families += [
            GaugeMetricFamily(
                "churn_champion_version", "Registered version of the champion model.", value=champion.version
            ),
            GaugeMetricFamily(
                "churn_champion_created_timestamp_seconds",
                "When the champion version was registered (Unix time).",
                value=champion.created_timestamp,
            ),
            GaugeMetricFamily(
                "churn_champion_age_seconds",
                "Seconds since the champion version was registered.",
                value=champion.age_seconds,
            ),
        ]
        families += _known_values(
            (
                "churn_champion_training_cutoff_timestamp_seconds",
                "The as-of date the champion was trained up to (Unix time).",
                champion.training_cutoff_timestamp,
            )
        )
        for key, (name, documentation) in CHAMPION_METRICS.items():
            if key in champion.metrics:
                families.append(GaugeMetricFamily(name, documentation, value=champion.metrics[key]))
        return families

    def _drift(self, now: float) -> list[Metric]:
        families: list[Metric] = []
        drift = feature_drift(self.instance, self.warehouse)
        if drift is not None:
            psi = _gauge(
                "churn_feature_psi",
                "Population stability index of each feature on the newest day measured, against the training set.",
                ["feature"],
            )
            for feature, value in sorted(drift.psi.items()):
                psi.add_metric([feature], value)
            families.append(psi)
            families += _known_values(
                (
                    "churn_feature_drift_max_psi",
                    "The largest feature PSI on the newest day measured.",
                    drift.max_psi,
                ),
                (
                    "churn_feature_drift_psi_threshold",
                    "The PSI above which a feature counts as drifted.",
                    drift.threshold,
                ),
            )
        served_psi, served_threshold = prediction_drift(self.instance)
        families += _known_values(
            (
                "churn_prediction_psi",
                "PSI of the probabilities served on the newest day against the batch scores.",
                served_psi,
            ),
            (
                "churn_prediction_drift_psi_threshold",
                "The PSI above which served predictions count as drifted.",
                served_threshold,
            ),
        )
        return families
