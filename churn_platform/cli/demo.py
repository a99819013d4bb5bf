"""`churn-platform demo`: generate data and materialize the whole graph on embedded defaults."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from dataclasses import dataclass

import dagster as dg

from churn_platform.ml.checks import promotion_gate_run_config
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import LABEL_HORIZON_DAYS
from churn_platform.orchestration.run_tags import partition_range_tags
from churn_platform.settings import PlatformSettings


@dataclass(frozen=True)
class DemoPlan:
    """Which partitions each step of the demo materializes."""

    first_day: str
    last_day: str
    last_labelled_day: str
    scoring_from: str

    @classmethod
    def for_days(cls, start: dt.date, days: int, scoring_days: int = 7) -> DemoPlan:
        if days <= LABEL_HORIZON_DAYS + 7:
            raise ValueError(
                f"the demo needs more than {LABEL_HORIZON_DAYS + 7} days of data: labels need "
                f"{LABEL_HORIZON_DAYS} days after each as-of date"
            )
        last = start + dt.timedelta(days=days - 1)
        return cls(
            first_day=start.isoformat(),
            last_day=last.isoformat(),
            last_labelled_day=(last - dt.timedelta(days=LABEL_HORIZON_DAYS)).isoformat(),
            scoring_from=(last - dt.timedelta(days=scoring_days - 1)).isoformat(),
        )


def ensure_dagster_home() -> str:
    """Use $DAGSTER_HOME, or ``./.dagster_home`` in the current directory (the repository root
    when run by ``make demo``), with ``./dagster.yaml`` copied into it when there is one (Dagster's
    defaults otherwise). Nothing depends on where the package is installed."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = os.path.abspath(".dagster_home")
        os.environ["DAGSTER_HOME"] = home
    os.makedirs(home, exist_ok=True)
    target = os.path.join(home, "dagster.yaml")
    if not os.path.exists(target) and os.path.exists("dagster.yaml"):
        shutil.copyfile("dagster.yaml", target)
    return home


def run_demo(
    defs: dg.Definitions, instance: dg.DagsterInstance, plan: DemoPlan, log=print, gate: dict | None = None
) -> dict[str, float]:
    """Materialize every asset for the plan's partitions, one single-run backfill per job.
    ``gate`` overrides the promotion gate's thresholds (PromotionGateConfig fields)."""
    steps = [
        ("daily_ingestion_job", partition_range_tags(plan.first_day, plan.last_day), None),
        ("labels_job", partition_range_tags(plan.first_day, plan.last_labelled_day), None),
        ("training_job", {}, plan.last_labelled_day),
        ("scoring_job", partition_range_tags(plan.scoring_from, plan.last_day), None),
        ("metadata_backup_job", {}, None),  # the instance and MLflow store, then the restore drill
    ]
    timings = {}
    for job_name, tags, partition_key in steps:
        started = time.perf_counter()
        what = partition_key or (
            f"{tags['dagster/asset_partition_range_start']}..{tags['dagster/asset_partition_range_end']}"
            if tags
            else "now"
        )
        log(f"  running {job_name} for {what} ...")
        run_config = promotion_gate_run_config(gate) if gate and job_name == "training_job" else None
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance,
            tags=tags,
            partition_key=partition_key,
            raise_on_error=True,
            run_config=run_config,
        )
        assert result.success
        timings[job_name] = time.perf_counter() - started
    return timings


def summarize(instance: dg.DagsterInstance, defs: dg.Definitions, settings: PlatformSettings) -> list[str]:
    lines = ["", "Partitions materialized and rows per asset:"]
    for key in sorted(defs.resolve_asset_graph().get_all_asset_keys(), key=lambda k: k.to_user_string()):
        partitions = instance.get_materialized_partitions(key)
        records = instance.fetch_materializations(key, limit=1000).records
        latest_by_partition = {}
        for record in records:  # newest first
            mat = record.asset_materialization
            latest_by_partition.setdefault(mat.partition, mat)
        rows = 0
        for mat in latest_by_partition.values():
            meta = mat.metadata
            rows += int(
                (meta.get("dagster/row_count") or meta.get("rows_total") or dg.MetadataValue.int(0)).value
            )
        if any("rows_total" in m.metadata for m in latest_by_partition.values()):
            # Range runs record the whole range's total on every partition: count each run once.
            rows = sum(
                {
                    r.run_id: int(
                        r.asset_materialization.metadata.get("rows_total", dg.MetadataValue.int(0)).value
                    )
                    for r in records
                }.values()
            )
        count = (
            f"{len(partitions):4d} partitions"
            if partitions or not records
            else f"{len(records):4d} runs      "
        )
        lines.append(f"  {key.to_user_string():34s} {count}  {rows:>10,d} rows")
    model = instance.get_latest_materialization_event(keys.CHURN_MODEL)
    if model is not None:
        meta = model.asset_materialization.metadata
        lines += [
            "",
            f"Churn model (trained as of {model.asset_materialization.partition}), held-out metrics:",
        ]
        for name in ("roc_auc", "pr_auc", "brier", "log_loss", "positive_rate"):
            lines.append(f"  {name:14s} {meta[name].value:.4f}")
        lines.append(f"  MLflow version {meta['model_version'].value}, run {meta['mlflow_run_id'].value}")
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key([keys.PROMOTION_GATE]).get(
            keys.PROMOTION_GATE
        )
        if check is not None and check.event is not None:
            evaluation = check.event.dagster_event.event_specific_data
            lines.append(
                f"  promotion gate: {'passed' if evaluation.passed else 'failed'} - {evaluation.description}"
            )
    drill = instance.get_latest_materialization_event(keys.RESTORE_DRILL)
    if drill is not None:
        meta = drill.asset_materialization.metadata
        checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [keys.RECOVERY_OBJECTIVES]
        )
        record = checks.get(keys.RECOVERY_OBJECTIVES)
        evaluation = record.event.dagster_event.event_specific_data if record and record.event else None
        lines += [
            "",
            f"Backups: {meta['metadata_snapshot'].value} and {meta['model_snapshot'].value}",
            f"  restore drill: {'passed' if evaluation and evaluation.passed else 'FAILED'} - "
            + (evaluation.description if evaluation else "no check result"),
            "  list, verify, restore:  churn-platform backups list | backups verify | restore <snapshot>",
        ]
    lines += [
        "",
        "Outputs:",
        f"  tables     {settings.storage.warehouse_dir}",
        f"  backups    {settings.storage.backup_root}",
        f"  landing    {settings.storage.landing_dir}",
        f"  mlflow     {settings.mlflow.tracking_uri}",
        f"  instance   {instance.root_directory}",
        "",
        "Open them in the Dagster UI:  make dev   (or: DAGSTER_HOME=.dagster_home dagster dev -w workspace.yaml)",
        f"then browse {settings.alerts.dagster_ui_url}/asset-groups",
        f"MLflow UI:  make mlflow-ui   (= mlflow ui --backend-store-uri {settings.mlflow.tracking_uri} --port 5000)",
    ]
    return lines
