"""Weekly retraining through Dagster on generated data: out-of-time evaluation, the fair gate,
backfills of older cutoffs, and what MLflow and the check record (a real SQLite MLflow store)."""

import dagster as dg
import pytest
from mlflow.tracking import MlflowClient

from churn_platform.cli.demo import DemoPlan
from churn_platform.definitions import build_definitions
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.run_tags import partition_range_tags
from churn_platform_tests.support.data import START, generate_into, settings_for

pytestmark = pytest.mark.slow
DAYS, CUSTOMERS = 100, 500
# Cutoffs of three weekly partitions: last week, this week, and a backfill of an older week.
LAST_WEEK, THIS_WEEK, OLDER = "2026-03-04", "2026-03-11", "2026-02-25"


def check_evaluation(result) -> dg.AssetCheckEvaluation:
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


@pytest.fixture(scope="module")
def weekly(tmp_path_factory):
    settings = settings_for(str(tmp_path_factory.mktemp("retraining") / "data"))
    generate_into(settings, days=DAYS, customers=CUSTOMERS, seed=7)
    defs = build_definitions(settings)
    plan = DemoPlan.for_days(START, DAYS)
    assert plan.last_labelled_day == THIS_WEEK
    with dg.instance_for_test() as instance:
        for job, tags in (
            ("daily_ingestion_job", partition_range_tags(plan.first_day, plan.last_day)),
            ("labels_job", partition_range_tags(plan.first_day, plan.last_labelled_day)),
        ):
            assert defs.resolve_job_def(job).execute_in_process(instance=instance, tags=tags).success
        checks = {}
        for cutoff in (LAST_WEEK, THIS_WEEK, OLDER):
            result = defs.resolve_job_def("training_job").execute_in_process(
                instance=instance, partition_key=cutoff, raise_on_error=False
            )
            checks[cutoff] = check_evaluation(result)
        yield settings, instance, checks


def model_metadata(instance, cutoff: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=keys.CHURN_MODEL, asset_partitions=[cutoff]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_the_next_weeks_model_is_compared_on_unseen_rows_and_promoted(weekly):
    settings, instance, checks = weekly
    first, second = checks[LAST_WEEK], checks[THIS_WEEK]
    assert first.passed and "no champion yet" in first.description
    assert second.passed, second.description
    assert second.description.startswith("promoted version 2 to champion (was 1)")
    gate = model_metadata(instance, THIS_WEEK)["gate_inputs"]
    split, champion = gate["split"], gate["champion"]
    assert split["kind"] == "out_of_time" and split["evaluation_dates"] == [THIS_WEEK]
    # Compared on this week's evaluation rows, a label horizon after both models' fit cutoffs.
    assert champion["status"] == "compared" and champion["version"] == "1"
    first_split = model_metadata(instance, LAST_WEEK)["gate_inputs"]["split"]
    assert champion["fit_cutoff"] == first_split["fit_cutoff"] < split["fit_cutoff"] <= "2026-02-09"
    assert champion["comparison"]["rows"] == split["evaluation_rows"]
    meta = {k: v.value for k, v in second.metadata.items()}
    low, high = meta["auc_difference_ci"]
    assert low <= meta["auc_difference"] <= high
    assert meta["auc_difference"] == pytest.approx(
        meta["roc_auc"] - meta["champion_roc_auc_same_rows"], abs=2e-4
    )
    assert high >= -0.02  # the rule it passed
    client = MlflowClient(settings.mlflow.tracking_uri)
    assert str(client.get_model_version_by_alias("churn_model", "champion").version) == "2"


def test_the_split_is_recorded_in_mlflow_and_on_the_registered_version(weekly):
    settings, instance, _ = weekly
    meta = model_metadata(instance, THIS_WEEK)
    split = meta["gate_inputs"]["split"]
    client = MlflowClient(settings.mlflow.tracking_uri)
    tags = client.get_model_version("churn_model", "2").tags
    assert tags["training_cutoff"] == THIS_WEEK and tags["split"] == "out_of_time"
    assert tags["fit_cutoff"] == split["fit_cutoff"] and tags["evaluation_dates"] == THIS_WEEK
    assert (
        int(tags["fit_rows"]) == split["fit_rows"]
        and int(tags["evaluation_rows"]) == split["evaluation_rows"]
    )
    run = client.get_run(meta["mlflow_run_id"])
    assert run.data.params["split.fit_cutoff"] == split["fit_cutoff"]
    assert run.data.params["cost_missed_churner"] == "500.0"
    for name in ("fit_churn_rate", "evaluation_churn_rate", "expected_saving_per_customer", "roc_auc_ci_low"):
        assert run.data.metrics[name] == pytest.approx(meta[name], abs=5e-5)  # the UI shows 4 digits
    assert meta["test_rows"] == split["evaluation_rows"] and meta["expected_saving_per_customer"] > 0


def test_the_model_card_holds_the_split_metrics_features_and_the_gates_decision(weekly):
    settings, instance, checks = weekly
    meta = model_metadata(instance, THIS_WEEK)
    card = checks[THIS_WEEK].metadata["model_card"].value
    for text in ("out_of_time", meta["fit_cutoff"], "95% CI", "Top features", "promoted to champion"):
        assert text in card
    assert "Pending" in meta["model_card"] and "Pending" not in card
    client = MlflowClient(settings.mlflow.tracking_uri)
    path = client.download_artifacts(meta["mlflow_run_id"], "model_card.md")
    with open(path) as handle:
        assert handle.read() == card  # the MLflow artifact carries the decision too


def test_a_backfill_of_an_older_cutoff_registers_a_version_but_keeps_the_newer_champion(weekly):
    settings, _, checks = weekly
    backfill = checks[OLDER]
    assert not backfill.passed
    assert "version 3 not promoted" in backfill.description
    assert f"earlier than champion v2's cutoff {THIS_WEEK}" in backfill.description
    assert backfill.metadata["champion_status"].value == "newer_champion"
    client = MlflowClient(settings.mlflow.tracking_uri)
    assert client.get_model_version("churn_model", "3").tags["promotion"] == "rejected"
    assert str(client.get_model_version_by_alias("churn_model", "champion").version) == "2"
