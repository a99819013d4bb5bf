"""The promotion gate as plain functions: the out-of-time split, the unseen-rows check, the paired
bootstrap, the business metric and the gate's decisions against a real MLflow store (SQLite)."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from churn_platform.ml.business import Costs, best_threshold, row_savings
from churn_platform.ml.promotion import (
    COMPARED,
    NEWER_CHAMPION,
    NO_FIT_CUTOFF,
    ROWS_NOT_UNSEEN,
    BootstrapSettings,
    Challenger,
    GateThresholds,
    business_metrics,
    decide_promotion,
    gate_inputs,
    paired_bootstrap,
    unseen_rows_problems,
)
from churn_platform.ml.scoring import predict_with
from churn_platform.ml.training import IN_WINDOW, OUT_OF_TIME, train_churn_model
from churn_platform.settings import SettingsError, load_settings
from churn_platform.storage.model_registry import MLflowTracking

COSTS = Costs(500.0, 50.0)
FIRST = dt.date(2026, 1, 5)


def weekly_table(weeks: int = 13, customers: int = 600, seed: int = 0) -> pd.DataFrame:
    """Snapshots of customers every 7 days: usage and segment drive churn (about 15%)."""
    rng = np.random.default_rng(seed)
    frames = []
    for week in range(weeks):
        usage = rng.gamma(2.0, 2.0, customers)
        segment = rng.choice(["smb", "mid", "ent"], customers)
        risk = -1.2 * usage + np.where(segment == "smb", 1.0, 0.0) + rng.normal(0, 1.2, customers)
        frames.append(
            pd.DataFrame(
                {
                    "as_of_date": FIRST + dt.timedelta(days=7 * week),
                    "customer_id": np.arange(customers),
                    "usage": usage,
                    "noise": rng.normal(size=customers),
                    "segment": pd.Series(segment, dtype="string"),
                    "churned": risk > np.quantile(risk, 0.85),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def up_to(table: pd.DataFrame, weeks: int) -> pd.DataFrame:
    """The training set of the cutoff ``weeks - 1`` weeks after FIRST."""
    return table[table["as_of_date"] < FIRST + dt.timedelta(days=7 * weeks)].reset_index(drop=True)


def cutoff_of(table: pd.DataFrame) -> str:
    return max(table["as_of_date"]).isoformat()


def register(tracking: MLflowTracking, model, cutoff: str, record_split: bool = True) -> str:
    """Log and register a model as the churn_model asset does; returns its version."""
    record = tracking.log_training(
        model.pipeline, model.holdout.features, {"training_cutoff": cutoff}, model.metrics, {}, {}, {}, cutoff
    )
    tags = {"training_cutoff": cutoff, **(model.split.as_tags() if record_split else {})}
    tracking.tag_version(record.version, tags)
    return record.version


def challenge(tracking: MLflowTracking, model, cutoff: str, thresholds: GateThresholds | None = None):
    version = register(tracking, model, cutoff)
    holdout = model.holdout
    metrics = {**model.metrics, **business_metrics(holdout.labels, holdout.probabilities, COSTS)}
    champion = tracking.champion_record()
    inputs = gate_inputs(
        Challenger(version, cutoff, model.split, metrics, holdout),
        champion,
        lambda: tracking.load_version(champion["version"])[0],
        COSTS,
        BootstrapSettings(resamples=500),
    )
    return inputs, decide_promotion(inputs, thresholds or GateThresholds(), tracking)


@pytest.fixture
def tracking(tmp_path) -> MLflowTracking:
    return MLflowTracking(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "a")
    )


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return weekly_table()


# -- the split -------------------------------------------------------------------------------------------
def test_the_model_is_fitted_a_label_horizon_before_the_dates_it_is_evaluated_on(table):
    model = train_churn_model(table, seed=1)
    split, holdout = model.split, model.holdout
    latest = max(table["as_of_date"])
    assert split.kind == OUT_OF_TIME and split.evaluation_dates == [latest.isoformat()]
    assert set(holdout.as_of_dates) == {latest.isoformat()}
    fit_cutoff = dt.date.fromisoformat(split.fit_cutoff)
    assert latest - fit_cutoff >= dt.timedelta(days=30) and latest - fit_cutoff < dt.timedelta(days=37)
    fitted = table[table["as_of_date"] <= fit_cutoff]
    evaluated = table[table["as_of_date"] == latest]
    assert (split.fit_rows, split.evaluation_rows) == (len(fitted), len(evaluated))
    assert split.fit_churn_rate == pytest.approx(fitted["churned"].mean())
    assert split.evaluation_churn_rate == pytest.approx(evaluated["churned"].mean())
    # The as-of dates in the purge gap are used on neither side.
    assert split.fit_rows + split.evaluation_rows < len(table)
    # The registered model is the model evaluated, not refitted on the evaluation rows.
    np.testing.assert_allclose(predict_with(model.pipeline, holdout.features), holdout.probabilities)
    assert "as_of_date" not in model.feature_columns
    tags = split.as_tags()
    assert tags["split"] == "out_of_time" and tags["fit_cutoff"] == split.fit_cutoff


def test_two_evaluation_dates_move_the_fit_cutoff_back(table):
    split = train_churn_model(table, evaluation_dates=2).split
    dates = sorted(table["as_of_date"].unique())
    assert split.evaluation_dates == [d.isoformat() for d in dates[-2:]]
    assert dt.date.fromisoformat(split.fit_cutoff) <= dates[-2] - dt.timedelta(days=30)


def test_too_short_a_history_falls_back_to_an_in_window_split_and_says_why(table):
    model = train_churn_model(up_to(table, 4))  # 3 weeks: no date is 30 days before the latest
    assert model.split.kind == IN_WINDOW and "lengthen CHURN_TRAINING_WINDOW_DAYS" in model.split.reason
    assert model.split.purge_days == 0


# -- the unseen-rows check -------------------------------------------------------------------------------
def test_the_unseen_rows_check_fails_when_comparison_rows_overlap_a_models_training_rows():
    cutoffs = {"challenger v2": "2026-02-01", "champion v1": "2026-01-25"}
    assert unseen_rows_problems(["2026-03-03"], cutoffs) == []
    # 29 days after the challenger's fit cutoff: those rows' label windows overlap its fitted ones.
    [problem] = unseen_rows_problems(["2026-03-02", "2026-03-03"], cutoffs)
    assert "2026-03-02" in problem and "challenger v2's fit cutoff 2026-02-01" in problem
    # Rows the champion was fitted on.
    problems = unseen_rows_problems(["2026-01-20"], cutoffs)
    assert len(problems) == 2 and "champion v1's fit cutoff 2026-01-25" in problems[1]
    assert unseen_rows_problems(["2026-03-03"], {"champion v1": None}) == [
        "champion v1 has no recorded fit cutoff"
    ]


def test_a_comparison_on_rows_a_model_was_fitted_on_is_refused_and_the_champion_not_even_scored(
    tracking, table
):
    # A champion of the previous week fitted in-window, on as-of dates up to the very date the
    # challenger is evaluated on: it has seen those customers' outcomes.
    champion = train_churn_model(up_to(table, 12), seed=0)
    version = register(tracking, champion, cutoff_of(up_to(table, 12)))
    tracking.tag_version(version, {"split": "in_window", "fit_cutoff": cutoff_of(table)})
    tracking.promote(version, "test")
    model = train_churn_model(table, seed=2)
    holdout = model.holdout
    metrics = {**model.metrics, **business_metrics(holdout.labels, holdout.probabilities, COSTS)}

    def must_not_load():
        raise AssertionError("the champion must not be scored on rows it has seen")

    inputs = gate_inputs(
        Challenger(
            register(tracking, model, cutoff_of(table)), cutoff_of(table), model.split, metrics, holdout
        ),
        tracking.champion_record(),
        must_not_load,
        COSTS,
    )
    assert inputs["champion"]["status"] == ROWS_NOT_UNSEEN
    decision = decide_promotion(inputs, GateThresholds(), tracking)
    assert not decision.passed
    assert "unseen-rows check failed" in decision.description
    assert "champion v1's fit cutoff 2026-03-30" in decision.description


# -- the bootstrap and the business metric ---------------------------------------------------------------
def test_the_paired_bootstrap_is_seeded_and_centred_on_the_difference():
    rng = np.random.default_rng(0)
    y = rng.random(800) < 0.1
    good = np.clip(y * 0.3 + rng.random(800) * 0.7, 0, 1)
    weak = np.clip(y * 0.1 + rng.random(800) * 0.9, 0, 1)
    first = paired_bootstrap(y, good, weak, 0.5, 0.5, COSTS, BootstrapSettings(seed=3))
    again = paired_bootstrap(y, good, weak, 0.5, 0.5, COSTS, BootstrapSettings(seed=3))
    assert first == again
    low, high = first["auc_difference_ci"]
    assert 0 < low < first["auc_difference"] < high  # the better model, with confidence
    same = paired_bootstrap(y, good, good, 0.5, 0.5, COSTS)
    assert same["auc_difference_ci"] == [0.0, 0.0] and same["saving_difference_ci"] == [0.0, 0.0]


def test_expected_saving_is_worked_out_at_the_best_threshold():
    y = np.array([1, 0, 1, 0, 0, 0], dtype=bool)
    p = np.array([0.9, 0.8, 0.7, 0.3, 0.3, 0.1])
    best = best_threshold(y, p, COSTS)
    # Flagging the top 3: two churners saved (2 x 500) for three offers (3 x 50).
    assert best["best_threshold"] == 0.7 and best["expected_saving"] == 850.0
    assert best["flagged_rate_at_best_threshold"] == 0.5
    assert row_savings(y, p, 0.7, COSTS).sum() == 850.0
    nobody = best_threshold(np.zeros(4, dtype=bool), np.array([0.1, 0.2, 0.3, 0.4]), COSTS)
    assert nobody["best_threshold"] is None and nobody["expected_saving"] == 0.0


def test_costs_are_read_from_the_environment_and_validated():
    defaults = load_settings({}).promotion
    assert (defaults.missed_churner, defaults.retention_offer) == (500.0, 50.0)
    chosen = load_settings({"CHURN_COST_MISSED_CHURNER": "420.50", "CHURN_COST_RETENTION_OFFER": "12"})
    assert (chosen.promotion.missed_churner, chosen.promotion.retention_offer) == (420.5, 12.0)
    with pytest.raises(SettingsError, match="CHURN_COST_MISSED_CHURNER='lots' is not a number"):
        load_settings({"CHURN_COST_MISSED_CHURNER": "lots"})
    with pytest.raises(SettingsError, match="CHURN_COST_RETENTION_OFFER must be a positive amount"):
        load_settings({"CHURN_COST_RETENTION_OFFER": "-5"})
    with pytest.raises(SettingsError, match="must be below CHURN_COST_MISSED_CHURNER"):
        load_settings({"CHURN_COST_RETENTION_OFFER": "600"})


# -- the gate's decisions --------------------------------------------------------------------------------
def test_a_better_model_of_the_next_week_replaces_the_champion(tracking, table):
    # Last week's champion could not see usage (its strongest signal): worse on unseen rows.
    first = train_churn_model(up_to(table, 12).drop(columns="usage"), seed=0)
    v1 = register(tracking, first, cutoff_of(up_to(table, 12)))
    tracking.promote(v1, "first")
    second = train_churn_model(table, seed=0)
    inputs, decision = challenge(tracking, second, cutoff_of(table))
    champion = inputs["champion"]
    assert champion["status"] == COMPARED and champion["fit_cutoff"] == first.split.fit_cutoff
    assert champion["comparison"]["rows"] == second.split.evaluation_rows
    assert champion["comparison"]["auc_difference_ci"][0] > 0  # better, with confidence
    assert decision.passed and decision.description.startswith("promoted version 2 to champion (was 1)")
    assert "on the same" in decision.description and "95% CI" in decision.description
    assert tracking.champion_version() == "2"


def test_a_model_trained_on_shuffled_labels_is_rejected_naming_the_metric_and_the_interval(tracking, table):
    first = train_churn_model(up_to(table, 12), seed=0)
    tracking.promote(register(tracking, first, cutoff_of(up_to(table, 12))), "first")
    # Fitted on shuffled labels, evaluated on the true outcomes of the latest week.
    shuffled = table.copy()
    fitted = shuffled["as_of_date"] < max(shuffled["as_of_date"])
    shuffled.loc[fitted, "churned"] = np.random.default_rng(1).permutation(
        shuffled.loc[fitted, "churned"].to_numpy()
    )
    worse = train_churn_model(shuffled, seed=0)
    # Permissive floors: only the comparison with the champion can reject it.
    thresholds = GateThresholds(min_roc_auc=0.0, min_pr_auc_lift=0.0, min_expected_saving=-1e9)
    inputs, decision = challenge(tracking, worse, cutoff_of(table), thresholds)
    assert not decision.passed and tracking.champion_version() == "1"
    [auc_reason, saving_reason] = decision.reasons
    assert auc_reason.startswith("ROC AUC") and "95% CI" in auc_reason and "below -0.02" in auc_reason
    assert "expected saving per customer" in saving_reason and "95% CI" in saving_reason
    high = inputs["champion"]["comparison"]["auc_difference_ci"][1]
    assert f"{high:+.3f}]" in auc_reason
    client = MlflowClient(tracking.tracking_uri)
    assert client.get_model_version("churn_model", "2").tags["promotion"] == "rejected"


def test_a_backfilled_older_cutoff_never_replaces_a_newer_champion(tracking, table):
    newer = train_churn_model(table.drop(columns="usage"), seed=0)  # a weak champion
    tracking.promote(register(tracking, newer, cutoff_of(table)), "newer")
    older = train_churn_model(up_to(table, 12), seed=0)  # better, but of an earlier cutoff
    inputs, decision = challenge(tracking, older, cutoff_of(up_to(table, 12)))
    assert inputs["champion"]["status"] == NEWER_CHAMPION
    assert not decision.passed and tracking.champion_version() == "1"
    assert "a backfill registers a version but never replaces a newer champion" in decision.description
    client = MlflowClient(tracking.tracking_uri)
    assert client.get_model_version("churn_model", "2").tags["promotion"] == "rejected"


def test_a_champion_without_a_recorded_fit_cutoff_is_not_compared(tracking, table):
    legacy = train_churn_model(up_to(table, 12), seed=0)
    tracking.promote(register(tracking, legacy, cutoff_of(up_to(table, 12)), record_split=False), "legacy")
    model = train_churn_model(table, seed=0)
    inputs, decision = challenge(tracking, model, cutoff_of(table))
    assert inputs["champion"]["status"] == NO_FIT_CUTOFF and "comparison" not in inputs["champion"]
    assert decision.passed and tracking.champion_version() == "2"
    assert "champion v1 has no recorded fit cutoff" in decision.description
    assert "judged on its own floors" in decision.description
