"""`churn-platform generate` (and the demo's data): land a generated dataset, or its next day, without ever mixing two
datasets in one landing zone (see ``dataset.py``)."""

from __future__ import annotations

import datetime as dt

from churn_platform.settings import PlatformSettings
from churn_platform.synthetic.dataset import (
    DatasetConflict,
    DatasetSpec,
    check_writable,
    default_window,
    new_spec,
    read_spec,
    remove_landed,
    remove_spec,
    write_spec,
)
from churn_platform.synthetic.generator import iter_days
from churn_platform.synthetic.writer import write_generated


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _write(settings: PlatformSettings, spec: DatasetSpec, only_days: set[str] | None) -> dict:
    from churn_platform.resources import build_resources

    landing_zone = build_resources(settings)["landing_zone"]
    # Streamed: generated and written a day at a time, in the memory of one day.
    days = iter_days(spec.start, spec.days, spec.customers, spec.seed, horizon_days=spec.horizon_days)
    stats = write_generated(
        days, landing_zone, settings.storage.crm_export_path, landing_zone.connection, only_days=only_days
    )
    write_spec(landing_zone, spec)
    return {**stats, "first_day": spec.first_day, "last_day": spec.last_day}


def plan_dataset(
    days: int, customers: int, seed: int, start: dt.date | None, origin: str = "generate"
) -> DatasetSpec:
    return new_spec(seed, customers, start or default_window(days, utc_today()), days, origin)


def land_dataset(
    settings: PlatformSettings,
    days: int,
    customers: int,
    seed: int,
    start: dt.date | None,
    force: bool = False,
    origin: str = "generate",
) -> dict:
    """Land ``days`` days (ending the day before yesterday unless ``start`` is given). The same
    dataset again (possibly already grown by --append-day) is a no-op; another one is refused
    unless ``force``, which forgets the old one, removes its days, then writes the new one."""
    from churn_platform.resources import build_resources

    landing_zone = build_resources(settings)["landing_zone"]
    spec = plan_dataset(days, customers, seed, start, origin)
    held = check_writable(landing_zone, spec, force)  # refuses before anything is written
    if held is not None and held.same_dataset(spec) and held.last_day >= spec.last_day:
        # Every day asked for is landed, byte for byte what it would be written as.
        return {
            "unchanged": "true",
            "days": spec.days,
            "first_day": spec.first_day,
            "landed_up_to": held.last_day,
        }
    if force:
        remove_spec(landing_zone)  # first: a failure below leaves no manifest of deleted files
        remove_landed(landing_zone)
    return _write(settings, spec, None)


def append_next_day(settings: PlatformSettings, today: dt.date | None = None) -> dict:
    """Land the next day of the dataset the landing zone holds (its files, and the tickets as they
    stand at the end of that day)."""
    from churn_platform.resources import build_resources

    landing_zone = build_resources(settings)["landing_zone"]
    held = read_spec(landing_zone)
    if held is None:
        raise DatasetConflict(
            "the landing zone holds no generated dataset to extend: run `churn-platform generate` first"
        )
    spec = held.next_day(today or utc_today())
    return _write(settings, spec, {spec.last_day})
