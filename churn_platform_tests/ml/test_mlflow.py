"""The model lifecycle against real MLflow tracking stores (SQLite, and an `mlflow server` process)."""

import os
import subprocess
import sys

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from upath import UPath

from churn_platform.cli.demo import DemoPlan
from churn_platform.definitions import build_definitions
from churn_platform.ml.scoring import predict_with
from churn_platform.ml.training import train_churn_model
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.run_tags import partition_range_tags
from churn_platform.storage.model_registry import MLflowTracking
from churn_platform.storage.parquet_io_manager import table_to_parquet
from churn_platform_tests.support import servers
from churn_platform_tests.support.data import START, generate_into, settings_for, synthetic_table

pytestmark = pytest.mark.slow
DAYS = 45


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    settings = settings_for(str(tmp_path_factory.mktemp("mlflow") / "data"))
    generate_into(settings, days=DAYS, customers=300, seed=5)
    defs = build_definitions(settings)
    plan = DemoPlan.for_days(START, DAYS)
    with dg.instance_for_test() as instance:
        for job, tags, key in (
            ("daily_ingestion_job", partition_range_tags(plan.first_day, plan.last_day), None),
            ("labels_job", partition_range_tags(plan.first_day, plan.last_labelled_day), None),
            ("training_job", {}, plan.last_labelled_day),
        ):
            assert (
                defs.resolve_job_def(job)
                .execute_in_process(instance=instance, tags=tags, partition_key=key)
                .success
            )
        yield settings, defs, instance, plan


def tracking(settings) -> MLflowTracking:
    return build_definitions(settings).resources["mlflow_tracking"]


def test_training_run_is_tracked_with_metrics_plots_lineage_and_registered(trained):
    settings, _, instance, plan = trained
    meta = instance.get_latest_materialization_event(keys.CHURN_MODEL).asset_materialization.metadata
    client = MlflowClient(settings.mlflow.tracking_uri)
    run = client.get_run(meta["mlflow_run_id"].value)
    # Typed for classical ML: the MLflow UI opens the experiment on its training runs, not GenAI.
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    for name in ("roc_auc", "pr_auc", "brier", "log_loss", "precision_at_threshold", "recall_at_threshold"):
        assert run.data.metrics[name] == pytest.approx(meta[name].value, abs=5e-5)  # the UI shows 4 digits
    assert run.data.params["training_cutoff"] == plan.last_labelled_day
    assert run.data.tags["dagster.partition"] == plan.last_labelled_day
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {
        f"plots/{n}"
        for n in ("roc_curve.png", "precision_recall_curve.png", "calibration.png", "feature_importance.png")
    }
    lineage = client.download_artifacts(run.info.run_id, "lineage.json")
    import json

    with open(lineage) as handle:
        files = json.load(handle)["files"]
    assert files and all(len(f["sha256"]) == 64 for f in files)
    version = client.get_model_version_by_alias("churn_model", "champion")
    assert str(version.version) == meta["model_version"].value == "1" and version.run_id == run.info.run_id
    tags = client.get_model_version("churn_model", "1").tags
    assert tags["promotion"] == "passed"
    # 45 days leave 15 labelled as-of dates: too few for a purged out-of-time split, and it says so.
    assert tags["split"] == "in_window" and "lengthen CHURN_TRAINING_WINDOW_DAYS" in tags["split_reason"]
    assert tags["training_cutoff"] == tags["fit_cutoff"] == plan.last_labelled_day
    assert "evaluated in-window, not out of time" in tags["promotion_reason"]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"model_card.md", "lineage.json"}
    assert meta["mlflow_run"].value.endswith(f"/runs/{run.info.run_id}")
    model_info = client.get_logged_model(version.model_id) if version.model_id else None
    assert model_info is None or model_info.model_id == version.model_id


def test_a_model_trained_on_shuffled_labels_is_registered_but_not_promoted(trained):
    settings, defs, instance, plan = trained
    cutoff = plan.last_labelled_day
    path = UPath(settings.storage.warehouse_dir).joinpath(*keys.TRAINING_SET.path, f"{cutoff}.parquet")
    table = pd.read_parquet(path)
    table["churned"] = np.random.default_rng(0).permutation(table["churned"].to_numpy())  # no signal left
    import pyarrow as pa

    path.write_bytes(table_to_parquet(pa.Table.from_pandas(table, preserve_index=False)).to_pybytes())
    result = defs.resolve_job_def("training_job").execute_in_process(
        instance=instance,
        partition_key=cutoff,
        raise_on_error=False,
        asset_selection=[keys.CHURN_MODEL, keys.MODEL_SNAPSHOT],
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "version 2 not promoted" in evaluation.description and "below the floor" in evaluation.description
    # v1 was fitted in-window up to this cutoff: comparing on these rows would not be fair.
    assert "unseen-rows check failed" in evaluation.description
    client = MlflowClient(settings.mlflow.tracking_uri)
    assert str(client.get_model_version_by_alias("churn_model", "champion").version) == "1"
    assert client.get_model_version("churn_model", "2").tags["promotion"] == "rejected"
    # The blocking check stopped the backup of the rejected model; the champion keeps scoring.
    assert not any(e.asset_key == keys.MODEL_SNAPSHOT for e in result.get_asset_materialization_events())
    scored = defs.resolve_job_def("scoring_job").execute_in_process(
        instance=instance, partition_key=plan.last_day
    )
    assert scored.success
    assert (
        instance.get_latest_materialization_event(keys.CHURN_SCORES)
        .asset_materialization.metadata["model_version"]
        .value
        == "1"
    )


def test_retraining_the_same_partition_with_the_same_seed_gives_the_same_metrics():
    table = synthetic_table(rows=2000, seed=4)
    first = train_churn_model(table, id_column="account", label_column="label", exclude=(), seed=9)
    second = train_churn_model(table, id_column="account", label_column="label", exclude=(), seed=9)
    assert first.metrics == second.metrics
    np.testing.assert_array_equal(first.holdout.probabilities, second.holdout.probabilities)


def test_tracking_and_registry_through_a_real_mlflow_server(tmp_path):
    port = servers.free_port()
    server = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        servers.wait_for_port(port, timeout=90)
        resource = MLflowTracking(tracking_uri=f"http://127.0.0.1:{port}", ui_url=f"http://127.0.0.1:{port}")
        model = train_churn_model(
            synthetic_table(rows=1500), id_column="account", label_column="label", exclude=()
        )
        record = resource.log_training(
            model.pipeline,
            model.holdout.features,
            {"seed": 0},
            model.metrics,
            {"dagster.partition": "2026-03-01"},
            {"files": []},
            {},
            "server test",
        )
        assert resource.champion_version() is None
        resource.promote(record.version, "test")
        pipeline, artifact = resource.load_champion()
        assert artifact.version == record.version == "1"
        assert artifact.sha256 == resource.download_version("1").sha256  # the same bytes each time
        probabilities = predict_with(pipeline, model.holdout.features)
        np.testing.assert_allclose(probabilities, model.holdout.probabilities)
        assert (tmp_path / "artifacts").exists() and any((tmp_path / "artifacts").rglob("MLmodel"))
    finally:
        server.terminate()
        server.wait(timeout=20)
