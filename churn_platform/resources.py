"""The resources of each environment. Environments differ only here, chosen by CHURN_ENV."""

import os
from collections.abc import Mapping
from typing import Any, Optional

from dagster_pyspark import LazyPySparkResource

from churn_platform.alerts.resources import SlackWebhook
from churn_platform.backups.resources import BackupStore
from churn_platform.crm.resources import ZendeskCRMResource
from churn_platform.logs.landing_zone import LandingZone
from churn_platform.ml.tracking import MLflowTracking
from churn_platform.secrets import env_secret
from churn_platform.settings import PlatformSettings
from churn_platform.sql_engine import DuckDBEngine, FeatureEngine, SparkEngine, spark_config
from churn_platform.storage.artifact_io_manager import ArtifactIOManager, ArtifactStore
from churn_platform.storage.connection import ObjectStoreConnection
from churn_platform.storage.parquet_io_manager import ParquetIOManager


def build_connection(settings: PlatformSettings, environ: Mapping[str, str] | None = None) -> Optional[ObjectStoreConnection]:
    environ = os.environ if environ is None else environ
    if settings.env == "s3":
        return ObjectStoreConnection(
            endpoint_url=settings.endpoint_url, region=settings.region,
            access_key_id=env_secret("AWS_ACCESS_KEY_ID", environ),
            secret_access_key=env_secret("AWS_SECRET_ACCESS_KEY", environ),
        )
    if settings.env == "gcs":
        token = settings.gcs_token or env_secret("GOOGLE_APPLICATION_CREDENTIALS", environ)
        return ObjectStoreConnection(endpoint_url=settings.endpoint_url, gcs_project=settings.gcs_project, gcs_token=token)
    return None


def build_feature_engine(settings: PlatformSettings) -> FeatureEngine:
    if settings.feature_engine == "spark":
        config = spark_config(settings.spark_master, settings.spark_shuffle_partitions, settings.spark_driver_memory,
                              settings.spark_packages)
        return SparkEngine(pyspark=LazyPySparkResource(spark_config=config))
    return DuckDBEngine()


def build_resources(settings: PlatformSettings, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    connection = build_connection(settings, environ)
    artifact_store = ArtifactStore(base_path=settings.artifacts_dir, connection=connection)
    return {
        "io_manager": ParquetIOManager(base_path=settings.warehouse_dir, connection=connection),
        "model_io_manager": ArtifactIOManager(store=artifact_store),
        "artifact_store": artifact_store,
        "landing_zone": LandingZone(base_path=settings.landing_dir, connection=connection),
        "crm": ZendeskCRMResource(
            base_url=settings.crm_url, email=settings.crm_email,
            api_token=env_secret("ZENDESK_API_TOKEN", environ), oauth_token=env_secret("ZENDESK_OAUTH_TOKEN", environ),
            export_path=None if settings.crm_url else settings.crm_export_path, export_connection=connection,
        ),
        "backup_store": BackupStore(base_path=settings.backup_dir, connection=connection),
        "feature_engine": build_feature_engine(settings),
        "slack": SlackWebhook(webhook_url=env_secret("SLACK_WEBHOOK_URL", environ)),
        "mlflow_tracking": MLflowTracking(
            tracking_uri=settings.mlflow_tracking_uri, artifact_location=settings.mlflow_artifact_location,
            ui_url=settings.mlflow_ui_url,
        ),
    }
