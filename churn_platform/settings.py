"""Platform configuration, read from the environment once at definition load time.

Everything that differs between environments (paths, buckets, endpoints, dates) comes from here;
code never changes between environments. Secrets are not read here: resources reference them by
name with dagster.EnvVar.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ("local", "s3", "gcs")

# Labels look this many days past the as-of date for a cancellation.
LABEL_HORIZON_DAYS = 30
# Rolling customer features look back over this many daily-activity partitions.
FEATURE_WINDOW_DAYS = 30


class SettingsError(ValueError):
    """A missing or malformed setting; the message names the variable."""


@dataclass(frozen=True)
class PlatformSettings:
    env: str
    data_root: str  # local directory, s3://bucket/prefix or gs://bucket/prefix
    backup_root: str  # a separate location (bucket) for backups
    start_date: str
    training_window_days: int
    endpoint_url: str | None = None  # custom S3/GCS endpoint (MinIO, moto, an emulator)
    region: str | None = None
    gcs_project: str | None = None
    gcs_token: str | None = None  # "anon" for emulators; otherwise credentials come from EnvVar
    crm_url: str | None = None  # the Zendesk API; unset: a local simulator over the CRM export
    crm_email: str | None = None
    mlflow_tracking_uri: str = ""  # sqlite:///... locally, a tracking server's URL in production
    mlflow_artifact_location: str | None = None
    mlflow_ui_url: str | None = None
    feature_engine: str = "duckdb"  # or "spark"
    spark_master: str = "local[*]"
    spark_shuffle_partitions: int = 8
    spark_driver_memory: str = "2g"
    spark_packages: str = ""  # Maven coordinates for spark.jars.packages, e.g. the hadoop-aws connector
    # Automation (sensors, schedules, alerts).
    landing_sensor_interval_seconds: int = 5  # the sensor daemon evaluates at most every 5 s anyway
    landing_lookback_days: int = 7  # late files for dates this far back re-trigger their partition
    landing_quiet_seconds: int = 2  # a day's files must be this old before its run is requested
    automation_interval_seconds: int = 30
    schedule_timezone: str = "UTC"
    ingestion_cron: str = "0 1 * * *"  # after the UTC day has closed
    retraining_cron: str = "0 3 * * 1"  # weekly, Monday 03:00
    automation_running: bool = False  # sensors and schedules start RUNNING (production) or STOPPED
    dagster_ui_url: str = "http://127.0.0.1:3000"
    alert_crm_tickets: bool = False  # also open a CRM ticket for each failed run

    @property
    def landing_dir(self) -> str:
        return f"{self.data_root}/landing"

    @property
    def crm_export_path(self) -> str:
        return f"{self.data_root}/crm/tickets.jsonl"

    @property
    def warehouse_dir(self) -> str:
        return f"{self.data_root}/warehouse"

    @property
    def artifacts_dir(self) -> str:
        return f"{self.data_root}/artifacts"

    @property
    def backup_dir(self) -> str:
        return self.backup_root


def _required(env: Mapping[str, str], name: str, why: str) -> str:
    value = env.get(name)
    if not value:
        raise SettingsError(f"{name} must be set {why}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "0", "1", "true", "false", "yes", "no"):
        raise SettingsError(f"{name}={raw!r} is not a boolean (1/0, true/false)")
    return raw in ("1", "true", "yes")


def _automation(env: Mapping[str, str]) -> dict:
    timezone = env.get("CHURN_SCHEDULE_TIMEZONE", "UTC")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"CHURN_SCHEDULE_TIMEZONE={timezone!r} is not an IANA time zone") from None
    crons = {}
    for name, default in (("CHURN_INGESTION_CRON", "0 1 * * *"), ("CHURN_RETRAINING_CRON", "0 3 * * 1")):
        crons[name] = env.get(name, default)
        if len(crons[name].split()) != 5:
            raise SettingsError(f"{name}={crons[name]!r} is not a five-field cron expression")
    return {
        "landing_sensor_interval_seconds": _int(env, "CHURN_LANDING_SENSOR_INTERVAL", 5, minimum=1),
        "landing_lookback_days": _int(env, "CHURN_LANDING_LOOKBACK_DAYS", 7, minimum=1),
        "landing_quiet_seconds": _int(env, "CHURN_LANDING_QUIET_SECONDS", 2),
        "automation_interval_seconds": _int(env, "CHURN_AUTOMATION_INTERVAL", 30, minimum=1),
        "schedule_timezone": timezone,
        "ingestion_cron": crons["CHURN_INGESTION_CRON"],
        "retraining_cron": crons["CHURN_RETRAINING_CRON"],
        "automation_running": _flag(env, "CHURN_AUTOMATION_RUNNING"),
        "dagster_ui_url": env.get("CHURN_DAGSTER_UI_URL", "http://127.0.0.1:3000").rstrip("/"),
        "alert_crm_tickets": _flag(env, "CHURN_ALERT_CRM_TICKETS"),
    }


def load_settings(environ: Mapping[str, str] | None = None) -> PlatformSettings:
    env = os.environ if environ is None else environ
    start_date = env.get("CHURN_START_DATE", "2026-01-01")
    try:
        dt.date.fromisoformat(start_date)  # fail at load time on a malformed date, not mid-run
    except ValueError as exc:
        raise SettingsError(f"CHURN_START_DATE={start_date!r} is not a YYYY-MM-DD date") from exc
    window = int(env.get("CHURN_TRAINING_WINDOW_DAYS", "56"))
    if window < 1:
        raise SettingsError(f"CHURN_TRAINING_WINDOW_DAYS must be >= 1, got {window}")
    name = env.get("CHURN_ENV", "local")
    data_dir = env.get("CHURN_DATA_DIR", str(REPO_ROOT / "data"))
    mlflow_dir = env.get("CHURN_MLFLOW_DIR", f"{data_dir}/mlflow")
    tracking_uri = env.get("CHURN_MLFLOW_TRACKING_URI") or f"sqlite:///{os.path.abspath(mlflow_dir)}/mlflow.db"
    common = {
        "env": name, "start_date": start_date, "training_window_days": window,
        "crm_url": env.get("CHURN_CRM_URL") or None, "crm_email": env.get("CHURN_CRM_EMAIL") or None,
        "mlflow_tracking_uri": tracking_uri,
        # A tracking server stores artifacts itself; a local SQLite store keeps them beside it.
        "mlflow_artifact_location": env.get("CHURN_MLFLOW_ARTIFACT_LOCATION")
        or (os.path.abspath(f"{mlflow_dir}/artifacts") if tracking_uri.startswith("sqlite:") else None),
        "mlflow_ui_url": env.get("CHURN_MLFLOW_UI_URL", "http://127.0.0.1:5000"),
        "feature_engine": env.get("CHURN_FEATURE_ENGINE", "duckdb"),
        "spark_master": env.get("CHURN_SPARK_MASTER", "local[*]"),
        "spark_shuffle_partitions": int(env.get("CHURN_SPARK_SHUFFLE_PARTITIONS", "8")),
        "spark_driver_memory": env.get("CHURN_SPARK_DRIVER_MEMORY", "2g"),
        "spark_packages": env.get("CHURN_SPARK_PACKAGES", ""),
        **_automation(env),
    }
    if common["feature_engine"] not in ("duckdb", "spark"):
        raise SettingsError(f"CHURN_FEATURE_ENGINE={common['feature_engine']!r} is not 'duckdb' or 'spark'")

    if name == "local":
        return PlatformSettings(data_root=data_dir, backup_root=env.get("CHURN_BACKUP_DIR", f"{data_dir}/backups"), **common)
    if name == "s3":
        why = "when CHURN_ENV=s3"
        bucket = _required(env, "CHURN_S3_BUCKET", why)
        backup_bucket = _required(env, "CHURN_S3_BACKUP_BUCKET", why + " (backups live in their own bucket)")
        prefix = env.get("CHURN_S3_PREFIX", "churn-platform").strip("/")
        return PlatformSettings(
            data_root=f"s3://{bucket}/{prefix}", backup_root=f"s3://{backup_bucket}/{prefix}",
            endpoint_url=env.get("CHURN_S3_ENDPOINT_URL") or None, region=env.get("AWS_REGION") or None, **common,
        )
    if name == "gcs":
        why = "when CHURN_ENV=gcs"
        bucket = _required(env, "CHURN_GCS_BUCKET", why)
        backup_bucket = _required(env, "CHURN_GCS_BACKUP_BUCKET", why + " (backups live in their own bucket)")
        prefix = env.get("CHURN_GCS_PREFIX", "churn-platform").strip("/")
        return PlatformSettings(
            data_root=f"gs://{bucket}/{prefix}", backup_root=f"gs://{backup_bucket}/{prefix}",
            endpoint_url=env.get("CHURN_GCS_ENDPOINT_URL") or None, gcs_project=env.get("GOOGLE_CLOUD_PROJECT") or None,
            gcs_token=env.get("CHURN_GCS_TOKEN") or None, **common,
        )
    raise SettingsError(f"CHURN_ENV={name!r} is not a known environment; choose one of {list(ENVIRONMENTS)}")
