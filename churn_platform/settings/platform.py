"""The platform's settings: one section per concern, read from the environment in one call."""

import os
from collections.abc import Mapping
from dataclasses import dataclass

from churn_platform.settings.alerts import AlertSettings
from churn_platform.settings.automation import AutomationSettings
from churn_platform.settings.backups import BackupSettings
from churn_platform.settings.crm import CRMSettings
from churn_platform.settings.declare import read_section
from churn_platform.settings.engine import EngineSettings
from churn_platform.settings.mlflow import MLflowSettings
from churn_platform.settings.pipeline import PipelineSettings
from churn_platform.settings.promotion import PromotionSettings
from churn_platform.settings.storage import StorageSettings

# The sections in the order the README documents them.
SECTIONS = {
    "storage": StorageSettings,
    "backups": BackupSettings,
    "pipeline": PipelineSettings,
    "crm": CRMSettings,
    "mlflow": MLflowSettings,
    "promotion": PromotionSettings,
    "engine": EngineSettings,
    "automation": AutomationSettings,
    "alerts": AlertSettings,
}


@dataclass(frozen=True)
class PlatformSettings:
    storage: StorageSettings
    backups: BackupSettings
    pipeline: PipelineSettings
    crm: CRMSettings
    mlflow: MLflowSettings
    promotion: PromotionSettings
    engine: EngineSettings
    automation: AutomationSettings
    alerts: AlertSettings
    # Which of the sections' declared secrets are set (names only: values are never read here;
    # resources pass them on as dagster.EnvVar references, resolved at run time).
    secrets_set: frozenset[str] = frozenset()


def build_settings(
    sections: Mapping[str, object], secrets_set: frozenset[str] = frozenset()
) -> PlatformSettings:
    local_data_dir = sections["storage"].data_dir
    return PlatformSettings(
        **{**sections, "mlflow": sections["mlflow"].resolved(local_data_dir)}, secrets_set=secrets_set
    )


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
