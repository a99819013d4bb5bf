"""churn_platform: a Dagster data platform for customer-churn models."""

import warnings

from dagster import BetaWarning

# We rely on these two beta parameters on purpose (single-run backfills, windows that start
# before the first partition); say so once here instead of on every import.
warnings.filterwarnings(
    "ignore",
    category=BetaWarning,
    message=r"Parameter `(backfill_policy|allow_nonexistent_upstream_partitions)`",
)
