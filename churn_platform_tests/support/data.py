"""Data factories for tests and benchmarks: settings for a temporary platform, generated data
written into it, and small synthetic tables."""

import datetime as dt

import numpy as np
import pandas as pd

from churn_platform.resources import build_resources
from churn_platform.settings import PlatformSettings, load_settings
from churn_platform.synthetic.generator import generate
from churn_platform.synthetic.writer import write_generated
from churn_platform_tests.support import servers

START = dt.date(2026, 1, 1)
S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def settings_for(data_dir: str, **environ: str) -> PlatformSettings:
    """Local settings with data under ``data_dir`` (plus any other variables given)."""
    return load_settings({"CHURN_DATA_DIR": data_dir, "CHURN_START_DATE": START.isoformat(), **environ})


def generate_into(settings: PlatformSettings, days: int, customers: int, seed: int = 7) -> dict[str, int]:
    data = generate(START, days=days, customers=customers, seed=seed)
    landing_zone = build_resources(settings)["landing_zone"]
    return write_generated(data, landing_zone, settings.storage.crm_export_path, landing_zone.connection)


def s3_environment(s3_server: servers.S3Server, mlflow_dir: str, versioned: bool = False) -> dict[str, str]:
    """The variables of an `s3` platform on moto's server: new data and backup buckets (the backup
    bucket versioned, with Object Lock), the test credentials and a local MLflow store."""
    return S3_TEST_ENV | {
        "CHURN_ENV": "s3",
        "CHURN_S3_BUCKET": s3_server.new_bucket(versioned=versioned),
        "CHURN_S3_BACKUP_BUCKET": s3_server.new_bucket(versioned=True, object_lock=True),
        "CHURN_S3_ENDPOINT_URL": s3_server.endpoint,
        "CHURN_START_DATE": START.isoformat(),
        "CHURN_MLFLOW_DIR": mlflow_dir,
    }


def s3_settings(
    s3_server: servers.S3Server, monkeypatch, mlflow_dir: str, versioned: bool = False
) -> PlatformSettings:
    for name, value in S3_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    return load_settings(s3_environment(s3_server, mlflow_dir, versioned))


def gcs_settings(gcs_server: servers.GCSServer, mlflow_dir: str) -> PlatformSettings:
    return load_settings(
        {
            "CHURN_ENV": "gcs",
            "CHURN_GCS_BUCKET": gcs_server.new_bucket(),
            "CHURN_GCS_BACKUP_BUCKET": gcs_server.new_bucket(),
            "CHURN_GCS_ENDPOINT_URL": gcs_server.endpoint,
            "CHURN_GCS_TOKEN": "anon",
            "GOOGLE_CLOUD_PROJECT": "test",
            "CHURN_START_DATE": START.isoformat(),
            "CHURN_MLFLOW_DIR": mlflow_dir,
        }
    )


def synthetic_table(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Any feature table: an id, a label, numeric and categorical columns, missing values."""
    rng = np.random.default_rng(seed)
    usage = rng.gamma(2.0, 2.0, rows)
    segment = rng.choice(["smb", "mid", "ent", None], rows)
    risk = -1.5 * usage + np.where(segment == "smb", 1.0, 0.0) + rng.normal(0, 1, rows)
    churned = risk > np.quantile(risk, 0.85)
    mood = np.where(rng.random(rows) < 0.3, np.nan, -risk / 5 + rng.normal(0, 0.2, rows))
    return pd.DataFrame(
        {
            "account": np.arange(rows),
            "usage": usage,
            "mood": mood,
            "segment": pd.Series(segment, dtype="string"),
            "label": churned,
        }
    )


def crm_ticket(day: str, **overrides) -> dict:
    """One exported Zendesk ticket of ``day`` (created 09:00, updated 10:00 UTC), fields overridden."""
    return {
        "id": 1,
        "subject": "Help",
        "description": "How do I export?",
        "status": "open",
        "requester_id": 42,
        "created_at": f"{day}T09:00:00Z",
        "updated_at": f"{day}T10:00:00Z",
        "satisfaction_rating": None,
        "priority": "normal",
        **overrides,
    }
