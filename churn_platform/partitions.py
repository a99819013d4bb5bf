"""The platform's partitions: one per UTC day."""

from __future__ import annotations

import dagster as dg

from churn_platform.settings import LABEL_HORIZON_DAYS, load_settings

_settings = load_settings()

# One partition per UTC day of raw data and everything derived from it day by day.
daily_partitions = dg.DailyPartitionsDefinition(start_date=_settings.start_date, timezone="UTC")

# As-of dates whose 30-day outcome window has fully elapsed: the last one ends LABEL_HORIZON_DAYS
# before the last daily partition. Labels, training sets and models are keyed by these dates.
labelled_partitions = dg.DailyPartitionsDefinition(
    start_date=_settings.start_date, timezone="UTC", end_offset=-LABEL_HORIZON_DAYS
)
