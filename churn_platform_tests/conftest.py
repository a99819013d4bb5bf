"""Shared fixtures: generated data in a temporary data directory and a test Dagster instance."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest

from churn_platform.definitions import build_definitions
from churn_platform.logs.landing_zone import LandingZone
from churn_platform.settings import PlatformSettings, load_settings
from churn_platform.synthetic.generator import generate
from churn_platform.synthetic.writer import write_generated

START = dt.date(2026, 1, 1)


def settings_for(data_dir: str) -> PlatformSettings:
    return load_settings({"CHURN_DATA_DIR": data_dir, "CHURN_START_DATE": START.isoformat()})


def generate_into(settings: PlatformSettings, days: int, customers: int, seed: int = 7) -> dict[str, int]:
    data = generate(START, days=days, customers=customers, seed=seed)
    return write_generated(data, LandingZone(base_path=settings.landing_dir), settings.crm_export_path)


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
