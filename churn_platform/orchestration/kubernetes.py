"""CPU and memory of the Kubernetes pod a run executes in (production: ``K8sRunLauncher``).

The run launcher sizes a run's pod from the run's ``dagster-k8s/config`` *run tag* only, deep-merged
over ``run_launcher.config.resources`` in deploy/dagster.yaml (the floor). It never reads an asset's
``op_tags`` (only the ``k8s_job_executor``, which puts each step in a pod of its own, does), so the
sizes are given to the jobs (``jobs.py``), each by the heaviest asset it materializes; any other run
(an ad-hoc materialization, a backfill of assets, the automation sensor) gets the floor unless whoever
requests it adds ``run_tags_for_assets(...)`` to its tags.

All of a run's steps share one process (``in_process_executor``), one at a time: the pod needs what
its heaviest step needs. Each profile sets every key the floor sets (``requests.cpu``,
``requests.memory``, ``limits.memory``): a deep merge keeps a floor key a profile leaves out. No CPU
limit (throttling a step only makes it slower). The heavy profiles' memory limit is their request:
the node reserves all they may use, and a pod within its request is not among the first evicted
under memory pressure. The sizes are estimates, not measurements: revisit them with the pods' usage.
"""

import json
from collections.abc import Iterable

import dagster as dg

from churn_platform.orchestration import asset_keys as keys

K8S_CONFIG_TAG = "dagster-k8s/config"

# Lightest first: a job or a set of assets gets the last profile any of its assets needs.
PROFILES: dict[str, dict[str, dict[str, str]]] = {
    # pandas on tickets, logs or sentiment (a backfill: its whole range), API calls, backup copies.
    "ingestion": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    # Loading the champion model and the day's features (and the latest training set for drift).
    "scoring": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    # DuckDB, or a Spark driver in the pod (spark.driver.memory, CHURN_SPARK_DRIVER_MEMORY, default
    # 2g, plus the JVM's overhead and the Python side).
    "spark_driver": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}},
    # The training window in pandas and the scikit-learn fit, bootstrap and permutation importances.
    "training": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
}

ASSET_PROFILES: dict[dg.AssetKey, str] = {
    keys.CRM_TICKETS: "ingestion",
    keys.INTERACTION_LOGS: "ingestion",
    keys.TICKET_SENTIMENT: "ingestion",
    keys.CUSTOMER_DAILY_ACTIVITY: "spark_driver",
    keys.CUSTOMER_FEATURES: "spark_driver",
    keys.CHURN_LABELS: "spark_driver",
    keys.TRAINING_SET: "training",
    keys.CHURN_MODEL: "training",
    keys.CHURN_SCORES: "scoring",
    keys.FEATURE_DRIFT: "scoring",
    keys.ONLINE_CUSTOMER_FEATURES: "ingestion",  # one day's feature file at a time into Redis
    keys.INFERENCE_LOGS: "ingestion",  # one day of the service's predictions
    keys.PREDICTION_DRIFT: "ingestion",
    keys.INFERENCE_LOG_BACKUP: "ingestion",
    keys.MODEL_SNAPSHOT: "ingestion",
    keys.PLATFORM_METADATA: "ingestion",
    keys.RESTORE_DRILL: "ingestion",
}

# Each job's heaviest asset's profile (churn_platform_tests/deploy/test_kubernetes.py checks this
# against the assets each job selects).
JOB_PROFILES: dict[str, str] = {
    "daily_ingestion_job": "spark_driver",  # customer_daily_activity, customer_features
    "labels_job": "spark_driver",  # churn_labels
    "training_job": "training",  # churn_model
    "scoring_job": "scoring",  # churn_scores, feature_drift
    "online_features_job": "ingestion",  # online/customer_features
    "inference_log_job": "ingestion",  # inference_logs, prediction_drift and their backup
    "metadata_backup_job": "ingestion",  # platform_metadata, restore_drill
}


def profile_for_assets(asset_keys: Iterable[dg.AssetKey]) -> str:
    """The profile of the heaviest of these assets."""
    order = list(PROFILES)
    return max((ASSET_PROFILES[key] for key in asset_keys), key=order.index)


def k8s_config(profile: str) -> dict:
    """The value of the ``dagster-k8s/config`` tag for a run pod of this profile."""
    return {"container_config": {"resources": PROFILES[profile]}}


def run_tags(profile: str) -> dict[str, str]:
    """The run tags that size a run's pod (tag values are strings: the config as JSON)."""
    return {K8S_CONFIG_TAG: json.dumps(k8s_config(profile), sort_keys=True)}


def job_run_tags(job_name: str) -> dict[str, str]:
    return run_tags(JOB_PROFILES[job_name])


def run_tags_for_assets(asset_keys: Iterable[dg.AssetKey]) -> dict[str, str]:
    """For a run of some assets outside the jobs (a sensor's or a backfill's request)."""
    return run_tags(profile_for_assets(asset_keys))
