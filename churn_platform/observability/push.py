"""Runs push their own metrics to a Prometheus Pushgateway (when ``CHURN_PUSHGATEWAY_URL`` is set).

The hook: a success hook and a failure hook attached to every asset (``AssetsDefinition.with_hooks``
in ``definitions.py``), so they run inside the run's own process after each asset step, whichever
job, backfill or UI materialization launched it. After each step they push:

- group ``{dagster_job, asset}``: the step's duration and outcome, and the rows, bytes and
  partitions it wrote (``churn_run_step_duration_seconds``, ``churn_run_step_success``,
  ``churn_run_written_rows``, ``churn_run_written_bytes``, ``churn_run_written_partitions``,
  ``churn_run_step_end_timestamp_seconds``);
- group ``{dagster_job}``: the run's start, its duration up to this step and whether any of its steps
  failed so far (``churn_run_start_timestamp_seconds``, ``churn_run_duration_seconds``,
  ``churn_run_failed``, ``churn_run_last_step_end_timestamp_seconds``). The run's last step
  leaves its final figures.

Grouping keys: the Pushgateway keeps every group until it is deleted, so a run id (or a partition)
in the key would grow it without bound. Jobs times assets is a fixed, small set; each push replaces
its group (HTTP PUT), so the gateway holds the latest run of each job and the latest step of each
asset in it. A run that crashes never pushes its end: the exporter's run metrics, pulled from the
instance, are what see it. A push that fails is logged as a warning; it never fails the step or the run.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from churn_platform.settings.observability import ObservabilitySettings

PUSH_JOB = "churn_platform_runs"  # the Pushgateway's `job` label of every pushed group
STEP_EVENTS = {
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
}


@dataclass(frozen=True)
class AssetWrite:
    rows: float | None = None
    bytes: float | None = None
    partitions: int = 0


@dataclass(frozen=True)
class StepReport:
    job: str
    step_key: str
    succeeded: bool
    step_seconds: float | None
    ended_at: float
    writes: dict[str, AssetWrite]  # asset key (user string) -> what the step wrote
    run_start_timestamp: float | None
    run_failed: bool  # any step of the run failed so far

    @property
    def run_seconds(self) -> float | None:
        return self.ended_at - self.run_start_timestamp if self.run_start_timestamp else None


def _value(metadata, name: str) -> float | None:
    value = getattr(metadata.get(name), "value", None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _sum(materializations: list[dg.AssetMaterialization], name: str) -> float | None:
    values = [v for m in materializations if (v := _value(m.metadata, name)) is not None]
    return sum(values) if values else None


def _written(materializations: list[dg.AssetMaterialization]) -> AssetWrite:
    """A range run's materializations each carry the range's totals (``rows_total``): counted once;
    single partitions carry their own (``dagster/row_count``): summed."""
    totals = [m.metadata for m in materializations if _value(m.metadata, "rows_total") is not None]
    if totals:
        return AssetWrite(
            _value(totals[-1], "rows_total"), _value(totals[-1], "bytes_total"), len(materializations)
        )
    return AssetWrite(
        _sum(materializations, "dagster/row_count"), _sum(materializations, "bytes"), len(materializations)
    )


def asset_of_step(step_key: str) -> str:
    """An asset step's key is its asset key joined by "__" (``raw__crm_tickets``)."""
    return step_key.replace("__", "/")


def step_report(
    instance: dg.DagsterInstance, run_id: str, job: str, step_key: str, succeeded: bool, now: float
) -> StepReport:
    """What one step of a run did, from the run's event log: duration, outcome, what it wrote."""
    records = instance.all_logs(run_id, of_type=STEP_EVENTS)
    mine = [r for r in records if r.step_key == step_key and r.dagster_event is not None]
    by_asset: dict[str, list[dg.AssetMaterialization]] = {}
    step_seconds, started_at = None, None
    for record in mine:
        event_type = record.dagster_event.event_type
        if event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = record.asset_materialization
            by_asset.setdefault(materialization.asset_key.to_user_string(), []).append(materialization)
        elif event_type == dg.DagsterEventType.STEP_SUCCESS:
            step_seconds = record.dagster_event.event_specific_data.duration_ms / 1000
        elif event_type == dg.DagsterEventType.STEP_START:
            started_at = record.timestamp
    if step_seconds is None and started_at is not None:
        step_seconds = max(0.0, now - started_at)
    writes = {asset: _written(materializations) for asset, materializations in by_asset.items()}
    if not writes:  # a failed step wrote nothing: report it under its own asset
        writes = {asset_of_step(step_key): AssetWrite()}
    run = instance.get_run_record_by_id(run_id)
    failed = not succeeded or any(
        r.dagster_event is not None and r.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE
        for r in records
    )
    return StepReport(
        job=job,
        step_key=step_key,
        succeeded=succeeded,
        step_seconds=step_seconds,
        ended_at=now,
        writes=writes,
        run_start_timestamp=run.start_time if run is not None else None,
        run_failed=failed,
    )


