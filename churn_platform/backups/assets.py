"""backups/model_snapshot: the registered model version's files and their lineage manifest;
backups/platform_metadata: the Dagster instance and the MLflow store. Both in the backup store."""

import datetime as dt
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from churn_platform.backups.catalog import MANIFEST, list_snapshots, object_entries, snapshots_to_expire
from churn_platform.backups.drill import run_restore_drill
from churn_platform.backups.manifest import (
    build_model_manifest,
    manifest_bytes,
    metadata_values,
    snapshot_prefix,
)
from churn_platform.backups.metadata import (
    DatabaseDump,
    MetadataBackupError,
    instance_sources,
    mlflow_source,
    postgres_url_of,
    snapshot_files,
)
from churn_platform.backups.resources import BackupRefused, BackupStore
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import PlatformPartitions
from churn_platform.orchestration.retries import EXTERNAL_CALL_RETRY
from churn_platform.settings import BackupSettings
from churn_platform.storage.files import sha256_hex
from churn_platform.storage.materializations import (
    SOURCE_FILES_METADATA,
    find_materialization,
    latest_materialization,
)
from churn_platform.storage.model_registry import MLflowTracking, ModelArtifact, files_digest
from churn_platform.storage.parquet_io_manager import to_json_metadata


def _materialized(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> dg.EventLogEntry:
    entry = latest_materialization(instance, key, partition)
    if entry is None:
        raise dg.Failure(
            f"{key.to_user_string()} partition {partition} has never been materialized", allow_retries=False
        )
    return entry


def _training_set_read_by(instance: dg.DagsterInstance, model: dict, partition: str) -> dg.EventLogEntry:
    """The training-set materialization whose file the model read (matched by SHA-256): the
    partition may have been re-materialized since."""
    [read] = [f for f in model["training_set"] if f["asset"] == keys.TRAINING_SET.to_user_string()]
    entry = find_materialization(
        instance,
        keys.TRAINING_SET,
        partition,
        lambda meta: getattr(meta.get("sha256"), "value", None) == read["sha256"],
    )
    if entry is None:
        raise dg.Failure(
            f"no materialization of {keys.TRAINING_SET.to_user_string()} partition {partition} wrote the "
            f"file the model was trained on ({read['uri']}, SHA-256 {read['sha256']})",
            allow_retries=False,
        )
    return entry


@contextmanager
def refusals_are_final() -> Iterator[None]:
    """A refused backup (an unprotected bucket, other bytes at a written path) fails the run
    without the retries meant for flaky storage: retrying cannot change the answer."""
    try:
        yield
    except BackupRefused as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None


def write_model_snapshot(
    store: BackupStore,
    artifact: ModelArtifact,
    partition: str,
    model: dict,
    model_entry: dg.EventLogEntry,
    training: dict,
    training_entry: dg.EventLogEntry,
) -> tuple[str, dict]:
    """Copy the version's files (read back and checked against their digest) and the training data
    behind them (checked against the hashes recorded at training), then write the manifest;
    returns its URI and content."""
    prefix = snapshot_prefix(partition, artifact.version, artifact.sha256)
    stored = {}
    for relative in artifact.files:
        store.write_once(f"{prefix}/model/{relative}", (Path(artifact.local_dir) / relative).read_bytes())
        stored[f"model/{relative}"] = store.read(f"{prefix}/model/{relative}")
    copied = {name.removeprefix("model/"): sha256_hex(data) for name, data in stored.items()}
    if files_digest(copied) != artifact.sha256:  # read back: what is stored is what serves
        raise dg.Failure(f"backup of {artifact.uri} under {prefix} does not read back identical")
    manifest = build_model_manifest(
        partition,
        model,
        {"run_id": model_entry.run_id, "timestamp": model_entry.timestamp},
        training,
        {"run_id": training_entry.run_id},
        {relative: store.uri(f"{prefix}/model/{relative}") for relative in artifact.files},
    )
    # The training data: the training-set file the model read and every file behind it.
    for item in [manifest["training_set"], *manifest["inputs"]]:
        data = store.read_source(item["uri"])
        if sha256_hex(data) != item["sha256"]:
            raise BackupRefused(
                f"{item['uri']} changed since the model was trained (SHA-256 {sha256_hex(data)}, recorded "
                f"{item['sha256']}): the model's training data can no longer be backed up as it was"
            )
        name = f"training/{item['asset']}/{item['partition']}.parquet"
        store.write_once(f"{prefix}/{name}", data)
        item["backup"] = name
        stored[name] = data
    manifest["objects"] = object_entries(stored)
    return store.write_once(f"{prefix}/{MANIFEST}", manifest_bytes(manifest)), manifest


def build_backup_assets(
    partitions: PlatformPartitions, settings: BackupSettings | None = None
) -> list[dg.AssetsDefinition]:
    """The backups stage's assets; ``settings``: the recovery objectives of the restore drill
    (the declared defaults when not given)."""
    settings = settings or BackupSettings()
    rto_seconds, rpo_hours = settings.recovery_time_objective_seconds, settings.recovery_point_objective_hours
    keep_daily, keep_weekly = settings.keep_daily, settings.keep_weekly

    @dg.asset(
        key=keys.MODEL_SNAPSHOT,
        group_name="backups",
        partitions_def=partitions.labelled,
        deps=[keys.CHURN_MODEL],
        kinds={"mlflow", "json"},
        retry_policy=EXTERNAL_CALL_RETRY,
    )
    def model_snapshot(
        context: dg.AssetExecutionContext, mlflow_tracking: MLflowTracking, backup_store: BackupStore
    ) -> dg.MaterializeResult:
        """A verified copy of the registered model version's files (the bytes that are promoted and
        served) plus a manifest of the training data, with SHA-256s, that produced it."""
        partition = context.partition_key
        model_entry = _materialized(context.instance, keys.CHURN_MODEL, partition)
        model = metadata_values(model_entry.asset_materialization.metadata)
        missing = [
            k for k in ("model_version", "model_sha256", "model_files", "training_set") if k not in model
        ]
        if missing:
            raise dg.Failure(
                f"{keys.CHURN_MODEL.to_user_string()} partition {partition} was materialized before models were "
                f"recorded by digest (no {', '.join(missing)}): re-materialize it, then back it up",
                allow_retries=False,
            )
        training_entry = _training_set_read_by(context.instance, model, partition)
        training = metadata_values(training_entry.asset_materialization.metadata)

        artifact = mlflow_tracking.download_version(str(model["model_version"]))
        if artifact.sha256 != model["model_sha256"]:
            raise dg.Failure(
                f"registered model {artifact.uri} no longer matches the SHA-256 recorded when it was "
                f"trained ({model['model_sha256']}, now {artifact.sha256}); it was changed in the "
                "registry, so it is not backed up",
                allow_retries=False,
            )
        try:
            with refusals_are_final():
                protection = backup_store.ensure_protected()
                manifest_uri, manifest = write_model_snapshot(
                    backup_store, artifact, partition, model, model_entry, training, training_entry
                )
        finally:
            artifact.discard()
        return dg.MaterializeResult(
            metadata={
                "model_backup": dg.MetadataValue.path(manifest_uri.rsplit("/", 1)[0] + "/model"),
                "manifest": dg.MetadataValue.path(manifest_uri),
                "model_version": artifact.version,
                "model_sha256": artifact.sha256,
                "input_files": len(manifest["inputs"]),
                "protection": to_json_metadata(protection),
            }
        )

    @dg.asset(
        key=keys.INFERENCE_LOG_BACKUP,
        group_name="backups",
        partitions_def=partitions.daily,
        deps=[keys.INFERENCE_LOGS],
        automation_condition=partitions.on_upstream_change(),
        kinds={"jsonl"},
        retry_policy=EXTERNAL_CALL_RETRY,
    )
    def inference_log_backup(
        context: dg.AssetExecutionContext, backup_store: BackupStore
    ) -> dg.MaterializeResult:
        """The day's inference-log files exactly as raw/inference_logs read them (checked by SHA-256,
        then read back), with a manifest, under inference_logs/date=<day>/ in the backup store: the
        audit trail of what was answered, kept as immutably as model snapshots."""
        day = context.partition_key
        entry = _materialized(context.instance, keys.INFERENCE_LOGS, day)
        files = (
            metadata_values(entry.asset_materialization.metadata).get(SOURCE_FILES_METADATA, {}).get(day, [])
        )
        prefix = f"inference_logs/date={day}"
        stored = {}
        with refusals_are_final():
            protection = backup_store.ensure_protected()
            for item in files:
                data = backup_store.read_source(item["uri"])
                if sha256_hex(data) != item["sha256"]:
                    raise BackupRefused(
                        f"{item['uri']} changed since raw/inference_logs read it for {day} (SHA-256 "
                        f"{sha256_hex(data)}, read {item['sha256']}): re-materialize raw/inference_logs {day}"
                    )
                name = item["uri"].rsplit("/", 1)[-1]
                backup_store.write_once(f"{prefix}/{name}", data)
                if sha256_hex(backup_store.read(f"{prefix}/{name}")) != item["sha256"]:
                    raise dg.Failure(f"backup of {item['uri']} does not read back identical")
                stored[name] = data
            manifest = manifest_bytes(
                {"date": day, "source_run_id": entry.run_id, "objects": object_entries(stored)}
            )
            # Named by content: a day re-ingested with late files gets a new manifest beside the old.
            manifest_uri = backup_store.write_once(
                f"{prefix}/manifest-{sha256_hex(manifest)[:16]}.json", manifest
            )
        return dg.MaterializeResult(
            metadata={
                "manifest": dg.MetadataValue.path(manifest_uri),
                "files": len(stored),
                "bytes": sum(len(d) for d in stored.values()),
                "protection": to_json_metadata(protection),
            }
        )

    @dg.asset(key=keys.PLATFORM_METADATA, group_name="backups", kinds={"sqlite", "postgresql", "mlflow"})
    def platform_metadata(
        context: dg.AssetExecutionContext, mlflow_tracking: MLflowTracking, backup_store: BackupStore
    ) -> dg.MaterializeResult:
        """A consistent copy of the Dagster instance (runs, event logs, schedules: its SQLite
        databases, or a pg_dump of its PostgreSQL database) and the MLflow store (every run, version
        and the `champion` alias: the local SQLite store and artifacts, or a pg_dump of the tracking
        server's database), with a manifest of sizes and SHA-256s. Restore with `churn-platform restore`."""
        created = dt.datetime.now(dt.UTC)
        try:
            sources = [
                *instance_sources(context.instance),
                *mlflow_source(
                    mlflow_tracking.tracking_uri,
                    mlflow_tracking.artifact_location,
                    mlflow_tracking.database_url,
                ),
            ]
        except (MetadataBackupError, dg.DagsterInvariantViolationError) as exc:
            raise dg.Failure(f"cannot back up the platform's metadata: {exc}", allow_retries=False) from None
        if not any(
            s.name.startswith("dagster") and (isinstance(s, DatabaseDump) or s.files) for s in sources
        ):
            raise dg.Failure(
                f"the Dagster instance at {context.instance.root_directory} keeps no SQLite storage there "
                "and no PostgreSQL database",
                allow_retries=False,
            )
        if any(isinstance(s, DatabaseDump) for s in sources) and not shutil.which("pg_dump"):
            raise dg.Failure(
                "pg_dump is not installed where this run executes (Debian: postgresql-client): it dumps "
                f"{', '.join(s.root for s in sources if isinstance(s, DatabaseDump))}",
                allow_retries=False,
            )
        prefix = f"metadata/{created.strftime('%Y%m%dT%H%M%S%fZ')}"
        objects: dict[str, dict] = {}  # name -> sha256 and size: each object's bytes are dropped once written
        with refusals_are_final():
            protection = backup_store.ensure_protected()
            for name, data in snapshot_files(sources):
                backup_store.write_once(f"{prefix}/{name}", data)
                objects |= object_entries({name: data})
            manifest = {
                "format": "churn_platform.metadata_snapshot/v1",
                "kind": "metadata",
                "created": created.isoformat(),
                "sources": {s.name: str(s.root) for s in sources},
                "objects": dict(sorted(objects.items())),
            }
            manifest_uri = backup_store.write_once(f"{prefix}/{MANIFEST}", manifest_bytes(manifest))
        expired = snapshots_to_expire(list_snapshots(backup_store), keep_daily, keep_weekly, created)
        deferred = []
        for old in expired:
            try:
                backup_store.remove_snapshot(old.prefix)
                context.log.info(f"expired metadata backup {old.prefix} (created {old.created})")
            except Exception as exc:  # e.g. a GCS retention policy: tried again after the next backup
                deferred.append(old.prefix)
                context.log.warning(f"metadata backup {old.prefix} not expired yet: {exc}")
        expired = [old for old in expired if old.prefix not in deferred]
        return dg.MaterializeResult(
            metadata={
                "snapshot": prefix,
                "expired": to_json_metadata([old.prefix for old in expired]),
                "manifest": dg.MetadataValue.path(manifest_uri),
                "objects": len(objects),
                "bytes": sum(entry["bytes"] for entry in objects.values()),
                "protection": to_json_metadata(protection),
            }
        )

    @dg.asset(
        key=keys.RESTORE_DRILL,
        group_name="backups",
        deps=[keys.PLATFORM_METADATA],
        kinds={"sqlite", "postgresql", "mlflow"},
        check_specs=[dg.AssetCheckSpec(keys.RECOVERY_OBJECTIVES.name, asset=keys.RESTORE_DRILL)],
    )
    def restore_drill(
        context: dg.AssetExecutionContext, mlflow_tracking: MLflowTracking, backup_store: BackupStore
    ) -> dg.MaterializeResult:
        """Restores the newest metadata backup into a scratch directory (every object verified),
        opens the restored Dagster instance and MLflow registry, checks the champion's files against
        their recorded SHA-256 and verifies the newest model snapshot. Records the recovery time and
        the recovery point; its check fails above the objectives or on any problem."""
        tracking_uri = mlflow_tracking.tracking_uri
        report = run_restore_drill(
            backup_store,
            mlflow_tracking.model_name,
            # PostgreSQL dumps are restored into scratch databases beside the live ones.
            instance_server_url=postgres_url_of(context.instance),
            mlflow_server_url=tracking_uri
            if tracking_uri.startswith("postgresql")
            else mlflow_tracking.database_url,
        )
        age = report.recovery_point_age_hours
        failures = list(report.problems)
        if report.recovery_time_seconds > rto_seconds:
            failures.append(f"recovery took {report.recovery_time_seconds:.1f} s (objective {rto_seconds} s)")
        if age is not None and age > rpo_hours:
            failures.append(f"newest backup is {age:.1f} h old (objective {rpo_hours} h)")
        metadata = {
            "recovery_time_seconds": round(report.recovery_time_seconds, 3),
            "recovery_point_age_hours": round(age, 3) if age is not None else -1.0,
            "metadata_snapshot": report.metadata_snapshot or "none",
            "model_snapshot": report.model_snapshot or "none",
            "restored_files": report.restored_files,
            "runs_restored": report.runs_restored,
            "champion_version": report.champion_version or "none",
        }
        check = dg.AssetCheckResult(
            check_name=keys.RECOVERY_OBJECTIVES.name,
            passed=not failures,
            description="; ".join(failures)
            or f"restored in {report.recovery_time_seconds:.1f} s (objective {rto_seconds} s), "
            f"newest backup {age or 0:.1f} h old (objective {rpo_hours} h)",
            metadata={"problems": to_json_metadata(failures)},
        )
        return dg.MaterializeResult(metadata=metadata, check_results=[check])

    return [model_snapshot, inference_log_backup, platform_metadata, restore_drill]
