import os
import subprocess
import sys

import dagster as dg
import pytest

from churn_platform.definitions import defs
from churn_platform.resources import build_resources
from churn_platform.settings import SettingsError, load_settings

ASSETS = [
    "raw/crm_tickets",
    "raw/interaction_logs",
    "enriched/ticket_sentiment",
    "features/customer_daily_activity",
    "features/customer_features",
    "ml/churn_labels",
    "ml/training_set",
    "ml/churn_model",
    "ml/churn_scores",
    "ml/feature_drift",
    "backups/model_snapshot",
]


def test_one_definitions_object_holds_the_whole_graph_grouped_by_prefix():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(ASSETS)
    for key in graph.get_all_asset_keys():
        assert graph.get(key).group_name == key.path[0]
    dg.Definitions.validate_loadable(defs)


def test_lineage_edges():
    graph = defs.resolve_asset_graph()
    parents = lambda k: {p.to_user_string() for p in graph.get(dg.AssetKey(k.split("/"))).parent_keys}
    assert parents("features/customer_daily_activity") == {
        "raw/interaction_logs",
        "enriched/ticket_sentiment",
    }
    assert parents("ml/training_set") == {"features/customer_features", "ml/churn_labels"}
    assert parents("ml/churn_scores") == {"features/customer_features", "ml/churn_model"}
    assert parents("backups/model_snapshot") == {"ml/churn_model"}
    assert parents("ml/feature_drift") == {"features/customer_features", "ml/training_set"}


def test_model_checks_are_registered():
    checks = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert ("ml/churn_model", "promotion_gate") in checks and (
        "ml/feature_drift",
        "drift_below_threshold",
    ) in checks


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
    for key in ASSETS:
        assert key in out


def test_unknown_environment_is_refused_with_the_choices():
    with pytest.raises(SettingsError, match=r"CHURN_ENV='mars' is not one of \['local', 's3', 'gcs'\]"):
        load_settings({"CHURN_ENV": "mars"})


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
