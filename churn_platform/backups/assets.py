"""backups/model_snapshot: the model artifact and its lineage manifest, in the backup store."""

import dagster as dg

from churn_platform.backups.manifest import (
    build_model_manifest,
    manifest_bytes,
    metadata_values,
    snapshot_prefix,
)
from churn_platform.backups.resources import BackupStore
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import PlatformPartitions
from churn_platform.orchestration.retries import EXTERNAL_CALL_RETRY
from churn_platform.storage.artifact_io_manager import ArtifactStore
from churn_platform.storage.files import sha256_hex
from churn_platform.storage.materializations import latest_materialization


def _materialized(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> dg.EventLogEntry:
    entry = latest_materialization(instance, key, partition)
    if entry is None:
        raise dg.Failure(f"{key.to_user_string()} partition {partition} has never been materialized")
    return entry


def build_backup_assets(partitions: PlatformPartitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=keys.MODEL_SNAPSHOT,
        group_name="backups",
        partitions_def=partitions.labelled,
        deps=[keys.CHURN_MODEL],
        kinds={"json"},
        retry_policy=EXTERNAL_CALL_RETRY,
    )
    def model_snapshot(
        context: dg.AssetExecutionContext, artifact_store: ArtifactStore, backup_store: BackupStore
    ) -> dg.MaterializeResult:
        """A verified copy of the model artifact plus a manifest of the files (with SHA-256) that produced it."""
        partition = context.partition_key
        model_entry = _materialized(context.instance, keys.CHURN_MODEL, partition)
        training_entry = _materialized(context.instance, keys.TRAINING_SET, partition)
        model_meta = metadata_values(model_entry.asset_materialization.metadata)
        training_meta = metadata_values(training_entry.asset_materialization.metadata)

        artifact = artifact_store.read_uri(str(model_meta["uri"]))
        if sha256_hex(artifact) != model_meta["sha256"]:
            raise dg.Failure(
                f"model artifact {model_meta['uri']} no longer matches the SHA-256 recorded when it was "
                f"materialized; re-materialize {keys.CHURN_MODEL.to_user_string()} for this partition before backing it up"
            )
        prefix = snapshot_prefix(partition, model_meta["sha256"])
        model_uri = backup_store.write_once(f"{prefix}/model.joblib", artifact)
        manifest = build_model_manifest(
            partition,
            model_meta,
            {"run_id": model_entry.run_id, "timestamp": model_entry.timestamp},
            training_meta,
            {"run_id": training_entry.run_id},
            model_uri,
        )
        manifest_uri = backup_store.write_once(f"{prefix}/manifest.json", manifest_bytes(manifest))
        return dg.MaterializeResult(
            metadata={
                "model_backup": dg.MetadataValue.path(model_uri),
                "manifest": dg.MetadataValue.path(manifest_uri),
                "model_sha256": model_meta["sha256"],
                "input_files": len(manifest["inputs"]),
            }
        )

    return [model_snapshot]
