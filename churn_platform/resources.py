"""The resources of each environment. Environments differ only here, by the settings passed in:
the storage (local, S3 or GCS), the CRM (the bundled simulator or a Zendesk URL), the feature
engine (DuckDB or Spark) and where MLflow keeps its store."""

from typing import Any

from churn_platform.alerts.resources import SlackWebhook
from churn_platform.backups.resources import BackupStore
from churn_platform.contracts.quarantine import QuarantineStore
from churn_platform.crm.resources import CRMResource, ZendeskCRMResource
from churn_platform.crm.simulated import SimulatedCRMResource
from churn_platform.engines.base import FeatureEngine
from churn_platform.engines.duckdb import DuckDBEngine
from churn_platform.engines.spark import SparkEngine
from churn_platform.inference.resources import InferenceLogStore
from churn_platform.logs.landing_zone import LandingZone
from churn_platform.online.resources import OnlineFeatureStore
from churn_platform.settings import PlatformSettings
from churn_platform.storage.connection import ObjectStoreConnection
from churn_platform.storage.credentials import env_secret
from churn_platform.storage.model_registry import MLflowTracking
from churn_platform.storage.parquet_io_manager import ParquetIOManager


def build_connection(settings: PlatformSettings) -> ObjectStoreConnection | None:
    storage, secrets = settings.storage, settings.secrets_set
    if storage.store == "s3":
        return ObjectStoreConnection(
            endpoint_url=storage.endpoint_url,
            region=storage.region,
            access_key_id=env_secret("AWS_ACCESS_KEY_ID", secrets),
            secret_access_key=env_secret("AWS_SECRET_ACCESS_KEY", secrets),
        )
    if storage.store == "gcs":
        token = storage.gcs_token or env_secret("GOOGLE_APPLICATION_CREDENTIALS", secrets)
        return ObjectStoreConnection(
            endpoint_url=storage.endpoint_url, gcs_project=storage.gcs_project, gcs_token=token
        )
    return None


def build_feature_engine(settings: PlatformSettings) -> FeatureEngine:
    if settings.engine.feature_engine == "spark":
        return SparkEngine.from_settings(settings.engine)
    return DuckDBEngine()


def build_crm(settings: PlatformSettings, connection: ObjectStoreConnection | None) -> CRMResource:
    secrets = settings.secrets_set
    if settings.crm.url:
        return ZendeskCRMResource(
            base_url=settings.crm.url,
            email=settings.crm.email,
            api_token=env_secret("ZENDESK_API_TOKEN", secrets),
            oauth_token=env_secret("ZENDESK_OAUTH_TOKEN", secrets),
        )
    return SimulatedCRMResource(export_path=settings.storage.crm_export_path, export_connection=connection)


def build_backup_store(settings: PlatformSettings, connection: ObjectStoreConnection | None) -> BackupStore:
    """The backup location, with its own S3 credentials when they are set, and its protection on
    S3 and GCS (unless CHURN_BACKUP_LOCK_MODE=none): Object Lock or a retention policy, and an
    archive rule."""
    storage, backups, secrets = settings.storage, settings.backups, settings.secrets_set
    on_s3, remote, warehouse = storage.store == "s3", storage.store in ("s3", "gcs"), connection
    if on_s3 and "CHURN_BACKUP_AWS_ACCESS_KEY_ID" in secrets:
        connection = ObjectStoreConnection(
            endpoint_url=storage.endpoint_url,
            region=storage.region,
            access_key_id=env_secret("CHURN_BACKUP_AWS_ACCESS_KEY_ID", secrets),
            secret_access_key=env_secret("CHURN_BACKUP_AWS_SECRET_ACCESS_KEY", secrets),
        )
    return BackupStore(
        base_path=storage.backup_root,
        connection=connection,
        source_connection=warehouse,
        lock_mode=backups.lock_mode if remote and backups.lock_mode != "none" else None,
        lock_days=backups.lock_days,
        archive_after_days=backups.archive_after_days if remote else 0,
        archive_storage_class=backups.archive_storage_class,
    )


def build_resources(settings: PlatformSettings) -> dict[str, Any]:
    """Secrets that are set are passed on as ``dagster.EnvVar`` references, never as values."""
    storage = settings.storage
    connection = build_connection(settings)
    return {
        "io_manager": ParquetIOManager(base_path=storage.warehouse_dir, connection=connection),
        "landing_zone": LandingZone(base_path=storage.landing_dir, connection=connection),
        "inference_log_store": InferenceLogStore(base_path=storage.landing_dir, connection=connection),
        "quarantine": QuarantineStore(base_path=f"{storage.warehouse_dir}/quarantine", connection=connection),
        "crm": build_crm(settings, connection),
        "backup_store": build_backup_store(settings, connection),
        "feature_engine": build_feature_engine(settings),
        "online_store": OnlineFeatureStore(
            url=settings.serving.redis_url,
            password=env_secret("CHURN_REDIS_PASSWORD", settings.secrets_set),
            prefix=settings.serving.key_prefix,
            keep_versions=settings.serving.keep_versions,
        ),
        "slack": SlackWebhook(webhook_url=env_secret("SLACK_WEBHOOK_URL", settings.secrets_set)),
        "mlflow_tracking": MLflowTracking(
            tracking_uri=settings.mlflow.tracking_uri,
            artifact_location=settings.mlflow.artifact_location,
            ui_url=settings.mlflow.ui_url,
            database_url=env_secret("CHURN_MLFLOW_DATABASE_URL", settings.secrets_set),
        ),
    }
