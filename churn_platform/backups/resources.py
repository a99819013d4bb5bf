"""The backup location: separate from the platform's storage, written once per object, and
protected by rules the platform sets and reads back: on S3 Object Lock retention per object and an
archive lifecycle rule; on GCS a bucket retention policy and an Archive-class lifecycle rule."""

import datetime as dt
from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath

from churn_platform.storage.connection import ObjectStoreConnection, open_path
from churn_platform.storage.files import (
    StorageError,
    protocol_of,
    read_bytes,
    sha256_hex,
    uri_of,
    write_bytes_atomic,
)

ARCHIVE_RULE_ID = "churn-platform-archive-backups"


def _is_our_gcs_rule(rule: dict, prefixes: list[str]) -> bool:
    """GCS rules have no ID: ours is the Archive transition on the backup prefix."""
    action, condition = rule.get("action", {}), rule.get("condition", {})
    return action.get("storageClass") == "ARCHIVE" and condition.get("matchesPrefix") == prefixes


class BackupRefused(StorageError):
    """A backup that cannot be written as configured; retrying will not change that."""


def _absent_as(read: Any, absent_code: str, default: Any) -> Any:
    """``read()``, or ``default`` when S3 answers that the thing does not exist; any other error
    (access denied, throttling) is raised, never mistaken for absence."""
    from botocore.exceptions import ClientError

    try:
        return read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == absent_code:
            return default
        raise


def _lifecycle_rules(client: Any, bucket: str) -> list[dict]:
    return _absent_as(
        lambda: client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []),
        "NoSuchLifecycleConfiguration",
        [],
    )


