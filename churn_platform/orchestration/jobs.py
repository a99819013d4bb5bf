"""Jobs over the asset graph: one per partitions definition and cadence."""

import dagster as dg

from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration import kubernetes
from churn_platform.orchestration.freshness import DEADLINE_CHECK_KEYS

# The `partitions_on_time` checks are evaluated by the partition_freshness sensor, not by the runs
# that materialize their assets (an asset job would otherwise run them after every asset).
DEADLINE_CHECKS = dg.AssetSelection.checks(*DEADLINE_CHECK_KEYS)

daily_ingestion_job = dg.define_asset_job(
    "daily_ingestion_job",
    # raw/inference_logs is the scoring service's, ingested by inference_log_job.
    selection=dg.AssetSelection.groups("raw", "enriched", "features")
    - dg.AssetSelection.assets(keys.INFERENCE_LOGS)
    - DEADLINE_CHECKS,
    description="Raw tickets and logs, sentiment, daily activity and rolling customer features.",
    tags=kubernetes.job_run_tags("daily_ingestion_job"),
)

labels_job = dg.define_asset_job(
    "labels_job",
    selection=dg.AssetSelection.assets(keys.CHURN_LABELS) - DEADLINE_CHECKS,
    description="Churn labels for as-of dates whose 30-day outcome window has elapsed.",
    tags=kubernetes.job_run_tags("labels_job"),
)

training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.assets(keys.TRAINING_SET, keys.CHURN_MODEL, keys.MODEL_SNAPSHOT),
    description="Training set, churn model and its backup, as of a labelled date.",
    tags=kubernetes.job_run_tags("training_job"),
)

scoring_job = dg.define_asset_job(
    "scoring_job",
    selection=dg.AssetSelection.assets(keys.CHURN_SCORES, keys.FEATURE_DRIFT) - DEADLINE_CHECKS,
    description="Daily churn scores from the champion model, and feature drift against training data.",
    tags=kubernetes.job_run_tags("scoring_job"),
)

online_features_job = dg.define_asset_job(
    "online_features_job",
    selection=dg.AssetSelection.assets(keys.ONLINE_CUSTOMER_FEATURES) - DEADLINE_CHECKS,
    description="The day's customer features into the online store (Redis) for `churn-platform serve`.",
    tags=kubernetes.job_run_tags("online_features_job"),
)

inference_log_job = dg.define_asset_job(
    "inference_log_job",
    selection=dg.AssetSelection.assets(keys.INFERENCE_LOGS, keys.PREDICTION_DRIFT, keys.INFERENCE_LOG_BACKUP)
    - DEADLINE_CHECKS,
    description="The predictions `churn-platform serve` answered on a day: ingested, checked for "
    "prediction drift and backed up.",
    tags=kubernetes.job_run_tags("inference_log_job"),
)

metadata_backup_job = dg.define_asset_job(
    "metadata_backup_job",
    selection=dg.AssetSelection.assets(keys.PLATFORM_METADATA, keys.RESTORE_DRILL),
    description="A consistent copy of the Dagster instance and the MLflow store in the backup store, "
    "then the restore drill on it.",
    tags=kubernetes.job_run_tags("metadata_backup_job"),
)

ALL_JOBS = [
    daily_ingestion_job,
    labels_job,
    training_job,
    scoring_job,
    online_features_job,
    inference_log_job,
    metadata_backup_job,
]
