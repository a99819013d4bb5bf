"""The resources of each environment. Environments differ only here, chosen by CHURN_ENV."""

from __future__ import annotations

from typing import Any

from churn_platform.backups.resources import BackupStore
from churn_platform.crm.resources import BundledCRMResource
from churn_platform.logs.landing_zone import LandingZone
from churn_platform.settings import PlatformSettings
from churn_platform.storage.artifact_io_manager import ArtifactIOManager, ArtifactStore
from churn_platform.storage.parquet_io_manager import ParquetIOManager

SUPPORTED_ENVIRONMENTS = ("local",)


def build_resources(settings: PlatformSettings) -> dict[str, Any]:
    if settings.env != "local":
        raise ValueError(
            f"CHURN_ENV={settings.env!r} is not a known environment; choose one of {list(SUPPORTED_ENVIRONMENTS)}"
        )
    artifact_store = ArtifactStore(base_path=settings.artifacts_dir)
    return {
        "io_manager": ParquetIOManager(base_path=settings.warehouse_dir),
        "model_io_manager": ArtifactIOManager(store=artifact_store),
        "artifact_store": artifact_store,
        "landing_zone": LandingZone(base_path=settings.landing_dir),
        "crm": BundledCRMResource(export_path=settings.crm_export_path),
        "backup_store": BackupStore(base_path=settings.backup_dir),
    }