class BackupStore(dg.ConfigurableResource):
    """Write-once storage for backups. On S3, every object gets Object Lock retention (``lock_mode``
    for ``lock_days``) in the same PUT, in a bucket that must keep versions and have Object Lock."""

    base_path: str = Field(description="Local directory, s3://bucket/prefix or gs://bucket/prefix.")
    connection: ObjectStoreConnection | None = None
    source_connection: ObjectStoreConnection | None = Field(
        default=None, description="For reading what is backed up (the warehouse's connection)."
    )
    lock_mode: str | None = Field(
        default=None,
        description="S3 Object Lock mode of every object (GOVERNANCE, COMPLIANCE); None: no lock.",
    )
    lock_days: int = 30
    archive_after_days: int = Field(
        default=0, description="S3: lifecycle transition after this many days (0: none)."
    )
    archive_storage_class: str = "GLACIER"

    def path(self, relative: str) -> UPath:
        return open_path(self.base_path, self.connection).joinpath(*relative.split("/"))

    def uri(self, relative: str) -> str:
        return uri_of(self.path(relative))

    def _s3(self) -> tuple[Any, str, str] | None:
        """(boto3 client, bucket, key prefix) when the store is on S3 and protection applies."""
        root = open_path(self.base_path, self.connection)
        if protocol_of(root) not in ("s3", "s3a"):
            return None
        bucket, _, prefix = root.path.partition("/")
        # No connection: the default AWS credential chain, still locked (never silently unprotected).
        return (self.connection or ObjectStoreConnection()).s3_client(), bucket, prefix.strip("/")

    def _gcs(self) -> tuple[Any, str, str] | None:
        """(gcsfs filesystem, bucket, key prefix) when the store is on GCS."""
        root = open_path(self.base_path, self.connection)
        if protocol_of(root) not in ("gs", "gcs"):
            return None
        bucket, _, prefix = root.path.partition("/")
        return root.fs, bucket, prefix.strip("/")

    def _gcs_protection(self) -> dict[str, Any]:
        fs, bucket, prefix = self._gcs()
        meta = fs.call("GET", "b/{}", bucket, json_out=True)
        policy = meta.get("retentionPolicy") or {}
        rules = (meta.get("lifecycle") or {}).get("rule", [])
        archive = next((r for r in rules if _is_our_gcs_rule(r, [f"{prefix}/" if prefix else ""])), None)
        return {
            "store": "gcs",
            "bucket": bucket,
            "retention_seconds": int(policy.get("retentionPeriod", 0)),
            "retention_locked": bool(policy.get("isLocked")),
            "archive_rule": {"Days": archive["condition"].get("age"), "StorageClass": "ARCHIVE"}
            if archive
            else None,
        }

    def _ensure_gcs_protected(self) -> dict[str, Any]:
        """A bucket retention policy at least ``lock_days`` long (every object, not only backups:
        hence a separate bucket) and an Archive-class lifecycle rule on the backup prefix."""
        fs, bucket, prefix = self._gcs()
        state = self._gcs_protection()
        wanted_seconds = self.lock_days * 86_400
        patch: dict[str, Any] = {}
        if state["retention_seconds"] < wanted_seconds:
            problem = self.protection_problem(state)
            if problem:
                raise BackupRefused(problem)
            patch["retentionPolicy"] = {"retentionPeriod": str(wanted_seconds)}
        if self.archive_after_days and state["archive_rule"] != {
            "Days": self.archive_after_days,
            "StorageClass": "ARCHIVE",
        }:
            meta = fs.call("GET", "b/{}", bucket, json_out=True)
            condition = {"age": self.archive_after_days, "matchesPrefix": [f"{prefix}/" if prefix else ""]}
            rules = [  # other rules stay; ours is the Archive rule on the backup prefix
                r
                for r in (meta.get("lifecycle") or {}).get("rule", [])
                if not _is_our_gcs_rule(r, condition["matchesPrefix"])
            ]
            rules.append(
                {"action": {"type": "SetStorageClass", "storageClass": "ARCHIVE"}, "condition": condition}
            )
            patch["lifecycle"] = {"rule": rules}
        if patch:
            fs.call("PATCH", "b/{}", bucket, json=patch, json_out=True)
            state = self._gcs_protection()
            if state["retention_seconds"] < wanted_seconds:
                raise BackupRefused(
                    f"the retention policy of {bucket} reads back as {state['retention_seconds']} s"
                )
        return state

    # -- protection ----------------------------------------------------------------------------------
    def protection(self) -> dict[str, Any]:
        """What protects the backups, read back from the bucket (local disk: nothing)."""
        if self._gcs() is not None:
            return self._gcs_protection()
        s3 = self._s3()
        if s3 is None:
            return {"store": protocol_of(open_path(self.base_path)) or "local", "object_lock": None}
        client, bucket, _ = s3
        versioning = client.get_bucket_versioning(Bucket=bucket).get("Status", "Off")
        lock = _absent_as(
            lambda: client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"],
            "ObjectLockConfigurationNotFoundError",
            {},
        )
        rules = _lifecycle_rules(client, bucket)
        archive = next((r for r in rules if r.get("ID") == ARCHIVE_RULE_ID), None)
        return {
            "store": "s3",
            "bucket": bucket,
            "versioning": versioning,
            "object_lock": lock.get("ObjectLockEnabled", "Disabled"),
            "lock_mode": self.lock_mode,
            "lock_days": self.lock_days if self.lock_mode else None,
            "archive_rule": archive["Transitions"][0] if archive else None,
        }

    def protection_problem(self, state: dict[str, Any]) -> str | None:
        """Why backups cannot go into the bucket whose protection ``protection()`` read back (None:
        they can): on S3 with a lock mode, no versioning or no Object Lock; on GCS, a locked
        retention policy shorter than ``lock_days`` (the platform cannot lengthen a locked one)."""
        if not self.lock_mode:
            return None
        bucket = state.get("bucket")
        if state["store"] == "s3":
            if state["versioning"] != "Enabled":
                return (
                    f"backup bucket {bucket} does not keep versions (versioning: {state['versioning']}): "
                    "a write or delete there could destroy the only copy. Enable versioning and Object Lock "
                    "on it, or set CHURN_BACKUP_LOCK_MODE=none to back up without protection"
                )
            if state["object_lock"] != "Enabled":
                return (
                    f"backup bucket {bucket} has no Object Lock, so CHURN_BACKUP_LOCK_MODE={self.lock_mode} "
                    "cannot be applied: create the bucket with Object Lock enabled, or set the mode to none"
                )
        elif (
            state["store"] == "gcs"
            and state["retention_locked"]
            and state["retention_seconds"] < self.lock_days * 86_400
        ):
            return (
                f"backup bucket {bucket} has a locked retention policy of {state['retention_seconds']} s, "
                f"shorter than CHURN_BACKUP_LOCK_DAYS={self.lock_days}; it can only be lengthened in GCS"
            )
        return None

    def ensure_protected(self) -> dict[str, Any]:
        """Refuse to back up into an S3 bucket that does not keep versions or lacks Object Lock (when
        a lock mode is configured), and set the archive lifecycle rule; returns what was read back."""
        if self._gcs() is not None and self.lock_mode:
            return self._ensure_gcs_protected()
        s3 = self._s3()
        if s3 is None or not self.lock_mode:
            return self.protection()
        client, bucket, prefix = s3
        state = self.protection()
        problem = self.protection_problem(state)
        if problem:
            raise BackupRefused(problem)
        if self.archive_after_days:
            wanted = {"Days": self.archive_after_days, "StorageClass": self.archive_storage_class}
            if state["archive_rule"] != wanted:
                rules = [r for r in _lifecycle_rules(client, bucket) if r.get("ID") != ARCHIVE_RULE_ID] + [
                    {
                        "ID": ARCHIVE_RULE_ID,
                        "Status": "Enabled",
                        "Filter": {"Prefix": f"{prefix}/" if prefix else ""},
                        "Transitions": [wanted],
                    }
                ]
                client.put_bucket_lifecycle_configuration(
                    Bucket=bucket, LifecycleConfiguration={"Rules": rules}
                )
                state = self.protection()
                if state["archive_rule"] != wanted:
                    raise BackupRefused(f"the archive rule on {bucket} reads back as {state['archive_rule']}")
        return state

    # -- objects -------------------------------------------------------------------------------------
    def write_once(self, relative: str, data: bytes) -> str:
        """Store ``data`` at ``relative``; re-writing identical bytes is a no-op, different bytes
        are refused so that a backup can never be silently replaced."""
        path = self.path(relative)
        if path.exists():
            existing = read_bytes(path)
            if sha256_hex(existing) != sha256_hex(data):
                raise BackupRefused(f"refusing to overwrite backup {uri_of(path)} with different content")
            return uri_of(path)
        s3 = self._s3()
        if s3 is not None and self.lock_mode:
            client, bucket, _ = s3
            until = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.lock_days)
            # Lock and data in one PUT: there is never an unprotected version.
            client.put_object(
                Bucket=bucket,
                Key=path.path.partition("/")[2],
                Body=data,
                ObjectLockMode=self.lock_mode,
                ObjectLockRetainUntilDate=until,
                ChecksumAlgorithm="SHA256",
            )
            path.fs.invalidate_cache()
        else:
            write_bytes_atomic(path, data)
        return uri_of(path)

    def read(self, relative: str) -> bytes:
        return read_bytes(self.path(relative))

    def remove_snapshot(self, prefix: str) -> None:
        """Delete a snapshot folder (on a versioned bucket: delete markers; locked versions stay
        until their retention ends)."""
        root = self.path(prefix)
        root.fs.rm(root.path, recursive=True)

    def read_source(self, uri: str) -> bytes:
        """A file of the platform's own storage (warehouse), to be copied into a backup."""
        return read_bytes(open_path(uri, self.source_connection))
