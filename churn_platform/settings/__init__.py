"""Configuration: the environment is read here, once, and the result passed down.

Each concern has its section (storage, backup protection, pipeline calendar, data contracts, CRM, MLflow, promotion costs, feature
engine, automation, alerts, freshness SLAs, serving) declared with ``setting()``: variable, default, validation and meaning written once, and
rendered into the README's configuration tables by ``docs.py``. Secrets are never read here:
resources reference them by name with ``dagster.EnvVar``.

May import: the standard library only.
"""

from churn_platform.settings.alerts import AlertSettings
from churn_platform.settings.automation import AutomationSettings
from churn_platform.settings.backups import BackupSettings
from churn_platform.settings.contracts import ContractSettings
from churn_platform.settings.crm import CRMSettings
from churn_platform.settings.declare import SettingsError
from churn_platform.settings.engine import EngineSettings
from churn_platform.settings.freshness import FreshnessSettings
from churn_platform.settings.mlflow import MLflowSettings
from churn_platform.settings.pipeline import PipelineSettings
from churn_platform.settings.platform import PlatformSettings, load_settings
from churn_platform.settings.promotion import PromotionSettings
from churn_platform.settings.serving import ServingSettings
from churn_platform.settings.storage import ENVIRONMENTS, StorageSettings

__all__ = [
    "ENVIRONMENTS",
    "AlertSettings",
    "AutomationSettings",
    "BackupSettings",
    "CRMSettings",
    "ContractSettings",
    "EngineSettings",
    "FreshnessSettings",
    "MLflowSettings",
    "PipelineSettings",
    "PlatformSettings",
    "PromotionSettings",
    "ServingSettings",
    "SettingsError",
    "StorageSettings",
    "load_settings",
]
