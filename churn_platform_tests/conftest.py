"""Shared fixtures: generated data in a temporary data directory and a test Dagster instance."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest

from churn_platform.definitions import build_definitions
from churn_platform.settings import PlatformSettings
from churn_platform_tests.support import servers
from churn_platform_tests.support.data import generate_into, settings_for
from churn_platform_tests.support.leaks import LeakScan

# gcsfs must see this before it is imported: against an emulator it would otherwise wait ~60 s per
# bucket for Google's storage-control API.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


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


@pytest.fixture
def leak_scan(caplog, capfd) -> LeakScan:
    """Captures logs at DEBUG from here on; ``leak_scan.assert_absent(secrets, error=..., instance=...,
    run_id=...)`` then checks the exception, the run's event log, the logs and stdout/stderr."""
    return LeakScan(caplog, capfd)
