"""When runs start by themselves: the landing sensor, the automation sensor and the schedules."""

from dataclasses import dataclass

from churn_platform.settings.declare import setting


@dataclass(frozen=True)
class AutomationSettings:
    running: bool = setting(
        "CHURN_AUTOMATION_RUNNING",
        False,
        "`1`: sensors and schedules start RUNNING (production); otherwise STOPPED",
    )
    landing_sensor_interval_seconds: int = setting(
        "CHURN_LANDING_SENSOR_INTERVAL", 5, "seconds between landing-sensor ticks", minimum=1
    )
    landing_lookback_days: int = setting(
        "CHURN_LANDING_LOOKBACK_DAYS",
        7,
        "late files for days this far back re-trigger their partition",
        minimum=1,
    )
    landing_quiet_seconds: int = setting(
        "CHURN_LANDING_QUIET_SECONDS",
        2,
        "a day's files must be this old before its run is requested",
        minimum=0,
    )
    automation_interval_seconds: int = setting(
        "CHURN_AUTOMATION_INTERVAL", 30, "seconds between evaluations of the automation conditions", minimum=1
    )
    schedule_timezone: str = setting(
        "CHURN_SCHEDULE_TIMEZONE", "UTC", "time zone of the schedules' cron", kind="timezone"
    )
    ingestion_cron: str = setting(
        "CHURN_INGESTION_CRON", "0 1 * * *", "daily ingestion of the newest closed day", kind="cron"
    )
    retraining_cron: str = setting(
        "CHURN_RETRAINING_CRON", "0 3 * * 1", "weekly retraining on the newest labelled day", kind="cron"
    )
    metadata_backup_cron: str = setting(
        "CHURN_METADATA_BACKUP_CRON",
        "30 4 * * *",
        "daily backup of the Dagster instance and the MLflow store (also after each retraining run)",
        kind="cron",
    )
    drift_retraining_days: int = setting(
        "CHURN_DRIFT_RETRAINING_DAYS",
        3,
        "retrain when feature drift is above its threshold on this many consecutive days (`0`: never)",
        minimum=0,
    )
