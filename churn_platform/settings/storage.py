"""Where the platform keeps its data: local disk, S3 or GCS (``CHURN_ENV``)."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from churn_platform.settings.declare import SettingsError, setting

ENVIRONMENTS = ("local", "s3", "gcs", "production-s3", "production-gcs")
PRODUCTION = "production-"


@dataclass(frozen=True)
class StorageSettings:
    env: str = setting(
        "CHURN_ENV",
        "local",
        "`local`, `s3` or `gcs`: which storage the resources use; `production-s3` and `production-gcs` use "
        "the same stores and also require a shared MLflow registry, Spark on a cluster, Slack alerts and a "
        "Zendesk URL (README, Deploying to production)",
        choices=ENVIRONMENTS,
    )
    data_dir: str | None = setting(
        "CHURN_DATA_DIR",
        None,
        "local: landing zone, CRM export and warehouse",
        default_doc="`./data` (in the current directory)",
    )
    backup_dir: str | None = setting(
        "CHURN_BACKUP_DIR",
        None,
        "local: the backup location (outside the data directory)",
        default_doc="`${CHURN_DATA_DIR}_backups` (`./data_backups`)",
    )
    s3_bucket: str | None = setting(
        "CHURN_S3_BUCKET",
        None,
        "s3 (required): bucket for the landing zone, CRM export and warehouse",
    )
    s3_backup_bucket: str | None = setting(
        "CHURN_S3_BACKUP_BUCKET",
        None,
        "s3 (required): a separate bucket for backups (versioned, ideally with Object Lock)",
    )
    s3_prefix: str = setting("CHURN_S3_PREFIX", "churn-platform", "s3: key prefix inside both buckets")
    s3_endpoint_url: str | None = setting(
        "CHURN_S3_ENDPOINT_URL", None, "s3: custom endpoint, e.g. `http://127.0.0.1:9000` for MinIO"
    )
    region: str | None = setting("AWS_REGION", None, "s3: region")
    gcs_bucket: str | None = setting(
        "CHURN_GCS_BUCKET",
        None,
        "gcs (required): bucket for the landing zone, CRM export and warehouse",
    )
    gcs_backup_bucket: str | None = setting(
        "CHURN_GCS_BACKUP_BUCKET", None, "gcs (required): a separate bucket for backups"
    )
    gcs_prefix: str = setting("CHURN_GCS_PREFIX", "churn-platform", "gcs: object prefix inside both buckets")
    gcs_endpoint_url: str | None = setting(
        "CHURN_GCS_ENDPOINT_URL", None, "gcs: custom endpoint (an emulator)"
    )
    gcs_project: str | None = setting("GOOGLE_CLOUD_PROJECT", None, "gcs: project")
    gcs_token: str | None = setting(
        "CHURN_GCS_TOKEN", None, "gcs: `anon` for emulators that take no credentials"
    )

    SECRETS: ClassVar[dict[str, str]] = {
        "AWS_ACCESS_KEY_ID": "s3: read through `dagster.EnvVar` when set; otherwise the AWS default credential "
        "chain (instance or pod role) applies",
        "AWS_SECRET_ACCESS_KEY": "s3: as `AWS_ACCESS_KEY_ID`",
        "GOOGLE_APPLICATION_CREDENTIALS": "gcs: service-account JSON path, read through `dagster.EnvVar`; "
        "otherwise Google default credentials",
    }

    def __post_init__(self) -> None:
        # Relative to the current directory, not to this package: it works installed from a wheel.
        data_dir = str(Path(self.data_dir or "data").absolute())
        object.__setattr__(self, "data_dir", data_dir)
        # Beside the data directory, not inside it: deleting the data must not delete its backups.
        backup_dir = self.backup_dir or str(Path(data_dir).parent / f"{Path(data_dir).name}_backups")
        object.__setattr__(self, "backup_dir", str(Path(backup_dir).absolute()))
        if self.store == "local":
            return
        for variable, value, why in self._required():
            if not value:
                raise SettingsError(f"{variable} must be set when CHURN_ENV={self.env}{why}")

    @property
    def store(self) -> str:
        """`local`, `s3` or `gcs`, whichever the profile."""
        return self.env.removeprefix(PRODUCTION)

    @property
    def production(self) -> bool:
        return self.env.startswith(PRODUCTION)

    def _required(self) -> list[tuple[str, str | None, str]]:
        backups = " (backups live in their own bucket)"
        if self.store == "s3":
            return [
                ("CHURN_S3_BUCKET", self.s3_bucket, ""),
                ("CHURN_S3_BACKUP_BUCKET", self.s3_backup_bucket, backups),
            ]
        return [
            ("CHURN_GCS_BUCKET", self.gcs_bucket, ""),
            ("CHURN_GCS_BACKUP_BUCKET", self.gcs_backup_bucket, backups),
        ]

    @property
    def data_root(self) -> str:
        """A local directory, s3://bucket/prefix or gs://bucket/prefix."""
        if self.store == "s3":
            return f"s3://{self.s3_bucket}/{self.s3_prefix.strip('/')}"
        if self.store == "gcs":
            return f"gs://{self.gcs_bucket}/{self.gcs_prefix.strip('/')}"
        return self.data_dir

    @property
    def backup_root(self) -> str:
        """A separate location (bucket) for backups."""
        if self.store == "s3":
            return f"s3://{self.s3_backup_bucket}/{self.s3_prefix.strip('/')}"
        if self.store == "gcs":
            return f"gs://{self.gcs_backup_bucket}/{self.gcs_prefix.strip('/')}"
        return self.backup_dir

    @property
    def endpoint_url(self) -> str | None:
        return {"s3": self.s3_endpoint_url, "gcs": self.gcs_endpoint_url}.get(self.store)

    @property
    def landing_dir(self) -> str:
        return f"{self.data_root}/landing"

    @property
    def crm_export_path(self) -> str:
        return f"{self.data_root}/crm/tickets.jsonl"

    @property
    def warehouse_dir(self) -> str:
        return f"{self.data_root}/warehouse"
