import pytest

from churn_platform.backups.manifest import build_model_manifest, manifest_bytes
from churn_platform.backups.resources import BackupStore
from churn_platform.orchestration import asset_keys as keys
from churn_platform.storage.files import StorageError


def test_backups_are_written_once(tmp_path):
    store = BackupStore(base_path=str(tmp_path))
    uri = store.write_once("models/a/model.skops", b"model-bytes")
    assert store.write_once("models/a/model.skops", b"model-bytes") == uri  # idempotent re-run
    with pytest.raises(StorageError, match="refusing to overwrite backup"):
        store.write_once("models/a/model.skops", b"other-bytes")
    assert store.read("models/a/model.skops") == b"model-bytes"


def test_manifest_is_deterministic_for_one_materialization():
    args = (
        "2026-03-31",
        {
            "model_uri": "models:/churn_model/3",
            "model_version": "3",
            "model_sha256": "ab" * 32,
            "model_files": {"MLmodel": "12" * 32, "model.skops": "34" * 32},
            "roc_auc": 0.9,
        },
        {"run_id": "r1", "timestamp": 1.0},
        {
            "uri": "/t.parquet",
            "sha256": "cd" * 32,
            "dagster/row_count": 5,
            "as_of_dates": ["2026-03-31"],
            "lineage": [
                {
                    "asset": keys.CUSTOMER_FEATURES.to_user_string(),
                    "partition": "2026-03-31",
                    "sha256": "ef" * 32,
                }
            ],
        },
        {"run_id": "r0"},
        {"MLmodel": "/backup/model/MLmodel", "model.skops": "/backup/model/model.skops"},
    )
    first, second = build_model_manifest(*args), build_model_manifest(*args)
    assert manifest_bytes(first) == manifest_bytes(second)
    assert first["model"]["metrics"] == {"roc_auc": 0.9}
    assert first["inputs"][0]["partition"] == "2026-03-31"
    assert first["model"]["version"] == "3" and first["model"]["files"]["MLmodel"] == "12" * 32
