import datetime as dt
import os
import re
import subprocess
import sys

import dagster as dg
import pytest

from churn_platform.definitions import build_definitions, defs
from churn_platform.orchestration import asset_keys as keys
from churn_platform.resources import build_resources
from churn_platform.settings import SettingsError, load_settings


def test_one_definitions_object_holds_the_whole_graph_grouped_by_prefix():
    graph = defs.resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == set(keys.ALL)
    for key in graph.get_all_asset_keys():
        assert graph.get(key).group_name == key.path[0]
    dg.Definitions.validate_loadable(defs)


def test_lineage_edges():
    graph = defs.resolve_asset_graph()
    parents = lambda key: set(graph.get(key).parent_keys)
    assert parents(keys.CUSTOMER_DAILY_ACTIVITY) == {keys.INTERACTION_LOGS, keys.TICKET_SENTIMENT}
    assert parents(keys.TRAINING_SET) == {keys.CUSTOMER_FEATURES, keys.CHURN_LABELS}
    assert parents(keys.CHURN_SCORES) == {keys.CUSTOMER_FEATURES, keys.CHURN_MODEL}
    assert parents(keys.MODEL_SNAPSHOT) == {keys.CHURN_MODEL}
    assert parents(keys.FEATURE_DRIFT) == {keys.CUSTOMER_FEATURES, keys.TRAINING_SET}


def test_model_checks_are_registered():
    checks = set(defs.resolve_asset_graph().asset_check_keys)
    assert keys.PROMOTION_GATE in checks and keys.DRIFT_BELOW_THRESHOLD in checks


def test_dagster_cli_lists_every_asset():
    out = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "dagster"),
            "asset",
            "list",
            "-m",
            "churn_platform.definitions",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for key in keys.ALL:
        assert key.to_user_string() in out


def test_unknown_environment_is_refused_with_the_choices():
    with pytest.raises(
        SettingsError,
        match=r"CHURN_ENV='mars' is not one of \['local', 's3', 'gcs', 'production-s3', 'production-gcs'\]",
    ):
        load_settings({"CHURN_ENV": "mars"})


PRODUCTION_S3 = {
    "CHURN_ENV": "production-s3",
    "CHURN_S3_BUCKET": "data",
    "CHURN_S3_BACKUP_BUCKET": "vault",
    "CHURN_MLFLOW_TRACKING_URI": "http://mlflow.churn.svc:5000",
    "CHURN_MLFLOW_DATABASE_URL": "postgresql://mlflow:secret@db/mlflow",
    "CHURN_FEATURE_ENGINE": "spark",
    "CHURN_SPARK_MASTER": "spark://spark-master:7077",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/secret-token",
    "CHURN_CRM_URL": "https://acme.zendesk.com",
}


def test_the_production_profile_uses_its_store_and_builds_the_same_graph():
    settings = load_settings(PRODUCTION_S3)
    assert settings.storage.production and settings.storage.store == "s3"
    assert settings.storage.data_root == "s3://data/churn-platform"
    defs = build_definitions(settings)
    assert set(defs.resolve_all_asset_keys()) == set(keys.ALL)


@pytest.mark.parametrize(
    "change, named",
    [
        ({"CHURN_MLFLOW_TRACKING_URI": ""}, "CHURN_MLFLOW_TRACKING_URI is a sqlite store"),
        (
            {"CHURN_MLFLOW_TRACKING_URI": "file:///srv/mlruns"},
            "CHURN_MLFLOW_TRACKING_URI is a file store",
        ),
        ({"CHURN_MLFLOW_TRACKING_URI": "mysql://db/mlflow"}, "CHURN_MLFLOW_TRACKING_URI is a mysql store"),
        ({"CHURN_MLFLOW_DATABASE_URL": ""}, "CHURN_MLFLOW_DATABASE_URL must be set"),
        (
            {"CHURN_MLFLOW_TRACKING_URI": "postgresql+psycopg2://mlflow@db/mlflow"},
            "CHURN_MLFLOW_ARTIFACT_LOCATION must be s3://... or gs://...",
        ),
        ({"CHURN_FEATURE_ENGINE": "duckdb"}, "CHURN_FEATURE_ENGINE must be `spark`"),
        ({"CHURN_SPARK_MASTER": "local[*]"}, "CHURN_SPARK_MASTER must name a cluster"),
        ({"SLACK_WEBHOOK_URL": ""}, "SLACK_WEBHOOK_URL must be set"),
        ({"CHURN_CRM_URL": ""}, "CHURN_CRM_URL must be set"),
    ],
)
def test_the_production_profile_refuses_what_production_cannot_run_on(change, named):
    with pytest.raises(SettingsError, match=re.escape(named)) as refused:
        load_settings({**PRODUCTION_S3, **change})
    assert "CHURN_ENV=production-s3 is not a production configuration" in str(refused.value)


