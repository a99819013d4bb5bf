"""Platform configuration, read from the environment once at definition load time.

Everything that differs between environments (paths, buckets, dates) comes from here or from
resources; code never changes between environments.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Labels look this many days past the as-of date for a cancellation.
LABEL_HORIZON_DAYS = 30
# Rolling customer features look back over this many daily-activity partitions.
FEATURE_WINDOW_DAYS = 30


@dataclass(frozen=True)
class PlatformSettings:
    env: str
    data_dir: str
    start_date: str
    training_window_days: int

    @property
    def landing_dir(self) -> str:
        return f"{self.data_dir}/landing"

    @property
    def crm_export_path(self) -> str:
        return f"{self.data_dir}/crm/tickets.jsonl"

    @property
    def warehouse_dir(self) -> str:
        return f"{self.data_dir}/warehouse"

    @property
    def artifacts_dir(self) -> str:
        return f"{self.data_dir}/artifacts"

    @property
    def backup_dir(self) -> str:
        return f"{self.data_dir}/backups"


def load_settings(environ: dict[str, str] | None = None) -> PlatformSettings:
    env = os.environ if environ is None else environ
    start_date = env.get("CHURN_START_DATE", "2026-01-01")
    dt.date.fromisoformat(start_date)  # fail at load time on a malformed date, not mid-run
    window = int(env.get("CHURN_TRAINING_WINDOW_DAYS", "56"))
    if window < 1:
        raise ValueError(f"CHURN_TRAINING_WINDOW_DAYS must be >= 1, got {window}")
    return PlatformSettings(
        env=env.get("CHURN_ENV", "local"),
        data_dir=env.get("CHURN_DATA_DIR", str(REPO_ROOT / "data")),
        start_date=start_date,
        training_window_days=window,
    )
