"""The one Definitions object: every asset, check, job, schedule, sensor and resource of the platform.

``build_definitions(settings)`` builds the platform from the settings passed in; only the module-
level ``defs`` (what `dagster dev`, `dg` and the code server load) reads the environment.
"""

import warnings

import dagster as dg

from churn_platform.alerts.check_alerts import build_check_failure_sensor
from churn_platform.alerts.freshness import build_partition_freshness_sensor
from churn_platform.alerts.sensors import (
    build_alert_outbox_sensor,
    build_failure_alert_sensor,
    build_retraining_notice_sensor,
)
from churn_platform.backups.assets import build_backup_assets
from churn_platform.backups.automation import build_metadata_backup_schedule, build_metadata_backup_sensor
from churn_platform.crm.assets import build_crm_assets, build_crm_checks
from churn_platform.features.assets import build_feature_assets, build_feature_checks
from churn_platform.inference.assets import build_inference_assets, build_inference_checks
from churn_platform.logs.assets import build_log_assets
from churn_platform.logs.sensors import build_landing_sensor
from churn_platform.ml.assets import build_ml_assets
from churn_platform.ml.checks import ML_CHECKS
from churn_platform.ml.sensors import build_drift_retraining_sensor
from churn_platform.observability import build_push_hooks
from churn_platform.online.assets import build_online_assets
from churn_platform.orchestration.automation import build_automation_sensor
from churn_platform.orchestration.freshness import with_freshness
from churn_platform.orchestration.governance import with_governance
from churn_platform.orchestration.jobs import ALL_JOBS
from churn_platform.orchestration.partitions import PlatformPartitions, build_partitions
from churn_platform.orchestration.schedules import build_schedules
from churn_platform.resources import build_resources
from churn_platform.settings import (
    BackupSettings,
    ContractSettings,
    CRMSettings,
    PlatformSettings,
    PromotionSettings,
    load_settings,
)

# Contract checks are partitioned (a result per partition in the UI), which Dagster 1.13 marks as a
# preview; the warning would repeat on every load of the definitions.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)


def build_assets(
    partitions: PlatformPartitions,
    promotion: PromotionSettings | None = None,
    backups: BackupSettings | None = None,
    contracts: ContractSettings | None = None,
    crm: CRMSettings | None = None,
) -> list[dg.AssetsDefinition]:
    """Every stage's assets, in lineage order (``promotion``: the gate's business costs;
    ``backups``: the restore drill's recovery objectives; ``contracts``: quarantine limits and
    ranges; ``crm``: ticket clock skew and quarantine limit)."""
    return [
        *build_crm_assets(partitions, crm),
        *build_log_assets(partitions, contracts),
        *build_feature_assets(partitions),
        *build_ml_assets(partitions, promotion),
        *build_online_assets(partitions),
        *build_inference_assets(partitions),
        *build_backup_assets(partitions, backups),
    ]


def build_sensors(settings: PlatformSettings, partitions: PlatformPartitions) -> list[dg.SensorDefinition]:
    automation = settings.automation
    return [
        build_landing_sensor(automation, partitions.daily),
        build_automation_sensor(automation.automation_interval_seconds, automation.running),
        build_drift_retraining_sensor(automation),
        build_failure_alert_sensor(settings.alerts, automation.running),
        build_alert_outbox_sensor(settings.alerts, automation.running),
        build_retraining_notice_sensor(settings.alerts, automation.running),
        build_partition_freshness_sensor(settings.freshness, settings.alerts, automation.running),
        build_check_failure_sensor(settings.alerts, automation.running),
        build_metadata_backup_sensor(automation),
    ]


def build_definitions(settings: PlatformSettings) -> dg.Definitions:
    """The platform for one environment: partitions, windows, resources, intervals and schedule
    times come from the settings; the shape of the asset graph does not."""
    partitions = build_partitions(settings)
    assets = build_assets(partitions, settings.promotion, settings.backups, settings.contracts, settings.crm)
    # With a Pushgateway configured, every asset step pushes its own metrics from inside its run.
    push_hooks = build_push_hooks(settings.observability)
    if push_hooks:
        assets = [asset.with_hooks(push_hooks) for asset in assets]
    # Partition deadlines (freshness SLAs): a FreshnessPolicy and the deadline in each asset's
    # metadata, then the `partitions_on_time` checks, passed with the assets (jobs.py leaves them out).
    assets = with_freshness(assets, settings.freshness)
    # Owners, tags (domain, storage, engine, cost centre) and code versions: the catalog's answers.
    assets = with_governance(assets, settings.engine.feature_engine)
    return dg.Definitions(
        assets=assets,
        asset_checks=[
            *build_crm_checks(partitions),
            *build_feature_checks(partitions),
            *build_inference_checks(partitions),
            *ML_CHECKS,
        ],
        jobs=ALL_JOBS,
        schedules=[
            *build_schedules(settings.automation, partitions),
            build_metadata_backup_schedule(settings.automation),
        ],
        sensors=build_sensors(settings, partitions),
        resources=build_resources(settings),
        # Steps of a run share one process: each step is one engine call that parallelises inside
        # (DuckDB, Spark, scikit-learn), and a process per step would re-import the code (~3 s) each time.
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_settings())
