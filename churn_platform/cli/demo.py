"""`churn-platform demo`: generate current data and materialize the whole graph on embedded
defaults, showing one progress bar per stage; Dagster's own log goes to a file."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
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


@dataclass(frozen=True)
class DemoStage:
    job_name: str
    tags: dict[str, str]
    partition_key: str | None

    @property
    def window(self) -> str:
        if self.partition_key:
            return self.partition_key
        if self.tags:
            return f"{self.tags['dagster/asset_partition_range_start']}..{self.tags['dagster/asset_partition_range_end']}"
        return "now"


def demo_stages(plan: DemoPlan) -> list[DemoStage]:
    return [
        DemoStage("daily_ingestion_job", partition_range_tags(plan.first_day, plan.last_day), None),
        DemoStage("labels_job", partition_range_tags(plan.first_day, plan.last_labelled_day), None),
        DemoStage("training_job", {}, plan.last_labelled_day),
        DemoStage("scoring_job", partition_range_tags(plan.scoring_from, plan.last_day), None),
        DemoStage("metadata_backup_job", {}, None),  # the instance and MLflow store, then the restore drill
    ]


# progress(stage, steps done, steps in all, current step)
Progress = Callable[[DemoStage, int, int, str], None]


def _watch_steps(
    instance: dg.DagsterInstance, run_id: str, stage: DemoStage, total: int, progress: Progress
) -> Callable[[], None]:
    """Report the run's finished steps every half second from a thread; returns its stopper."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            records = instance.get_records_for_run(run_id, limit=100_000).records
            done, current = 0, ""
            for record in records:
                event = record.event_log_entry.dagster_event
                if event is None:
                    continue
                if event.event_type == dg.DagsterEventType.STEP_START:
                    current = event.step_key or ""
                elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                    done += 1
            progress(stage, min(done, total), total, current)

    thread = threading.Thread(target=watch, name="demo-progress", daemon=True)
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join()

    return stopper


def run_demo(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plan: DemoPlan,
    progress: Progress | None = None,
    gate: dict | None = None,
) -> dict[str, float]:
    """Materialize every asset for the plan's partitions, one single-run backfill per job.
    ``gate`` overrides the promotion gate's thresholds (PromotionGateConfig fields)."""
    timings = {}
    for stage in demo_stages(plan):
        started = time.perf_counter()
        job = defs.resolve_job_def(stage.job_name)
        run_config = promotion_gate_run_config(gate) if gate and stage.job_name == "training_job" else None
        run_id = str(uuid.uuid4())
        total = len(job.nodes)
        if progress:
            progress(stage, 0, total, "")
        stop = _watch_steps(instance, run_id, stage, total, progress) if progress else None
        try:
            result = job.execute_in_process(
                instance=instance,
                tags=stage.tags,
                partition_key=stage.partition_key,
                raise_on_error=True,
                run_config=run_config,
                run_id=run_id,
            )
        finally:
            if stop:
                stop()
        assert result.success
        if progress:
            progress(stage, total, total, "")
        timings[stage.job_name] = time.perf_counter() - started
    return timings


@contextlib.contextmanager
def output_to(log_path: Path) -> Iterator[None]:
    """Send everything written to stdout and stderr (Dagster's event stream, library warnings and
    progress bars, child processes included) to ``log_path`` at the file-descriptor level."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _parquet_rows(path) -> int | None:
    import pyarrow.parquet as pq

    if not path.exists():
        return None
    with path.open("rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def _stage_partitions(defs: dg.Definitions, plan: DemoPlan) -> dict[dg.AssetKey, list[str]]:
    """The partitions the demo's stages materialize, by asset ([None] for an unpartitioned one)."""
    graph = defs.resolve_asset_graph()
    wanted: dict[dg.AssetKey, list[str]] = {}
    for stage in demo_stages(plan):
        first = stage.partition_key or stage.tags.get("dagster/asset_partition_range_start")
        last = stage.partition_key or stage.tags.get("dagster/asset_partition_range_end")
        for key in defs.resolve_job_def(stage.job_name).asset_layer.executable_asset_keys:
            partitions_def = graph.get(key).assets_def.partitions_def
            if partitions_def is None:
                wanted[key] = [None]
            elif first:
                wanted[key] = [k for k in partitions_def.get_partition_keys() if first <= k <= last]
    return wanted


def on_disk(defs: dg.Definitions, warehouse, plan: DemoPlan) -> list[tuple[str, int, int, int]]:
    """(asset, partitions the demo materializes, partitions with a file, rows in those files) for
    every asset stored as Parquet in the warehouse: read from the files' footers, not the event log,
    so a second demo reports what the files hold."""
    rows_by_asset = []
    for key, partitions in sorted(
        _stage_partitions(defs, plan).items(), key=lambda kv: kv[0].to_user_string()
    ):
        counts = [_parquet_rows(warehouse.path_for(key, p)) for p in partitions]
        found = [c for c in counts if c is not None]
        if found:
            rows_by_asset.append((key.to_user_string(), len(partitions), len(found), sum(found)))
    return rows_by_asset


