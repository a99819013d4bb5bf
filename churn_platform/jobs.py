"""Jobs over the asset graph: one per partitions definition and cadence."""

from __future__ import annotations

import dagster as dg

# The tags Dagster sets on a single-run backfill of a partition range.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def partition_range_tags(start: str, end: str) -> dict[str, str]:
    return {RANGE_START_TAG: start, RANGE_END_TAG: end}


daily_ingestion_job = dg.define_asset_job(
    "daily_ingestion_job",
    selection=dg.AssetSelection.groups("raw", "enriched", "features"),
    description="Raw tickets and logs, sentiment, daily activity and rolling customer features.",
)

labels_job = dg.define_asset_job(
    "labels_job",
    selection=dg.AssetSelection.assets(["ml", "churn_labels"]),
    description="Churn labels for as-of dates whose 30-day outcome window has elapsed.",
)

training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.assets(["ml", "training_set"], ["ml", "churn_model"], ["backups", "model_snapshot"]),
    description="Training set, churn model and its backup, as of a labelled date.",
)

scoring_job = dg.define_asset_job(
    "scoring_job",
    selection=dg.AssetSelection.assets(["ml", "churn_scores"], ["ml", "feature_drift"]),
    description="Daily churn scores from the champion model, and feature drift against training data.",
)

ALL_JOBS = [daily_ingestion_job, labels_job, training_job, scoring_job]
