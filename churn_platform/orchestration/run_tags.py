"""Run tags the platform sets or reads."""

# The tags Dagster sets on a single-run backfill of a partition range.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def partition_range_tags(start: str, end: str) -> dict[str, str]:
    return {RANGE_START_TAG: start, RANGE_END_TAG: end}


# Why a run was started, when not by a schedule, a sensor of new files or a user: read by the alerts.
TRIGGER_TAG = "churn_platform/trigger"
TRIGGER_REASON_TAG = "churn_platform/trigger_reason"
DRIFT_TRIGGER = "feature_drift"
