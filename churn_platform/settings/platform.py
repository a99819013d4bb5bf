"""The platform's settings: one section per concern, read from the environment in one call."""

import os
from collections.abc import Mapping
from dataclasses import dataclass

from churn_platform.settings.alerts import AlertSettings
from churn_platform.settings.automation import AutomationSettings
from churn_platform.settings.backups import BackupSettings
from churn_platform.settings.contracts import ContractSettings
from churn_platform.settings.crm import CRMSettings
from churn_platform.settings.declare import SettingsError, read_section
from churn_platform.settings.engine import EngineSettings
from churn_platform.settings.freshness import FreshnessSettings
from churn_platform.settings.mlflow import MLflowSettings
from churn_platform.settings.observability import ObservabilitySettings
from churn_platform.settings.pipeline import PipelineSettings
from churn_platform.settings.promotion import PromotionSettings
from churn_platform.settings.serving import ServingSettings
from churn_platform.settings.storage import StorageSettings

# The sections in the order the README documents them.
SECTIONS = {
    "storage": StorageSettings,
    "backups": BackupSettings,
    "pipeline": PipelineSettings,
    "contracts": ContractSettings,
    "crm": CRMSettings,
    "mlflow": MLflowSettings,
    "promotion": PromotionSettings,
    "engine": EngineSettings,
    "automation": AutomationSettings,
    "alerts": AlertSettings,
    "freshness": FreshnessSettings,
    "serving": ServingSettings,
    "observability": ObservabilitySettings,
}


@dataclass(frozen=True)
class PlatformSettings:
    storage: StorageSettings
    backups: BackupSettings
    pipeline: PipelineSettings
    contracts: ContractSettings
    crm: CRMSettings
    mlflow: MLflowSettings
    promotion: PromotionSettings
    engine: EngineSettings
    automation: AutomationSettings
    alerts: AlertSettings
    freshness: FreshnessSettings
    serving: ServingSettings
    observability: ObservabilitySettings
    # Which of the sections' declared secrets are set (names only: values are never read here;
    # resources pass them on as dagster.EnvVar references, resolved at run time).
    secrets_set: frozenset[str] = frozenset()


def build_settings(
    sections: Mapping[str, object], secrets_set: frozenset[str] = frozenset()
) -> PlatformSettings:
    local_data_dir = sections["storage"].data_dir
    settings = PlatformSettings(
        **{**sections, "mlflow": sections["mlflow"].resolved(local_data_dir)}, secrets_set=secrets_set
    )
    if settings.storage.production:
        check_production(settings)
    return settings


# A registry every pod and the scoring path share, and that backups/platform_metadata can dump:
# an MLflow server (its database in CHURN_MLFLOW_DATABASE_URL), or a PostgreSQL store used directly.
SERVER_SCHEMES = ("http", "https")
DATABASE_SCHEMES = ("postgresql",)


def check_production(settings: PlatformSettings) -> None:
    """What the production profiles (CHURN_ENV=production-s3/-gcs) require beyond their store; the
    error names each setting to change (and never prints a value that may hold a password)."""
    env = settings.storage.env
    problems = []
    scheme = (settings.mlflow.tracking_uri or "").split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in SERVER_SCHEMES + DATABASE_SCHEMES:
        problems.append(
            f"CHURN_MLFLOW_TRACKING_URI is a {scheme or 'path'} store: set it to the MLflow server (http://...) "
            "or its PostgreSQL database"
        )
    if scheme in SERVER_SCHEMES and "CHURN_MLFLOW_DATABASE_URL" not in settings.secrets_set:
        problems.append(
            "CHURN_MLFLOW_DATABASE_URL must be set (the MLflow server's database, for metadata backups)"
        )
    artifacts = settings.mlflow.artifact_location or ""
    if scheme in DATABASE_SCHEMES and not artifacts.startswith(("s3://", "gs://")):
        problems.append(
            "CHURN_MLFLOW_ARTIFACT_LOCATION must be s3://... or gs://... with a database tracking store "
            "(otherwise model files land on the pod's own disk)"
        )
    if settings.engine.feature_engine != "spark":
        problems.append("CHURN_FEATURE_ENGINE must be `spark`")
    if settings.engine.spark_master.startswith("local"):
        problems.append(
            "CHURN_SPARK_MASTER must name a cluster (spark://host:7077, k8s://..., yarn), not local[...]"
        )
    if "SLACK_WEBHOOK_URL" not in settings.secrets_set:
        problems.append("SLACK_WEBHOOK_URL must be set (failure alerts)")
    if not settings.crm.url:
        problems.append("CHURN_CRM_URL must be set (the Zendesk account; the simulator is for development)")
    if problems:
        raise SettingsError(f"CHURN_ENV={env} is not a production configuration: " + "; ".join(problems))


def declared_secrets() -> list[str]:
    return [name for section in SECTIONS.values() for name in getattr(section, "SECRETS", {})]


def load_settings(environ: Mapping[str, str] | None = None) -> PlatformSettings:
    """The settings from ``environ`` (default: the process environment). The only place the
    platform reads its environment; everything else is built from what this returns."""
    environ = os.environ if environ is None else environ
    return build_settings(
        {name: read_section(section, environ) for name, section in SECTIONS.items()},
        frozenset(name for name in declared_secrets() if environ.get(name)),
    )
