import datetime as dt

import pandas as pd
import pytest

from churn_platform.ml.labels import compute_churn_labels
from churn_platform.ml.scoring import score_customers
from churn_platform.ml.training import (
    TrainingDataError,
    build_training_set,
    train_churn_model,
    training_as_of_dates,
)
from churn_platform_tests.support.data import synthetic_table

D = dt.date


def future_activity(rows):
    return pd.DataFrame(rows, columns=["customer_id", "activity_date", "cancellations"])


def test_labels_look_exactly_30_days_past_the_as_of_date():
    as_of = D(2026, 3, 1)
    activity = future_activity(
        [
            (1, as_of + dt.timedelta(days=5), 1),  # cancels inside the horizon
            (2, as_of + dt.timedelta(days=30), 1),  # on the last day of the horizon
            (3, as_of + dt.timedelta(days=31), 1),  # too late
            (3, as_of + dt.timedelta(days=2), 0),
            (4, as_of, 1),  # on the as-of day itself: already churned, not a label
            (4, as_of + dt.timedelta(days=1), 0),
        ]
    )
    labels = compute_churn_labels(activity, [as_of.isoformat()]).set_index("customer_id")
    assert labels["churned"].to_dict() == {1: True, 2: True, 3: False, 4: False}
    assert labels.loc[1, "churn_date"] == as_of + dt.timedelta(days=5)


def test_training_as_of_dates_step_back_from_the_cutoff():
    assert training_as_of_dates("2026-03-31", window_days=15, step_days=7) == [
        "2026-03-17",
        "2026-03-24",
        "2026-03-31",
    ]


def test_training_set_keeps_active_customers_and_defaults_missing_labels_to_retained():
    features = pd.DataFrame(
        {
            "as_of_date": [D(2026, 3, 1)] * 3 + [D(2026, 3, 2)],
            "customer_id": [1, 2, 3, 1],
            "events_30d": [5, 0, 9, 5],
            "is_active": [True, False, True, True],
            "cancellations_30d": [0, 1, 0, 0],
        }
    )
    labels = pd.DataFrame({"as_of_date": [D(2026, 3, 1)], "customer_id": [1], "churned": [True]})
    table = build_training_set(features, labels, ["2026-03-01"])
    assert table[["customer_id", "churned"]].values.tolist() == [[1, True], [3, False]]
    assert "is_active" not in table and "cancellations_30d" not in table


def test_training_is_generic_handles_missing_values_and_learns_the_signal():
    model = train_churn_model(synthetic_table(), id_column="account", label_column="label", exclude=())
    assert model.numeric_columns == ["usage", "mood"] and model.categorical_columns == ["segment"]
    assert model.metrics["roc_auc"] > 0.85
    assert 0 <= model.metrics["brier"] < 0.15
    probabilities = model.predict_proba(synthetic_table(rows=50, seed=1))
    assert probabilities.shape == (50,) and ((probabilities >= 0) & (probabilities <= 1)).all()


def test_same_data_and_seed_give_the_same_metrics():
    table = synthetic_table()
    first = train_churn_model(table, id_column="account", label_column="label", exclude=(), seed=3)
    second = train_churn_model(table, id_column="account", label_column="label", exclude=(), seed=3)
    assert first.metrics == second.metrics


def test_too_few_churners_is_a_clear_error():
    table = synthetic_table(rows=200)
    table["label"] = False
    table.loc[:2, "label"] = True
    with pytest.raises(TrainingDataError, match="3 churned and 197 retained rows"):
        train_churn_model(table, id_column="account", label_column="label", exclude=())


def test_scores_cover_active_customers_with_ranks():
    table = synthetic_table()
    model = train_churn_model(table, id_column="account", label_column="label", exclude=())
    features = synthetic_table(rows=20, seed=5).assign(
        as_of_date=D(2026, 3, 1), customer_id=range(20), is_active=[True] * 15 + [False] * 5
    )
    scores = score_customers(model.predict_proba, features, model_version="2026-02-01:abc")
    assert len(scores) == 15 and sorted(scores["risk_rank"]) == list(range(1, 16))
    assert scores["churn_probability"].is_monotonic_decreasing
    assert set(scores["model_version"]) == {"2026-02-01:abc"}
