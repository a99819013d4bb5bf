"""Every asset's key, defined once: stages, jobs, sensors, the CLI and the tests import these."""

import dagster as dg

CRM_TICKETS = dg.AssetKey(["raw", "crm_tickets"])
INTERACTION_LOGS = dg.AssetKey(["raw", "interaction_logs"])
TICKET_SENTIMENT = dg.AssetKey(["enriched", "ticket_sentiment"])
CUSTOMER_DAILY_ACTIVITY = dg.AssetKey(["features", "customer_daily_activity"])
CUSTOMER_FEATURES = dg.AssetKey(["features", "customer_features"])
CHURN_LABELS = dg.AssetKey(["ml", "churn_labels"])
TRAINING_SET = dg.AssetKey(["ml", "training_set"])
CHURN_MODEL = dg.AssetKey(["ml", "churn_model"])
CHURN_SCORES = dg.AssetKey(["ml", "churn_scores"])
FEATURE_DRIFT = dg.AssetKey(["ml", "feature_drift"])
ONLINE_CUSTOMER_FEATURES = dg.AssetKey(["online", "customer_features"])
INFERENCE_LOGS = dg.AssetKey(["raw", "inference_logs"])
PREDICTION_DRIFT = dg.AssetKey(["ml", "prediction_drift"])
INFERENCE_LOG_BACKUP = dg.AssetKey(["backups", "inference_logs"])
MODEL_SNAPSHOT = dg.AssetKey(["backups", "model_snapshot"])
PLATFORM_METADATA = dg.AssetKey(["backups", "platform_metadata"])
RESTORE_DRILL = dg.AssetKey(["backups", "restore_drill"])

ALL = (
    CRM_TICKETS,
    INTERACTION_LOGS,
    TICKET_SENTIMENT,
    CUSTOMER_DAILY_ACTIVITY,
    CUSTOMER_FEATURES,
    CHURN_LABELS,
    TRAINING_SET,
    CHURN_MODEL,
    CHURN_SCORES,
    FEATURE_DRIFT,
    ONLINE_CUSTOMER_FEATURES,
    INFERENCE_LOGS,
    PREDICTION_DRIFT,
    INFERENCE_LOG_BACKUP,
    MODEL_SNAPSHOT,
    PLATFORM_METADATA,
    RESTORE_DRILL,
)

# Asset checks, by the name they are registered under.
PROMOTION_GATE = dg.AssetCheckKey(CHURN_MODEL, "promotion_gate")
DRIFT_BELOW_THRESHOLD = dg.AssetCheckKey(FEATURE_DRIFT, "drift_below_threshold")
PREDICTION_DRIFT_BELOW_THRESHOLD = dg.AssetCheckKey(PREDICTION_DRIFT, "prediction_drift_below_threshold")
RECOVERY_OBJECTIVES = dg.AssetCheckKey(RESTORE_DRILL, "recovery_objectives")
