"""The restore drill: restore the newest backups into a scratch directory, open what was restored,
and measure how long it took (recovery time) and how old the restored state is (recovery point).

A backup nobody has restored is a hope; this runs the restore on a schedule, inside the
orchestrator, and fails a check when the objectives are missed.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from churn_platform.backups.catalog import (
    MANIFEST,
    Snapshot,
    list_snapshots,
    restore_snapshot,
    verify_snapshot,
)
from churn_platform.backups.resources import BackupStore


@dataclass
class DrillReport:
    metadata_snapshot: str | None = None
    model_snapshot: str | None = None
    recovery_time_seconds: float = 0.0
    recovery_point_age_hours: float | None = None
    restored_files: int = 0
    runs_restored: int = 0
    champion_version: str | None = None
    problems: list[str] = field(default_factory=list)


def newest(snapshots: list[Snapshot], kind: str) -> Snapshot | None:
    of_kind = [s for s in snapshots if s.kind == kind]
    return of_kind[-1] if of_kind else None


def _restored_champion(
    scratch: Path, sources: dict[str, str], model_name: str
) -> tuple[str | None, list[str]]:
    """The champion version in the restored MLflow registry, and problems: its files must be in
    the restored artifact directory and hash to the SHA-256 recorded on the version."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from churn_platform.storage.model_registry import CHAMPION, directory_files, files_digest

    databases = list((scratch / "mlflow" / "db").glob("*.db"))
    if not databases:
        return None, ["the metadata backup holds no MLflow database"]
    uri = f"sqlite:///{databases[0]}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        champion = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None, [f"the restored MLflow registry has no {CHAMPION!r} alias on {model_name!r}"]
    version = str(champion.version)
    # The database records where the files lived; the drill finds them in the restored copy.
    location = client.get_model_version_download_uri(model_name, version).removeprefix("file://")
    live_root = sources.get("mlflow/artifacts")
    if not live_root or not Path(location).is_relative_to(live_root):
        return version, [f"champion v{version}'s files ({location}) are outside the backed-up artifacts"]
    restored = scratch / "mlflow" / "artifacts" / Path(location).relative_to(live_root)
    if not restored.is_dir():
        return version, [f"champion v{version}'s files are missing from the backup ({restored})"]
    digest, recorded = files_digest(directory_files(restored)), champion.tags.get("model_sha256")
    if digest != recorded:
        return version, [f"champion v{version}'s restored files hash to {digest}, recorded {recorded}"]
    return version, []


def run_restore_drill(store: BackupStore, model_name: str, now: dt.datetime | None = None) -> DrillReport:
    """Restore the newest metadata snapshot (verifying every object) into a scratch directory,
    open the restored Dagster instance and MLflow registry, check the champion's files, and verify
    the newest model snapshot; the report's times are what a real recovery would take here."""
    import dagster as dg

    now = now or dt.datetime.now(dt.UTC)
    report = DrillReport()
    snapshots = list_snapshots(store)
    metadata, model = newest(snapshots, "metadata"), newest(snapshots, "model")
    if metadata is None:
        report.problems.append(f"no metadata snapshot in {store.uri('')}: nothing to restore")
        return report
    report.metadata_snapshot = metadata.prefix
    created = dt.datetime.fromisoformat(metadata.created)
    report.recovery_point_age_hours = (now - created).total_seconds() / 3600
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="restore-drill-") as scratch_dir:
        scratch = Path(scratch_dir)
        targets = {name: scratch / name for name in ("dagster", "mlflow/db", "mlflow/artifacts")}
        try:
            report.restored_files = len(restore_snapshot(store, metadata, targets))
        except Exception as exc:
            report.problems.append(str(exc))
            return report
        manifest = json.loads(store.read(f"{metadata.prefix}/{MANIFEST}"))
        try:
            with dg.DagsterInstance.from_config(str(scratch / "dagster")) as restored:
                report.runs_restored = len(restored.get_run_records(limit=100_000))
        except Exception as exc:
            report.problems.append(f"the restored Dagster instance does not open: {exc}")
        report.champion_version, problems = _restored_champion(
            scratch, manifest.get("sources", {}), model_name
        )
        report.problems += problems
        if model is not None:
            report.model_snapshot = model.prefix
            report.problems += verify_snapshot(store, model)
    report.recovery_time_seconds = time.perf_counter() - started
    if report.runs_restored == 0:
        report.problems.append("the restored Dagster instance holds no runs")
    return report
