"""Lineage manifests: what a model snapshot contains and which data produced it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from churn_platform.orchestration import asset_keys as keys

MANIFEST_FORMAT = "churn_platform.model_snapshot/v2"
# The model's own metrics (what rebuild-model compares), then the saving, which also depends on costs.
MODEL_METRICS = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "positive_rate",
    "fit_churn_rate",
    "evaluation_churn_rate",
)
METRICS = (*MODEL_METRICS, "expected_saving_per_customer")


def metadata_values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values from Dagster metadata entries (MetadataValue objects expose ``.value``)."""
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def snapshot_prefix(partition: str, version: str, model_sha256: str) -> str:
    return f"models/churn_model/{partition}/v{version}-{model_sha256[:16]}"


def build_model_manifest(
    partition: str,
    model: Mapping[str, Any],
    model_event: Mapping[str, Any],
    training_set: Mapping[str, Any],
    training_event: Mapping[str, Any],
    backup_files: Mapping[str, str],
) -> dict[str, Any]:
    """Everything needed to audit or restore a model: the registered version's files (each with
    its SHA-256, and their digest), the training-set file it was trained on and the feature/label
    partitions behind that file. ``training_set`` is the materialization the model read, not the
    newest one. Deterministic for a given materialization, so re-running a backup writes identical bytes."""
    full = (model.get("gate_inputs") or {}).get("candidate") or {}
    return {
        "format": MANIFEST_FORMAT,
        "kind": "model",
        "created": dt.datetime.fromtimestamp(model_event["timestamp"], dt.UTC).isoformat(),
        "asset": keys.CHURN_MODEL.to_user_string(),
        "partition": partition,
        "model": {
            "registered_uri": str(model["model_uri"]),
            "version": str(model["model_version"]),
            "mlflow_run_id": model.get("mlflow_run_id"),
            "sha256": model["model_sha256"],
            "files": dict(model["model_files"]),
            "backup_files": dict(backup_files),
            # Full precision (the gate's inputs): the metadata's metric entries are rounded for people.
            "metrics": {k: full.get(k, model[k]) for k in METRICS if k in model},
            "training_config": model.get("training_config"),
            "run_id": model_event["run_id"],
            "materialized_at": model_event["timestamp"],
        },
        "training_set": {
            "asset": keys.TRAINING_SET.to_user_string(),
            "partition": partition,
            "uri": str(training_set["uri"]),
            "sha256": training_set["sha256"],
            "rows": training_set.get("dagster/row_count"),
            "as_of_dates": training_set.get("as_of_dates"),
            "run_id": training_event["run_id"],
        },
        "inputs": training_set.get("lineage", []),
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
