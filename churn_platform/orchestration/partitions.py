"""The platform's partitions and the windows assets read across them, built from the settings.

Daily partitions are UTC days from ``CHURN_START_DATE``; labelled partitions are the as-of dates
whose outcome window has fully elapsed. Stage factories receive one ``PlatformPartitions``.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from churn_platform.orchestration.automation import on_upstream_change
from churn_platform.settings import PlatformSettings

# Labels look this many days past the as-of date for a cancellation.
LABEL_HORIZON_DAYS = 30
# Rolling customer features look back over this many daily-activity partitions.
FEATURE_WINDOW_DAYS = 30


@dataclass(frozen=True)
class PlatformPartitions:
    daily: dg.DailyPartitionsDefinition
    labelled: dg.DailyPartitionsDefinition
    training_window_days: int
    # Automation: late data for partitions this many days back still flows downstream.
    lookback_days: int

    def feature_window(self) -> dg.TimeWindowPartitionMapping:
        """The FEATURE_WINDOW_DAYS daily partitions up to and including the as-of date (fewer near the start)."""
        return dg.TimeWindowPartitionMapping(
            start_offset=-(FEATURE_WINDOW_DAYS - 1), allow_nonexistent_upstream_partitions=True
        )

    def label_window(self) -> dg.TimeWindowPartitionMapping:
        """The LABEL_HORIZON_DAYS days after the as-of date; all of them must be materialized."""
        return dg.TimeWindowPartitionMapping(start_offset=1, end_offset=LABEL_HORIZON_DAYS)

    def training_window(self) -> dg.TimeWindowPartitionMapping:
        """The as-of dates of the training window ending at the partition."""
        return dg.TimeWindowPartitionMapping(
            start_offset=-(self.training_window_days - 1), allow_nonexistent_upstream_partitions=True
        )

    def on_upstream_change(self, ignore: Sequence[dg.AssetKey] = ()) -> dg.AutomationCondition:
        return on_upstream_change(dt.timedelta(days=self.lookback_days + 1), ignore)


def build_partitions(settings: PlatformSettings) -> PlatformPartitions:
    start = settings.pipeline.start_date
    return PlatformPartitions(
        daily=dg.DailyPartitionsDefinition(start_date=start, timezone="UTC"),
        # As-of dates whose outcome window has fully elapsed: the last one ends LABEL_HORIZON_DAYS
        # before the last daily partition.
        labelled=dg.DailyPartitionsDefinition(
            start_date=start, timezone="UTC", end_offset=-LABEL_HORIZON_DAYS
        ),
        training_window_days=settings.pipeline.training_window_days,
        lookback_days=settings.automation.landing_lookback_days,
    )
