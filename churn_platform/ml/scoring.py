"""ml/churn_scores: churn probabilities for the active customers of a day."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from churn_platform.ml.training import AS_OF_COLUMN

SCORE_COLUMNS = {
    "as_of_date": "object",
    "customer_id": "int64",
    "churn_probability": "float64",
    "risk_rank": "int64",  # 1 = most likely to churn that day
    "model_version": "string",
}


# A faster function giving the pipeline's probabilities bit for bit (the scoring service's compiled
# copy, serving/fast_path.py), or None for a frame it leaves to the pipeline.
FastPredict = Callable[[pd.DataFrame], np.ndarray | None]


def predict_with(pipeline, frame: pd.DataFrame, fast: FastPredict | None = None) -> np.ndarray:
    """Churn probabilities from a fitted pipeline, selecting the columns it was trained on; from
    ``fast`` instead when it is given and answers (it reads the columns by name)."""
    columns = list(pipeline.feature_names_in_)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"features missing for scoring: {missing}")
    if fast is not None:
        probabilities = fast(frame)
        if probabilities is not None:
            return probabilities
    return pipeline.predict_proba(frame[columns])[:, 1]


def score_customers(
    predict: Callable[[pd.DataFrame], np.ndarray], features: pd.DataFrame, model_version: str
) -> pd.DataFrame:
    active = features[features["is_active"]].reset_index(drop=True)
    scores = pd.DataFrame(
        {
            AS_OF_COLUMN: active[AS_OF_COLUMN],
            "customer_id": active["customer_id"],
            "churn_probability": predict(active) if len(active) else [],
        }
    )
    scores["risk_rank"] = (
        scores.groupby(AS_OF_COLUMN)["churn_probability"].rank(method="first", ascending=False)
    ).fillna(0)
    scores["model_version"] = model_version
    return scores.astype(SCORE_COLUMNS).sort_values([AS_OF_COLUMN, "risk_rank"]).reset_index(drop=True)