def summarize(
    instance: dg.DagsterInstance, defs: dg.Definitions, settings: PlatformSettings, plan: DemoPlan
) -> list[str]:
    from churn_platform.resources import build_resources

    warehouse = build_resources(settings)["io_manager"]
    lines = [
        "",
        f"Tables in the warehouse for {plan.first_day}..{plan.last_day} (rows counted in the files):",
    ]
    for name, expected, found, rows in on_disk(defs, warehouse, plan):
        count = (
            f"{found:4d}/{expected:<4d} partitions" if expected > 1 or found != 1 else "     1 table         "
        )
        lines.append(f"  {name:34s} {count}  {rows:>10,d} rows")
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
        ]
    return lines


def next_steps(settings: PlatformSettings, plan: DemoPlan, log_path: Path, env_file: Path) -> list[str]:
    ui = settings.alerts.dagster_ui_url.rstrip("/")
    return [
        "",
        f"Data        {settings.storage.data_root}   (landing, warehouse, backups, MLflow)",
        f"Dagster log {log_path}",
        f"Settings    CHURN_START_DATE={plan.first_day} written to {env_file}",
        "            (`make dev` and `churn-platform` read it; running `dagster dev` by hand: export it first)",
        "",
        "Next:",
        f"  make dev                            the UI at {ui}/asset-groups (Alt+E expands every group)",
        "  churn-platform generate --append-day  land the next day's files; with `make dev` running and the",
        "                                      landing sensor on, watch its run start and flow downstream",
        "  make mlflow-ui                      training runs, the registered model and its champion",
        "  churn-platform backups list          snapshots; `backups verify`, `restore <snapshot>`",
    ]


def run_demo_command(days: int, customers: int, seed: int, start: dt.date | None) -> None:
    """Validate, land the data, run the stages quietly with progress bars, print the summary."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    from churn_platform.cli.environment import write_env_value
    from churn_platform.cli.generate import land_dataset, plan_dataset, utc_today
    from churn_platform.synthetic.dataset import DatasetConflict

    spec = plan_dataset(days, customers, seed, start, origin="demo")
    try:  # every argument is checked before anything is written
        plan = DemoPlan.for_days(spec.start, days)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--days") from None
    if dt.date.fromisoformat(spec.last_day) >= utc_today():
        raise click.BadParameter(
            f"the data would end on {spec.last_day}, which has not ended yet", param_hint="--start-date"
        )
    os.environ["CHURN_START_DATE"] = spec.first_day  # the partitions start with the data
    home = Path(ensure_dagster_home())

    from churn_platform.definitions import build_definitions
    from churn_platform.settings import load_settings

    settings = load_settings()
    defs = build_definitions(settings)
    console = Console(file=os.fdopen(os.dup(1), "w"), highlight=False, soft_wrap=True)
    console.print(f"Demo data: {spec.describe()} into {settings.storage.data_root}")
    try:
        stats = land_dataset(settings, days, customers, seed, spec.start, origin="demo")
    except DatasetConflict as exc:
        if exc.held is None or exc.held.origin != "demo":
            raise  # files or a dataset the demo did not write are never replaced by it
        console.print(f"  replacing the earlier demo dataset ({exc.held.describe()})")
        stats = land_dataset(settings, days, customers, seed, spec.start, force=True, origin="demo")
    env_file = write_env_value("CHURN_START_DATE", spec.first_day)  # once the data are in place
    console.print("  " + " ".join(f"{k}={v}" for k, v in stats.items()))

    log_path = home / "logs" / "demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")  # this demo's log only
    columns = (
        TextColumn("{task.description:<44}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
    )
    with RichProgress(*columns, console=console) as bars, dg.DagsterInstance.get() as instance:
        tasks = {
            s.job_name: bars.add_task(f"{s.job_name} {s.window}", total=None, step="", start=False)
            for s in demo_stages(plan)
        }

        def progress(stage: DemoStage, done: int, total: int, current: str) -> None:
            bars.start_task(tasks[stage.job_name])  # the clock of a stage runs from its first report
            bars.update(tasks[stage.job_name], completed=done, total=total, step=current[:40])

        started = time.perf_counter()
        try:
            with output_to(log_path):
                timings = run_demo(defs, instance, plan, progress=progress)
        except Exception as exc:
            bars.stop()
            from churn_platform.cli.errors import one_line

            raise click.ClickException(f"{one_line(exc)} (Dagster's log: {log_path})") from None
    with dg.DagsterInstance.get() as instance:
        for line in summarize(instance, defs, settings, plan):
            console.print(line)
    for line in next_steps(settings, plan, log_path, env_file):
        console.print(line)
    console.print(
        f"\nDone in {time.perf_counter() - started:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + ")"
    )
