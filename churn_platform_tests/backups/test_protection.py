"""Backups on S3 (moto's server) are protected by the platform: every object is written with Object
Lock retention, a locked version cannot be deleted, a bucket without versioning or Object Lock is
refused before anything is written, and the archive lifecycle rule reads back as configured."""

import datetime as dt

import pytest
from botocore.exceptions import ClientError

from churn_platform.backups.resources import ARCHIVE_RULE_ID, BackupRefused, BackupStore
from churn_platform.resources import build_resources
from churn_platform.settings import load_settings

pytestmark = pytest.mark.slow


def store_on(s3_server, bucket: str, **protection) -> BackupStore:
    from churn_platform.storage.connection import ObjectStoreConnection

    connection = ObjectStoreConnection(
        endpoint_url=s3_server.endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    options = {"lock_mode": "GOVERNANCE", "lock_days": 30, "archive_after_days": 90, **protection}
    return BackupStore(base_path=f"s3://{bucket}/churn-platform", connection=connection, **options)


def test_every_backup_object_is_locked_and_a_locked_version_cannot_be_deleted(s3_server):
    bucket = s3_server.new_bucket(versioned=True, object_lock=True)
    store = store_on(s3_server, bucket)
    store.ensure_protected()
    store.write_once("models/m/model/MLmodel", b"model bytes")
    client = s3_server.client()
    key = "churn-platform/models/m/model/MLmodel"
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    days = (head["ObjectLockRetainUntilDate"] - dt.datetime.now(dt.UTC)).total_seconds() / 86400
    assert 29.9 < days <= 30

    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"model bytes"
    # Writing the same bytes again is a no-op; other bytes are refused, and not retried.
    assert store.write_once("models/m/model/MLmodel", b"model bytes").endswith("/MLmodel")
    with pytest.raises(BackupRefused, match="refusing to overwrite"):
        store.write_once("models/m/model/MLmodel", b"other bytes")
    versions = client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert [v["VersionId"] for v in versions] == [head["VersionId"]]


@pytest.mark.parametrize(
    ("versioned", "object_lock", "message"),
    [
        (False, False, "does not keep versions"),
        (True, False, "has no Object Lock"),
    ],
)
def test_an_unprotected_bucket_is_refused_before_anything_is_written(
    s3_server, versioned, object_lock, message
):
    bucket = s3_server.new_bucket(versioned=versioned, object_lock=object_lock)
    store = store_on(s3_server, bucket)
    with pytest.raises(BackupRefused, match=message) as refused:
        store.ensure_protected()
    assert bucket in str(refused.value) and "CHURN_BACKUP_LOCK_MODE" in str(refused.value)
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=bucket)


def test_the_archive_rule_is_set_read_back_and_keeps_other_rules(s3_server):
    bucket = s3_server.new_bucket(versioned=True, object_lock=True)
    client = s3_server.client()
    theirs = {"ID": "theirs", "Status": "Enabled", "Filter": {"Prefix": "x/"}, "Expiration": {"Days": 7}}
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [theirs]})
    state = store_on(s3_server, bucket, archive_storage_class="DEEP_ARCHIVE").ensure_protected()
    assert state["archive_rule"] == {"Days": 90, "StorageClass": "DEEP_ARCHIVE"}
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(rules) == {"theirs", ARCHIVE_RULE_ID}
    assert rules[ARCHIVE_RULE_ID]["Filter"] == {"Prefix": "churn-platform/"}


def test_the_s3_environment_backs_up_with_its_own_credentials_and_object_lock(s3_server):
    environ = {
        "CHURN_ENV": "s3",
        "CHURN_S3_BUCKET": "warehouse",
        "CHURN_S3_BACKUP_BUCKET": "backups",
        "CHURN_S3_ENDPOINT_URL": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": "warehouse-key",
        "CHURN_BACKUP_AWS_ACCESS_KEY_ID": "backup-key",
        "CHURN_BACKUP_AWS_SECRET_ACCESS_KEY": "backup-secret",
    }
    resources = build_resources(load_settings(environ))
    backup, warehouse = resources["backup_store"], resources["io_manager"]
    assert (backup.lock_mode, backup.lock_days, backup.archive_after_days) == ("GOVERNANCE", 30, 90)
    # References to the environment, never the values.
    assert backup.connection.access_key_id.env_var_name == "CHURN_BACKUP_AWS_ACCESS_KEY_ID"
    assert warehouse.connection.access_key_id.env_var_name == "AWS_ACCESS_KEY_ID"
    local = build_resources(load_settings({"CHURN_BACKUP_LOCK_MODE": "COMPLIANCE"}))["backup_store"]
    assert local.lock_mode is None  # a local directory has no Object Lock
    gcs = {"CHURN_ENV": "gcs", "CHURN_GCS_BUCKET": "w", "CHURN_GCS_BACKUP_BUCKET": "b"}
    assert build_resources(load_settings(gcs))["backup_store"].lock_mode == "GOVERNANCE"
    unprotected = build_resources(load_settings({**gcs, "CHURN_BACKUP_LOCK_MODE": "none"}))["backup_store"]
    assert unprotected.lock_mode is None


def gcs_store(gcs_server, bucket: str) -> BackupStore:
    from churn_platform.storage.connection import ObjectStoreConnection

    connection = ObjectStoreConnection(endpoint_url=gcs_server.endpoint, gcs_token="anon", gcs_project="test")
    return BackupStore(
        base_path=f"gs://{bucket}/churn-platform",
        connection=connection,
        lock_mode="GOVERNANCE",
        lock_days=30,
        archive_after_days=90,
    )


def test_on_gcs_a_retention_policy_and_an_archive_rule_are_set_and_read_back(gcs_server):
    """The emulator stores bucket policies but does not enforce them: what is tested is that the
    platform sets them, keeps other rules, and reads them back; GCS enforces them."""
    bucket = gcs_server.new_bucket()
    store = gcs_store(gcs_server, bucket)
    fs = store.path("").fs
    theirs = {"action": {"type": "Delete"}, "condition": {"age": 7, "matchesPrefix": ["tmp/"]}}
    fs.call("PATCH", "b/{}", bucket, json={"lifecycle": {"rule": [theirs]}}, json_out=True)

    state = store.ensure_protected()
    assert state["retention_seconds"] == 30 * 86_400
    assert state["archive_rule"] == {"Days": 90, "StorageClass": "ARCHIVE"}
    meta = fs.call("GET", "b/{}", bucket, json_out=True)
    assert meta["retentionPolicy"]["retentionPeriod"] == str(30 * 86_400)
    rules = meta["lifecycle"]["rule"]
    assert theirs in rules and len(rules) == 2
    [ours] = [r for r in rules if r["action"].get("storageClass") == "ARCHIVE"]
    assert ours["condition"] == {"age": 90, "matchesPrefix": ["churn-platform/"]}
    assert store.ensure_protected() == state  # set once; the second call only reads


def test_on_gcs_a_locked_shorter_retention_policy_is_refused(gcs_server):
    bucket = gcs_server.new_bucket()
    store = gcs_store(gcs_server, bucket)
    locked = {"retentionPolicy": {"retentionPeriod": "3600", "isLocked": True}}
    store.path("").fs.call("PATCH", "b/{}", bucket, json=locked, json_out=True)
    with pytest.raises(BackupRefused, match=f"{bucket} has a locked retention policy of 3600 s"):
        store.ensure_protected()
