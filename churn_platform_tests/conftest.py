"""Shared fixtures: generated data in a temporary data directory and a test Dagster instance."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest

from churn_platform.definitions import build_definitions
from churn_platform.resources import build_resources
from churn_platform.settings import PlatformSettings, load_settings
from churn_platform.synthetic.generator import generate
from churn_platform.synthetic.writer import write_generated
from churn_platform_tests import servers

# gcsfs must see this before it is imported: against an emulator it would otherwise wait ~60 s per
# bucket for Google's storage-control API.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

START = dt.date(2026, 1, 1)
S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def settings_for(data_dir: str) -> PlatformSettings:
    return load_settings({"CHURN_DATA_DIR": data_dir, "CHURN_START_DATE": START.isoformat()})


def generate_into(settings: PlatformSettings, days: int, customers: int, seed: int = 7) -> dict[str, int]:
    data = generate(START, days=days, customers=customers, seed=seed)
    resources = build_resources(settings)
    return write_generated(data, resources["landing_zone"], settings.crm_export_path, resources["landing_zone"].connection)


@dataclass
class Platform:
    settings: PlatformSettings
    defs: dg.Definitions
    instance: dg.DagsterInstance


@pytest.fixture
def small_platform(tmp_path) -> Iterator[Platform]:
    """40 days of data for 60 customers: enough for ingestion and features, quick to build."""
    settings = settings_for(str(tmp_path / "data"))
    generate_into(settings, days=40, customers=60, seed=3)
    with dg.instance_for_test() as instance:
        yield Platform(settings, build_definitions(settings), instance)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[servers.S3Server]:
    server = servers.start_s3()
    yield server
    server.server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[servers.GCSServer]:
    server = servers.start_gcs()
    yield server
    server.server.stop()


def s3_settings(s3_server: servers.S3Server, monkeypatch, mlflow_dir: str, versioned: bool = False) -> PlatformSettings:
    for name, value in S3_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    return load_settings({
        "CHURN_ENV": "s3", "CHURN_S3_BUCKET": s3_server.new_bucket(versioned=versioned),
        "CHURN_S3_BACKUP_BUCKET": s3_server.new_bucket(versioned=True), "CHURN_S3_ENDPOINT_URL": s3_server.endpoint,
        "CHURN_START_DATE": START.isoformat(), "AWS_REGION": "us-east-1", "CHURN_MLFLOW_DIR": mlflow_dir,
    })


def gcs_settings(gcs_server: servers.GCSServer, mlflow_dir: str) -> PlatformSettings:
    return load_settings({
        "CHURN_ENV": "gcs", "CHURN_GCS_BUCKET": gcs_server.new_bucket(), "CHURN_GCS_BACKUP_BUCKET": gcs_server.new_bucket(),
        "CHURN_GCS_ENDPOINT_URL": gcs_server.endpoint, "CHURN_GCS_TOKEN": "anon", "GOOGLE_CLOUD_PROJECT": "test",
        "CHURN_START_DATE": START.isoformat(), "CHURN_MLFLOW_DIR": mlflow_dir,
    })