def registries(report: StepReport) -> Iterator[tuple[CollectorRegistry, dict[str, str]]]:
    """The metrics of a step report, one registry per grouping key."""
    for asset, written in report.writes.items():
        registry = CollectorRegistry()

        def gauge(name: str, documentation: str, value: float | None, registry=registry) -> None:
            if value is not None:
                Gauge(name, documentation, registry=registry).set(value)

        gauge(
            "churn_run_step_duration_seconds",
            "Seconds the asset's step took in the job's latest run.",
            report.step_seconds,
        )
        gauge(
            "churn_run_step_success",
            "1 if the asset's step succeeded in the job's latest run.",
            float(report.succeeded),
        )
        gauge("churn_run_written_rows", "Rows the asset's step wrote in the job's latest run.", written.rows)
        gauge(
            "churn_run_written_bytes", "Bytes the asset's step wrote in the job's latest run.", written.bytes
        )
        gauge(
            "churn_run_written_partitions",
            "Partitions the asset's step materialized in the job's latest run.",
            float(written.partitions),
        )
        gauge(
            "churn_run_step_end_timestamp_seconds",
            "When the asset's step ended (Unix time).",
            report.ended_at,
        )
        yield registry, {"dagster_job": report.job, "asset": asset}
    registry = CollectorRegistry()
    Gauge("churn_run_failed", "1 if a step of the job's latest run failed.", registry=registry).set(
        float(report.run_failed)
    )
    Gauge(
        "churn_run_last_step_end_timestamp_seconds",
        "When the latest step of the job's run ended (Unix time).",
        registry=registry,
    ).set(report.ended_at)
    if report.run_start_timestamp is not None:
        Gauge(
            "churn_run_start_timestamp_seconds",
            "When the job's latest run started (Unix time).",
            registry=registry,
        ).set(report.run_start_timestamp)
        Gauge(
            "churn_run_duration_seconds",
            "Seconds from the start of the job's latest run to the end of its latest step.",
            registry=registry,
        ).set(report.run_seconds)
    yield registry, {"dagster_job": report.job}


def push_step_metrics(
    context: dg.HookContext,
    gateway: str,
    timeout_seconds: float,
    succeeded: bool,
    push: Callable[..., None] = push_to_gateway,
) -> bool:
    """Push what the hook's step did; a failure is a warning in the run's log, never an error."""
    try:
        report = step_report(
            context.instance, context.run_id, context.job_name, context.step_key, succeeded, time.time()
        )
        for registry, grouping_key in registries(report):
            push(gateway, job=PUSH_JOB, registry=registry, grouping_key=grouping_key, timeout=timeout_seconds)
    except Exception as exc:  # a metrics push must never fail the run
        context.log.warning(
            f"run metrics were not pushed to the Pushgateway ({type(exc).__name__}: {exc}); the run goes on"
        )
        return False
    return True


def build_push_hooks(settings: ObservabilitySettings) -> set[dg.HookDefinition]:
    """The hooks that push each asset step's metrics; none when no Pushgateway is configured."""
    if not settings.pushgateway_url:
        return set()
    gateway, timeout = settings.pushgateway_url, settings.pushgateway_timeout_seconds

    @dg.success_hook(name="push_metrics_after_success")
    def push_after_success(context: dg.HookContext) -> None:
        push_step_metrics(context, gateway, timeout, succeeded=True)

    @dg.failure_hook(name="push_metrics_after_failure")
    def push_after_failure(context: dg.HookContext) -> None:
        push_step_metrics(context, gateway, timeout, succeeded=False)

    return {push_after_success, push_after_failure}
