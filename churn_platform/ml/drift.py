"""Feature drift: population stability index (PSI) of each numeric feature against training data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

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


def drift_summary_by_day(drift: pd.DataFrame) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Each as-of date's largest PSI and its drifted features (a range run records these for every
    day, so each partition's own figures can be read from any of its materializations)."""
    max_psi, drifted = {}, {}
    for as_of_date, day in drift.groupby(drift["as_of_date"].astype(str), sort=True):
        max_psi[as_of_date] = float(day["psi"].max())
        drifted[as_of_date] = sorted(day.loc[day["drifted"], "feature"])
    return max_psi, drifted


@dataclass(frozen=True)
class DriftStreak:
    """Consecutive days, ending on the newest day measured, whose largest PSI was above the threshold."""

    start: str
    end: str
    max_psi: float
    features: list[str]
    threshold: float

    @property
    def days(self) -> int:
        return (dt.date.fromisoformat(self.end) - dt.date.fromisoformat(self.start)).days + 1

    def reason(self) -> str:
        return (
            f"feature drift above PSI {self.threshold} on {self.days} consecutive days "
            f"({self.start}..{self.end}; largest PSI {self.max_psi:.3f}; features: {', '.join(self.features)})"
        )


def drift_streak(
    max_psi_by_day: Mapping[str, float],
    drifted_features_by_day: Mapping[str, list[str]],
    threshold: float,
    min_days: int,
) -> DriftStreak | None:
    """The streak of drifted days that ends on the newest measured day, if it is at least
    ``min_days`` long; a day not measured breaks a streak, as a day below the threshold does."""
    if min_days < 1 or not max_psi_by_day:
        return None
    day = dt.date.fromisoformat(max(max_psi_by_day))
    end, days = day.isoformat(), []
    while day.isoformat() in max_psi_by_day and max_psi_by_day[day.isoformat()] > threshold:
        days.append(day.isoformat())
        day -= dt.timedelta(days=1)
    if len(days) < min_days:
        return None
    features = sorted({f for d in days for f in drifted_features_by_day.get(d, [])})
    return DriftStreak(days[-1], end, max(max_psi_by_day[d] for d in days), features, threshold)


def prediction_drift(
    reference: pd.Series, served: pd.Series, psi_threshold: float
) -> dict[str, float | int | bool | None]:
    """The PSI of the probabilities the service answered against the batch scores of the features
    it served from (every active customer), with both means; no served prediction, no PSI.

    A shift here without feature drift means the callers ask about other customers than the
    population (e.g. the CRM asks about customers who complain): read it next to feature drift."""
    served = served.dropna()
    psi = round(population_stability_index(reference, served), 4) if len(served) else None
    return {
        "served_predictions": int(len(served)),
        "reference_customers": int(len(reference)),
        "served_mean": float(served.mean()) if len(served) else None,
        "reference_mean": float(reference.mean()) if len(reference) else None,
        "psi": psi,
        "psi_threshold": psi_threshold,
        "drifted": psi is not None and psi > psi_threshold,
    }
