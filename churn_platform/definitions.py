"""The one Definitions object: every asset, check, job, schedule, sensor and resource of the platform."""

import dagster as dg

from churn_platform.alerts.sensors import build_failure_alert_sensor
from churn_platform.automation import build_automation_sensor
from churn_platform.backups import assets as backup_assets
from churn_platform.crm import assets as crm_assets
from churn_platform.features import assets as feature_assets
from churn_platform.jobs import ALL_JOBS
from churn_platform.logs import assets as log_assets
from churn_platform.logs.sensors import build_landing_sensor
from churn_platform.ml import assets as ml_assets
from churn_platform.resources import build_resources
from churn_platform.schedules import build_schedules
from churn_platform.settings import PlatformSettings, load_settings

STAGES = [crm_assets, log_assets, feature_assets, ml_assets, backup_assets]
ALL_ASSETS = dg.load_assets_from_modules(STAGES)
ALL_CHECKS = dg.load_asset_checks_from_modules(STAGES)


def build_sensors(settings: PlatformSettings) -> list[dg.SensorDefinition]:
    running = settings.automation_running
    return [
        build_landing_sensor(settings.landing_sensor_interval_seconds, settings.landing_lookback_days,
                             settings.landing_quiet_seconds, running),
        build_automation_sensor(settings.automation_interval_seconds, running),
        build_failure_alert_sensor(settings.dagster_ui_url, settings.alert_crm_tickets, running),
    ]


def build_definitions(settings: PlatformSettings) -> dg.Definitions:
    """The platform for one environment: the resources, intervals and schedule times depend on the
    settings; the asset graph does not."""
    return dg.Definitions(
        assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=ALL_JOBS,
        schedules=build_schedules(settings), sensors=build_sensors(settings),
        resources=build_resources(settings),
        # Steps of a run share one process: each step is one engine call that parallelises inside
        # (DuckDB, Spark, scikit-learn), and a process per step would re-import the code (~3 s) each time.
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_settings())
