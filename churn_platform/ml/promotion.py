"""The promotion gate: may a newly trained model replace the champion? Its inputs, its rule
and its decision, as plain functions that the model asset and the gate check call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from churn_platform.ml.scoring import predict_with
from churn_platform.ml.training import Holdout, evaluate


@dataclass(frozen=True)
class GateThresholds:
    min_roc_auc: float = 0.70
    min_pr_auc_lift: float = 1.5  # PR AUC at least this multiple of the churn base rate
    max_auc_drop_vs_champion: float = 0.02
    min_probability_std: float = 1e-3  # below this the scores have collapsed to a constant


def prediction_health(probabilities: np.ndarray) -> dict[str, float]:
    values = np.asarray(probabilities, dtype=float)
    finite = values[np.isfinite(values)]
    return {
        "nan_count": float(np.count_nonzero(~np.isfinite(values))),
        "min": float(finite.min()) if finite.size else float("nan"),
        "max": float(finite.max()) if finite.size else float("nan"),
        "std": float(finite.std()) if finite.size else 0.0,
    }


def evaluate_gate(
    candidate: dict[str, float],
    health: dict[str, float],
    champion: dict[str, Any] | None,
    thresholds: GateThresholds,
) -> tuple[bool, list[str]]:
    """(passed, reasons it failed). ``champion`` holds the champion's metrics on the candidate's
    hold-out (same evaluation data) and its version, or is None when there is no champion yet."""
    reasons = []
    if health["nan_count"] > 0:
        reasons.append(f"{int(health['nan_count'])} predictions are NaN")
    if not (health["min"] >= 0.0 and health["max"] <= 1.0):
        reasons.append(f"probabilities outside [0, 1] (min {health['min']:.3f}, max {health['max']:.3f})")
    if health["std"] < thresholds.min_probability_std:
        reasons.append(
            f"score distribution collapsed (std {health['std']:.2e} < {thresholds.min_probability_std:.0e})"
        )
    if candidate["roc_auc"] < thresholds.min_roc_auc:
        reasons.append(f"ROC AUC {candidate['roc_auc']:.3f} is below the floor {thresholds.min_roc_auc:.2f}")
    floor = thresholds.min_pr_auc_lift * candidate["positive_rate"]
    if candidate["pr_auc"] < floor:
        reasons.append(
            f"PR AUC {candidate['pr_auc']:.3f} is below {thresholds.min_pr_auc_lift}x the churn rate ({floor:.3f})"
        )
    if champion is not None:
        drop = champion["roc_auc"] - candidate["roc_auc"]
        if drop > thresholds.max_auc_drop_vs_champion:
            reasons.append(
                f"ROC AUC {candidate['roc_auc']:.3f} is {drop:.3f} below champion v{champion['version']} "
                f"({champion['roc_auc']:.3f}) on the same hold-out; allowed drop {thresholds.max_auc_drop_vs_champion}"
            )
    return not reasons, reasons


def champion_on_holdout(tracking, holdout: Holdout) -> dict[str, Any] | None:
    """The current champion's metrics on the candidate's hold-out (the same evaluation data), or
    None when there is no champion yet. ``tracking`` is an MLflowTracking resource."""
    version = tracking.champion_version()
    if version is None:
        return None
    pipeline = tracking.load_version(version)
    return {"version": version, **evaluate(holdout.labels, predict_with(pipeline, holdout.features))}


def gate_inputs(version: str, candidate: dict[str, float], holdout: Holdout, tracking) -> dict[str, Any]:
    """What the gate decides on, assembled where the hold-out is at hand (the training step) and
    recorded in the model's metadata for the gate check."""
    return {
        "version": version,
        "candidate": candidate,
        "health": prediction_health(holdout.probabilities),
        "champion": champion_on_holdout(tracking, holdout),
    }


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    version: str
    description: str
    reasons: list[str]
    champion_roc_auc: float | None  # the champion's ROC AUC on the same hold-out, if there was one


def decide_promotion(inputs: dict[str, Any], thresholds: GateThresholds, tracking) -> GateDecision:
    """Run the gate on recorded inputs and act on it: promote the version to champion, or tag it
    rejected with the reasons. ``tracking`` is an MLflowTracking resource."""
    passed, reasons = evaluate_gate(inputs["candidate"], inputs["health"], inputs["champion"], thresholds)
    version, champion = inputs["version"], inputs["champion"]
    if passed:
        previous = champion["version"] if champion else None
        description = f"promoted version {version} to champion" + (f" (was {previous})" if previous else "")
        tracking.promote(version, description)
    else:
        description = f"version {version} not promoted: " + "; ".join(reasons)
        tracking.reject(version, reasons)
    return GateDecision(passed, version, description, reasons, champion["roc_auc"] if champion else None)
