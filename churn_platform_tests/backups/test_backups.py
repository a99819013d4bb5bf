import datetime as dt

import pytest

from churn_platform.backups.catalog import Snapshot, snapshots_to_expire
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


NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)  # a Wednesday


def metadata_at(*created: str) -> list[Snapshot]:
    return [Snapshot(f"metadata/{c}", "metadata", f"{c}+00:00", {}) for c in created]


# (created, keep_daily, keep_weekly) -> which are expired
RETENTION = [
    # Two a day: the older of each day goes; days inside the window keep their newest.
    (("2026-11-24T04:30", "2026-11-24T09:00", "2026-11-25T04:30"), 7, 0, ["2026-11-24T04:30"]),
    # Outside the daily window, only the newest of each week stays (weekly window of 8).
    (("2026-10-05T04:30", "2026-10-06T04:30", "2026-11-25T04:30"), 7, 8, ["2026-10-05T04:30"]),
    # Older than the weekly window too: gone.
    (("2026-08-03T04:30", "2026-11-25T04:30"), 7, 8, ["2026-08-03T04:30"]),
    # The newest is always kept, however old.
    (("2026-01-01T04:30",), 1, 0, []),
    # No weekly retention: only the daily window.
    (("2026-11-10T04:30", "2026-11-24T04:30", "2026-11-25T04:30"), 2, 0, ["2026-11-10T04:30"]),
]


@pytest.mark.parametrize(("created", "keep_daily", "keep_weekly", "expired"), RETENTION)
def test_metadata_backups_are_thinned_to_daily_and_weekly(created, keep_daily, keep_weekly, expired):
    snapshots = metadata_at(*created)
    gone = snapshots_to_expire(snapshots, keep_daily, keep_weekly, NOW)
    assert [s.prefix.removeprefix("metadata/") for s in gone] == expired


def test_model_snapshots_are_never_expired():
    model = Snapshot("models/churn_model/2026-01-01/v1-ab", "model", "2026-01-01T00:00:00+00:00", {})
    assert snapshots_to_expire([model, *metadata_at("2026-11-25T04:30")], 1, 0, NOW) == []
