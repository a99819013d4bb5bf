"""Which generated dataset a landing zone holds, so that `generate` never mixes two datasets.

`generate` writes ``generated_dataset.json`` at the landing zone's root: the seed, the number of
customers, the first day, the horizon the customers' lives were drawn for and the last day landed.
Writing another dataset into it is refused unless the caller replaces it (``--force``); the same
dataset may be written again (nothing changes) or grown by a day (``--append-day``), because the
first days of a horizon do not depend on how many of them are landed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, replace

from churn_platform.logs.landing_zone import LOGS_PREFIX, LandingZone
from churn_platform.storage.connection import open_path
from churn_platform.storage.files import uri_of, write_bytes_atomic

MANIFEST_NAME = "generated_dataset.json"
# Days a generated dataset can grow by with --append-day.
APPENDABLE_DAYS = 30


class DatasetConflict(ValueError):
    """The landing zone holds other data than what was asked for; the message says how to proceed.
    ``held`` is the dataset it holds (None: files `generate` did not write, or nothing)."""

    def __init__(self, message: str, held: DatasetSpec | None = None) -> None:
        super().__init__(message)
        self.held = held


@dataclass(frozen=True)
class DatasetSpec:
    seed: int
    customers: int
    first_day: str
    last_day: str
    horizon_days: int
    origin: str = "generate"  # "demo" for the demo's own dataset, which the demo may replace

    @property
    def days(self) -> int:
        return (dt.date.fromisoformat(self.last_day) - dt.date.fromisoformat(self.first_day)).days + 1

    @property
    def start(self) -> dt.date:
        return dt.date.fromisoformat(self.first_day)

    def same_dataset(self, other: DatasetSpec) -> bool:
        """Whether both describe one dataset (possibly landed to different days)."""
        return (self.seed, self.customers, self.first_day, self.horizon_days) == (
            other.seed,
            other.customers,
            other.first_day,
            other.horizon_days,
        )

    def describe(self) -> str:
        return (
            f"seed {self.seed}, {self.customers:,} customers, {self.first_day}..{self.last_day}, "
            f"drawn for {self.horizon_days} days"
        )

    def next_day(self, today: dt.date) -> DatasetSpec:
        """The same dataset one day longer; refused when that day has not ended yet (its partition
        does not exist before 00:00 UTC the next day) or the horizon is used up."""
        day = dt.date.fromisoformat(self.last_day) + dt.timedelta(days=1)
        if day >= today:
            raise DatasetConflict(
                f"the landing zone already holds data up to {self.last_day}; the next day, {day}, has not "
                f"ended yet (its partition exists from 00:00 UTC on {day + dt.timedelta(days=1)})"
            )
        if self.days + 1 > self.horizon_days:
            raise DatasetConflict(
                f"the dataset ({self.describe()}) was drawn for {self.horizon_days} days and has them all: "
                "generate a new one with --force"
            )
        return replace(self, last_day=day.isoformat())


def new_spec(seed: int, customers: int, start: dt.date, days: int, origin: str = "generate") -> DatasetSpec:
    last = start + dt.timedelta(days=days - 1)
    return DatasetSpec(seed, customers, start.isoformat(), last.isoformat(), days + APPENDABLE_DAYS, origin)


def default_window(days: int, today: dt.date) -> dt.date:
    """The first day of a ``days``-day window ending the day before yesterday: yesterday is left for
    `generate --append-day`, so a new day can land while the landing sensor watches."""
    return today - dt.timedelta(days=days + 1)


def _manifest_path(landing_zone: LandingZone):
    return open_path(landing_zone.base_path, landing_zone.connection) / MANIFEST_NAME


def read_spec(landing_zone: LandingZone) -> DatasetSpec | None:
    path = _manifest_path(landing_zone)
    if not path.exists():
        return None
    return DatasetSpec(**json.loads(path.read_text()))


def remove_spec(landing_zone: LandingZone) -> None:
    """Forget the dataset (first, when replacing it: a failure halfway then leaves files without a
    manifest, which `generate` refuses to mix into, never a manifest describing deleted files)."""
    path = _manifest_path(landing_zone)
    if path.exists():
        path.unlink()


def write_spec(landing_zone: LandingZone, spec: DatasetSpec) -> str:
    path = _manifest_path(landing_zone)
    write_bytes_atomic(path, (json.dumps(asdict(spec), indent=2) + "\n").encode())
    return uri_of(path)


def landed_days(landing_zone: LandingZone) -> list[str]:
    """The days that hold any file in the landing zone."""
    root = open_path(landing_zone.base_path, landing_zone.connection) / LOGS_PREFIX
    if not root.exists():
        return []
    return sorted(
        p.name.removeprefix("date=")
        for p in root.iterdir()
        if p.name.startswith("date=") and any(p.iterdir())
    )


def check_writable(landing_zone: LandingZone, wanted: DatasetSpec, force: bool) -> DatasetSpec | None:
    """What the landing zone holds, after refusing to mix ``wanted`` into another dataset (the
    origin does not matter: the demo's dataset and generate's with the same draws are one)."""
    held = read_spec(landing_zone)
    if force:
        return held
    where = uri_of(open_path(landing_zone.base_path, landing_zone.connection))
    if held is None:
        days = landed_days(landing_zone)
        if days:
            raise DatasetConflict(
                f"{where} already holds log files for {len(days)} days ({days[0]}..{days[-1]}) that "
                "`generate` did not write: pass --force to replace them, or point CHURN_DATA_DIR elsewhere",
                held=None,
            )
        return None
    if not held.same_dataset(wanted):
        raise DatasetConflict(
            f"{where} holds another generated dataset ({held.describe()}); asked for {wanted.describe()}: "
            "pass --force to replace it, or --append-day to land its next day",
            held=held,
        )
    return held


def remove_landed(landing_zone: LandingZone) -> int:
    """Delete every day folder of the landing zone (``--force``); returns how many."""
    days = landed_days(landing_zone)
    root = open_path(landing_zone.base_path, landing_zone.connection) / LOGS_PREFIX
    for day in days:
        folder = root / f"date={day}"
        folder.fs.rm(folder.path, recursive=True)
    return len(days)
