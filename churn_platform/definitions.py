"""The one Definitions object: every asset, job and resource of the platform."""

from __future__ import annotations

import dagster as dg

from churn_platform.backups import assets as backup_assets
from churn_platform.crm import assets as crm_assets
from churn_platform.features import assets as feature_assets
from churn_platform.jobs import ALL_JOBS
from churn_platform.logs import assets as log_assets
from churn_platform.ml import assets as ml_assets
from churn_platform.resources import build_resources
from churn_platform.settings import load_settings

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([crm_assets, log_assets, feature_assets, ml_assets, backup_assets]),
    jobs=ALL_JOBS,
    resources=build_resources(load_settings()),
)
