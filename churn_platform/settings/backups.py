"""How backups are protected in an object store (Object Lock or retention policy, the archive tier, the
backup location's own credentials) and the recovery objectives the restore drill checks. The
location itself is in the storage section."""

from dataclasses import dataclass
from typing import ClassVar

from churn_platform.settings.declare import setting

LOCK_MODES = ("GOVERNANCE", "COMPLIANCE", "none")
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")


@dataclass(frozen=True)
class BackupSettings:
    lock_mode: str = setting(
        "CHURN_BACKUP_LOCK_MODE",
        "GOVERNANCE",
        "s3: Object Lock mode of every backup object (`COMPLIANCE`: nobody, root included, can shorten "
        "it); gcs: any mode sets a bucket retention policy; `none`: no protection is set or required",
        choices=LOCK_MODES,
    )
    lock_days: int = setting(
        "CHURN_BACKUP_LOCK_DAYS",
        30,
        "s3: days each backup object is locked against deletion; gcs: the bucket's retention period",
        minimum=1,
    )
    archive_after_days: int = setting(
        "CHURN_BACKUP_ARCHIVE_AFTER_DAYS",
        90,
        "s3, gcs: a lifecycle rule moves backups this old to the archive class (`0`: no rule)",
        minimum=0,
    )
    archive_storage_class: str = setting(
        "CHURN_BACKUP_ARCHIVE_CLASS",
        "GLACIER",
        "s3: `GLACIER` (Flexible Retrieval: 1-5 min expedited, 3-5 h standard) or `DEEP_ARCHIVE` (12 h); "
        "gcs: always Archive",
        choices=ARCHIVE_CLASSES,
    )

    keep_daily: int = setting(
        "CHURN_BACKUP_KEEP_DAILY",
        7,
        "metadata backups: keep the newest of each of the last N days (model snapshots are never expired)",
        minimum=1,
    )
    keep_weekly: int = setting(
        "CHURN_BACKUP_KEEP_WEEKLY",
        8,
        "metadata backups: and the newest of each of the last M weeks",
        minimum=0,
    )
    recovery_time_objective_seconds: int = setting(
        "CHURN_RECOVERY_TIME_OBJECTIVE_SECONDS",
        900,
        "the restore drill fails its check when verifying and restoring the newest backup takes longer",
        minimum=1,
    )
    recovery_point_objective_hours: int = setting(
        "CHURN_RECOVERY_POINT_OBJECTIVE_HOURS",
        26,
        "the restore drill fails its check when the newest restorable metadata backup is older "
        "(daily backups plus slack)",
        minimum=1,
    )

    SECRETS: ClassVar[dict[str, str]] = {
        "CHURN_BACKUP_AWS_ACCESS_KEY_ID": "s3: the backup bucket's own credentials (read through "
        "`dagster.EnvVar`); without them backups use the warehouse's",
        "CHURN_BACKUP_AWS_SECRET_ACCESS_KEY": "s3: as `CHURN_BACKUP_AWS_ACCESS_KEY_ID`",
    }
