"""The one Definitions object: every asset, job and resource of the platform."""

import dagster as dg

from churn_platform.backups import assets as backup_assets
from churn_platform.crm import assets as crm_assets
from churn_platform.features import assets as feature_assets
from churn_platform.jobs import ALL_JOBS
from churn_platform.logs import assets as log_assets
from churn_platform.ml import assets as ml_assets
from churn_platform.resources import build_resources
from churn_platform.settings import PlatformSettings, load_settings

STAGES = [crm_assets, log_assets, feature_assets, ml_assets, backup_assets]
ALL_ASSETS = dg.load_assets_from_modules(STAGES)
ALL_CHECKS = dg.load_asset_checks_from_modules(STAGES)


def build_definitions(settings: PlatformSettings) -> dg.Definitions:
    """The platform for one environment; only the resources depend on the settings."""
    return dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=ALL_JOBS, resources=build_resources(settings))


defs = build_definitions(load_settings())
