"""churn_platform: a Dagster data platform for customer-churn models.

Layers, each importing only those below it: ``settings`` (the environment, read once) <- ``storage``
<- ``engines`` <- ``orchestration`` <- the stages (``crm``, ``logs``, ``features``, ``ml``,
``backups``; they meet through asset keys, never by importing each other) <- ``alerts``,
``resources.py``, ``definitions.py`` and ``cli`` on top.
"""

import warnings

from dagster import BetaWarning

# We rely on these two beta parameters on purpose (single-run backfills, windows that start
# before the first partition); say so once here instead of on every import.
warnings.filterwarnings(
    "ignore",
    category=BetaWarning,
    message=r"Parameter `(backfill_policy|allow_nonexistent_upstream_partitions)`",
)
