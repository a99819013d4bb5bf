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
from churn_platform.backups.metadata import DUMP_FILE, MetadataBackupError, pg_restore, scratch_database
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


def _restored_runs(scratch: Path, server_url: str | None) -> int:
    """Open the restored instance and count its runs: the SQLite files as restored, or the
    PostgreSQL dump restored into a scratch database on ``server_url``'s server."""
    import dagster as dg
    import yaml

    dump = scratch / "dagster" / "postgres" / DUMP_FILE
    if not dump.exists():
        with dg.DagsterInstance.from_config(str(scratch / "dagster")) as restored:
            return len(restored.get_run_records(limit=100_000))
    if not server_url:
        raise MetadataBackupError("the backup holds a PostgreSQL instance and no PostgreSQL server is given")
    with scratch_database(server_url, "churn_drill_dagster") as url:
        pg_restore(dump.read_bytes(), url)
        # Not the restored dagster.yaml: it points at the live database.
        home = scratch / "dagster-restored"
        home.mkdir()
        (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": {"postgres": {"postgres_url": url}}}))
        with dg.DagsterInstance.from_config(str(home)) as restored:
            return len(restored.get_run_records(limit=100_000))


def _champion_of_dump(
    dump: Path, server_url: str | None, model_name: str, model_manifest: dict | None
) -> tuple[str | None, list[str]]:
    """The champion in the MLflow server's restored database; its files live in the server's
    artifact store, so the newest model snapshot must hold exactly that version and digest."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from churn_platform.storage.model_registry import CHAMPION

    if not server_url:
        return None, ["the backup holds the MLflow server's database and no PostgreSQL server is given"]
    with scratch_database(server_url, "churn_drill_mlflow") as url:
        pg_restore(dump.read_bytes(), url)
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        try:
            champion = client.get_model_version_by_alias(model_name, CHAMPION)
        except MlflowException:
            return None, [f"the restored MLflow registry has no {CHAMPION!r} alias on {model_name!r}"]
    version, recorded = str(champion.version), champion.tags.get("model_sha256")
    backed_up = (model_manifest or {}).get("model", {})
    if (backed_up.get("version"), backed_up.get("sha256")) != (version, recorded):
        return version, [
            f"champion v{version} ({recorded}) is not the newest model snapshot's model "
            f"(v{backed_up.get('version')}, {backed_up.get('sha256')})"
        ]
    return version, []


def run_restore_drill(
    store: BackupStore,
    model_name: str,
    now: dt.datetime | None = None,
    instance_server_url: str | None = None,
    mlflow_server_url: str | None = None,
) -> DrillReport:
    """Restore the newest metadata snapshot (verifying every object) into a scratch directory,
    open the restored Dagster instance and MLflow registry, check the champion's files, and verify
    the newest model snapshot; the report's times are what a real recovery would take here.
    PostgreSQL dumps are restored into scratch databases on the servers of the ``*_server_url``
    (the live instance's and MLflow's), dropped afterwards."""

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
        targets = {
            name: scratch / name for name in ("dagster", "mlflow/db", "mlflow/artifacts", "mlflow/postgres")
        }
        try:
            report.restored_files = len(restore_snapshot(store, metadata, targets))
        except Exception as exc:
            report.problems.append(str(exc))
            return report
        manifest = json.loads(store.read(f"{metadata.prefix}/{MANIFEST}"))
        try:
            report.runs_restored = _restored_runs(scratch, instance_server_url)
        except Exception as exc:
            report.problems.append(f"the restored Dagster instance does not open: {exc}")
        mlflow_dump = scratch / "mlflow" / "postgres" / DUMP_FILE
        try:
            if mlflow_dump.exists():
                model_manifest = json.loads(store.read(f"{model.prefix}/{MANIFEST}")) if model else None
                report.champion_version, problems = _champion_of_dump(
                    mlflow_dump, mlflow_server_url, model_name, model_manifest
                )
            else:
                report.champion_version, problems = _restored_champion(
                    scratch, manifest.get("sources", {}), model_name
                )
        except Exception as exc:
            problems = [f"the restored MLflow registry does not open: {exc}"]
        report.problems += problems
        if model is not None:
            report.model_snapshot = model.prefix
            report.problems += verify_snapshot(store, model)
    report.recovery_time_seconds = time.perf_counter() - started
    if report.runs_restored == 0:
        report.problems.append("the restored Dagster instance holds no runs")
    return report
