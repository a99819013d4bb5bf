"""Feature drift: population stability index (PSI) of each numeric feature against training data."""

from __future__ import annotations

import numpy as np
import pandas as pd

# The usual reading of PSI: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
DEFAULT_PSI_THRESHOLD = 0.25
# The numeric customer features watched for drift.
DRIFT_FEATURES = [
    "events_7d",
    "events_30d",
    "sessions_30d",
    "spend_30d",
    "active_days_30d",
    "tickets_30d",
    "mean_sentiment_30d",
    "days_since_last_event",
    "activity_trend",
]


def population_stability_index(expected: pd.Series, actual: pd.Series, bins: int = 10) -> float:
    """PSI over the expected sample's quantile bins; missing values form a bin of their own."""
    expected, actual = pd.to_numeric(expected, errors="coerce"), pd.to_numeric(actual, errors="coerce")
    edges = (
        np.unique(np.nanquantile(expected.dropna(), np.linspace(0, 1, bins + 1)))
        if expected.notna().any()
        else np.array([])
    )

    def shares(values: pd.Series) -> np.ndarray:
        present = values.dropna().to_numpy()
        counts = (
            np.histogram(np.clip(present, edges[0], edges[-1]), bins=edges)[0]
            if len(edges) > 1
            else np.array([len(present)])
        )
        counts = np.append(counts, values.isna().sum())
        return np.maximum(counts / max(len(values), 1), 1e-4)  # floor: empty bins would be infinite

    e, a = shares(expected), shares(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> dict[str, float]:
    return {
        c: round(population_stability_index(reference[c], current[c]), 4) for c in columns if c in current
    }


def drift_by_day(
    reference: pd.DataFrame, features: pd.DataFrame, psi_threshold: float, columns: list[str] = DRIFT_FEATURES
) -> pd.DataFrame:
    """One row per as-of date and feature: the PSI of the day's active customers against the
    reference (the training set), and whether it is above the threshold."""
    rows = []
    for as_of_date, day in features[features["is_active"]].groupby("as_of_date", sort=True):
        for feature, psi in feature_drift(reference, day, columns).items():
            rows.append(
                {"as_of_date": as_of_date, "feature": feature, "psi": psi, "drifted": psi > psi_threshold}
            )
    return pd.DataFrame(rows, columns=["as_of_date", "feature", "psi", "drifted"])