def test_the_production_check_never_prints_the_registry_password():
    uri = "postgresql+psycopg2://mlflow:hunter2@db/mlflow"  # accepted, with its artifacts on S3
    direct = {
        "CHURN_MLFLOW_TRACKING_URI": uri,
        "CHURN_MLFLOW_ARTIFACT_LOCATION": "s3://acme-mlflow/artifacts",
    }
    assert load_settings({**PRODUCTION_S3, **direct}).mlflow.tracking_uri == uri
    with pytest.raises(SettingsError) as refused:
        load_settings({**PRODUCTION_S3, "CHURN_MLFLOW_TRACKING_URI": "file://u:hunter2@host/x"})
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("env, missing", [("s3", "CHURN_S3_BUCKET"), ("gcs", "CHURN_GCS_BUCKET")])
def test_object_store_environments_name_the_missing_bucket_variable(env, missing):
    with pytest.raises(SettingsError, match=f"{missing} must be set when CHURN_ENV={env}"):
        load_settings({"CHURN_ENV": env})


def test_s3_credentials_are_env_var_references_never_values(monkeypatch):
    environ = {
        "CHURN_ENV": "s3",
        "CHURN_S3_BUCKET": "data",
        "CHURN_S3_BACKUP_BUCKET": "vault",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "very-secret",
    }
    resources = build_resources(load_settings(environ))
    connection = resources["io_manager"].connection
    assert (
        isinstance(connection.secret_access_key, dg.EnvVar)
        and connection.secret_access_key.env_var_name == "AWS_SECRET_ACCESS_KEY"
    )
    assert resources["io_manager"].base_path == "s3://data/churn-platform/warehouse"
    assert resources["backup_store"].base_path == "s3://vault/churn-platform"


def test_malformed_start_date_is_refused_at_load_time():
    with pytest.raises(ValueError):
        load_settings({"CHURN_START_DATE": "01/02/2026"})


def test_two_settings_objects_give_two_platforms_in_one_process():
    """Everything time-shaped comes from the settings passed in, not from the environment at import."""
    early = build_definitions(
        load_settings(
            {
                "CHURN_START_DATE": "2026-01-01",
                "CHURN_TRAINING_WINDOW_DAYS": "56",
                "CHURN_LANDING_LOOKBACK_DAYS": "7",
            }
        )
    )
    late = build_definitions(
        load_settings(
            {
                "CHURN_START_DATE": "2026-03-01",
                "CHURN_TRAINING_WINDOW_DAYS": "14",
                "CHURN_LANDING_LOOKBACK_DAYS": "2",
            }
        )
    )
    for platform, start, window, lookback in ((early, "2026-01-01", 56, 7), (late, "2026-03-01", 14, 2)):
        graph = platform.resolve_asset_graph()
        for key in (keys.INTERACTION_LOGS, keys.CUSTOMER_FEATURES, keys.CHURN_SCORES, keys.TRAINING_SET):
            assert graph.get(key).partitions_def.get_first_partition_key() == start, key
        # The training set of 2026-05-01 reads the as-of dates of its window, as configured.
        upstream = graph.get_parent_partition_keys_for_child(
            "2026-05-01", keys.CHURN_LABELS, keys.TRAINING_SET
        )
        labelled = sorted(upstream.partitions_subset.get_partition_keys())
        assert len(labelled) == window and labelled[-1] == "2026-05-01", (start, labelled[:2])
        sensor = platform.get_sensor_def("interaction_logs_landing_sensor")
        assert f"last {lookback} days" in sensor.description
        # Late data flows downstream for the lookback (+ the day being closed).
        in_window = graph.get(keys.CUSTOMER_FEATURES).automation_condition.children[0]
        assert in_window.lookback_timedelta == dt.timedelta(days=lookback + 1)
