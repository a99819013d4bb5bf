"""The promotion gate: may a newly trained model (the challenger) replace the champion? Its
inputs, its rule and its decision, as plain functions that the model asset and the gate check call.

The comparison is fair only on rows neither model has learnt from: the challenger's evaluation
rows, provided each of them is at least one label horizon after both models' fit cutoffs
(``unseen_rows_problems``). There, both models are scored, and a paired, label-stratified
bootstrap gives confidence intervals of the challenger-minus-champion differences in ROC AUC and in
expected saving per customer. The gate rejects only when a whole interval lies below minus its
tolerance: the challenger is then worse with confidence, not by noise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from churn_platform.ml.business import Costs, best_threshold, row_savings
from churn_platform.ml.scoring import predict_with
from churn_platform.ml.training import EvaluationSplit, Holdout, evaluate, threshold_metrics
from churn_platform.orchestration.partitions import LABEL_HORIZON_DAYS

# What became of the champion in the gate's inputs.
COMPARED = "compared"
NO_FIT_CUTOFF = "no_fit_cutoff"  # registered before out-of-time evaluation: not comparable
NEWER_CHAMPION = "newer_champion"  # the challenger is a backfill of an earlier cutoff
ROWS_NOT_UNSEEN = "rows_not_unseen"  # the comparison rows overlap a model's fitted label windows


@dataclass(frozen=True)
class GateThresholds:
    min_roc_auc: float = 0.70
    min_pr_auc_lift: float = 1.5  # PR AUC at least this multiple of the churn base rate
    # Rejected when the upper bound of the interval of (challenger - champion) ROC AUC is below
    # minus this: the challenger is worse than the champion by more than this, with confidence.
    auc_tolerance: float = 0.02
    # The same rule on the expected saving per evaluated customer (in the cost settings' currency).
    saving_tolerance: float = 0.0
    # The challenger's expected saving per customer at its best threshold must be above this.
    min_expected_saving: float = 0.0
    min_probability_std: float = 1e-3  # below this the scores have collapsed to a constant


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0


def prediction_health(probabilities: np.ndarray) -> dict[str, float]:
    values = np.asarray(probabilities, dtype=float)
    finite = values[np.isfinite(values)]
    return {
        "nan_count": float(np.count_nonzero(~np.isfinite(values))),
        "min": float(finite.min()) if finite.size else float("nan"),
        "max": float(finite.max()) if finite.size else float("nan"),
        "std": float(finite.std()) if finite.size else 0.0,
    }


def business_metrics(labels: np.ndarray, probabilities: np.ndarray, costs: Costs) -> dict[str, float]:
    """Expected saving at the best threshold on these rows, as metrics (floats only)."""
    best = best_threshold(labels, probabilities, costs)
    metrics = {k: float(v) for k, v in best.items() if v is not None}
    return metrics


def evaluation_metrics(model: Any, decision_threshold: float, costs: Costs) -> dict[str, float]:
    """A trained model's metrics on its evaluation rows: ranking and calibration, precision/recall
    at the decision threshold, expected saving, and the churn rates of both sides of its split."""
    holdout, split = model.holdout, model.split
    return {
        **model.metrics,
        **threshold_metrics(holdout.labels, holdout.probabilities, decision_threshold),
        **business_metrics(holdout.labels, holdout.probabilities, costs),
        "fit_churn_rate": split.fit_churn_rate,
        "evaluation_churn_rate": split.evaluation_churn_rate,
    }


# -- the unseen-rows check -------------------------------------------------------------------------------
def _day(value: str) -> dt.date:
    return dt.date.fromisoformat(str(value)[:10])


def unseen_rows_problems(
    comparison_dates: list[str], fit_cutoffs: dict[str, str | None], horizon_days: int = LABEL_HORIZON_DAYS
) -> list[str]:
    """Why the comparison rows are not unseen by every model, or [] when they are.

    A row as of ``d`` is unseen by a model fitted on as-of dates up to ``cutoff`` when
    ``d >= cutoff + horizon_days``: the row is not among the fitted ones and its label window
    (d, d + horizon] does not overlap any fitted label window. ``fit_cutoffs``: model -> cutoff."""
    if not comparison_dates:
        return ["the comparison rows have no recorded as-of dates"]
    problems = []
    first = min(_day(d) for d in comparison_dates)
    for model, cutoff in fit_cutoffs.items():
        if not cutoff:
            problems.append(f"{model} has no recorded fit cutoff")
            continue
        earliest_unseen = _day(cutoff) + dt.timedelta(days=horizon_days)
        if first < earliest_unseen:
            overlapping = sorted({d for d in comparison_dates if _day(d) < earliest_unseen})
            problems.append(
                f"comparison rows as of {', '.join(overlapping)} lie within {horizon_days} days of "
                f"{model}'s fit cutoff {cutoff} (unseen rows start {earliest_unseen})"
            )
    return problems


# -- the paired bootstrap --------------------------------------------------------------------------------
def _auc_rows(scores: np.ndarray, positives: int) -> np.ndarray:
    """ROC AUC of each row of ``scores``, whose first ``positives`` columns are the churners
    (Mann-Whitney U from ranks, ties averaged)."""
    ranks = rankdata(scores, axis=1)
    negatives = scores.shape[1] - positives
    u = ranks[:, :positives].sum(axis=1) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def _stratified_resamples(y: np.ndarray, settings: BootstrapSettings) -> tuple[np.ndarray, int]:
    """Row indices of each resample (one per row of the result), churners first, and how many
    churners each holds: churners and retained customers are resampled separately, so every
    resample keeps the churn rate of the rows."""
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    rng = np.random.default_rng(settings.seed)
    idx = np.hstack(
        [
            pos[rng.integers(0, len(pos), (settings.resamples, len(pos)))],
            neg[rng.integers(0, len(neg), (settings.resamples, len(neg)))],
        ]
    )
    return idx, len(pos)


def _percentiles(values: np.ndarray, confidence: float) -> list[float]:
    tail = 100 * (1 - confidence) / 2
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def auc_interval(
    labels: np.ndarray, probabilities: np.ndarray, settings: BootstrapSettings = BootstrapSettings()
) -> list[float]:
    """A percentile bootstrap interval of one model's ROC AUC on these rows."""
    y = np.asarray(labels, dtype=bool)
    idx, positives = _stratified_resamples(y, settings)
    return _percentiles(_auc_rows(np.asarray(probabilities, float)[idx], positives), settings.confidence)


def paired_bootstrap(
    labels: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    challenger_threshold: float | None,
    champion_threshold: float | None,
    costs: Costs,
    settings: BootstrapSettings = BootstrapSettings(),
) -> dict[str, Any]:
    """Differences challenger - champion on the same rows, with percentile intervals from a
    bootstrap that resamples rows (the same rows for both models), churners and retained
    customers separately so each resample keeps the churn rate. Saving: per customer, each model
    at its own best threshold on the full rows."""
    y = np.asarray(labels, dtype=bool)
    idx, positives = _stratified_resamples(y, settings)
    challenger, champion = np.asarray(challenger, float), np.asarray(champion, float)
    auc_diff = _auc_rows(challenger[idx], positives) - _auc_rows(champion[idx], positives)
    saving_diff_rows = row_savings(y, challenger, challenger_threshold, costs) - row_savings(
        y, champion, champion_threshold, costs
    )
    saving_diff = saving_diff_rows[idx].mean(axis=1)
    order = np.hstack([np.flatnonzero(y), np.flatnonzero(~y)])
    point_auc = float(
        _auc_rows(challenger[order][None, :], positives)[0]
        - _auc_rows(champion[order][None, :], positives)[0]
    )
    return {
        "rows": int(len(y)),
        "resamples": settings.resamples,
        "confidence": settings.confidence,
        "seed": settings.seed,
        "auc_difference": point_auc,
        "auc_difference_ci": _percentiles(auc_diff, settings.confidence),
        "saving_difference_per_customer": float(saving_diff_rows.mean()),
        "saving_difference_ci": _percentiles(saving_diff, settings.confidence),
    }


# -- the gate's inputs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Challenger:
    """A newly trained model as the gate sees it."""

    version: str
    training_cutoff: str
    split: EvaluationSplit
    metrics: dict[str, float]  # on its evaluation rows, business metrics included
    holdout: Holdout


def compare_with_champion(
    challenger: Challenger,
    champion: dict[str, Any] | None,
    load_champion,
    costs: Costs,
    bootstrap: BootstrapSettings = BootstrapSettings(),
    horizon_days: int = LABEL_HORIZON_DAYS,
) -> dict[str, Any] | None:
    """The champion's part of the gate's inputs. ``champion``: its version and registry tags (None
    when there is none); ``load_champion()`` returns its pipeline, called only when the comparison
    is fair."""
    if champion is None:
        return None
    tags = champion.get("tags", {})
    record: dict[str, Any] = {
        "version": champion["version"],
        "training_cutoff": champion.get("training_cutoff"),
        "fit_cutoff": tags.get("fit_cutoff") or None,
    }
    champion_cutoff = record["training_cutoff"]
    if champion_cutoff and _day(challenger.training_cutoff) < _day(champion_cutoff):
        return {**record, "status": NEWER_CHAMPION}
    if not record["fit_cutoff"]:
        return {**record, "status": NO_FIT_CUTOFF}
    problems = unseen_rows_problems(
        challenger.split.evaluation_dates,
        {
            f"challenger v{challenger.version}": challenger.split.fit_cutoff,
            f"champion v{champion['version']}": record["fit_cutoff"],
        },
        horizon_days,
    )
    if problems:
        return {**record, "status": ROWS_NOT_UNSEEN, "problems": problems}
    holdout = challenger.holdout
    champion_p = predict_with(load_champion(), holdout.features)
    champion_metrics = {
        **evaluate(holdout.labels, champion_p),
        **business_metrics(holdout.labels, champion_p, costs),
    }
    champion_threshold = best_threshold(holdout.labels, champion_p, costs)["best_threshold"]
    challenger_threshold = challenger.metrics.get("best_threshold")
    comparison = paired_bootstrap(
        holdout.labels,
        holdout.probabilities,
        champion_p,
        challenger_threshold,
        champion_threshold,
        costs,
        bootstrap,
    )
    return {**record, "status": COMPARED, "metrics": champion_metrics, "comparison": comparison}


def gate_inputs(
    challenger: Challenger,
    champion: dict[str, Any] | None,
    load_champion,
    costs: Costs,
    bootstrap: BootstrapSettings = BootstrapSettings(),
    horizon_days: int = LABEL_HORIZON_DAYS,
) -> dict[str, Any]:
    """What the gate decides on, assembled where the evaluation rows are at hand (the training
    step) and recorded in the model's metadata for the gate check. JSON-serializable."""
    return {
        "version": challenger.version,
        "training_cutoff": challenger.training_cutoff,
        "split": dataclasses.asdict(challenger.split),
        "candidate": challenger.metrics,
        "costs": {"missed_churner": costs.missed_churner, "retention_offer": costs.retention_offer},
        "health": prediction_health(challenger.holdout.probabilities),
        "champion": compare_with_champion(
            challenger, champion, load_champion, costs, bootstrap, horizon_days
        ),
    }


# -- the rule --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]  # why it was rejected (empty when it passed)
    notes: list[str] = field(default_factory=list)  # what it was judged on


def _interval(values: list[float], digits: int = 3) -> str:
    return f"[{values[0]:+.{digits}f}, {values[1]:+.{digits}f}]"


def evaluate_gate(inputs: dict[str, Any], thresholds: GateThresholds) -> GateResult:
    """Floors on the challenger's own metrics, then the comparison with the champion."""
    candidate, health, split = inputs["candidate"], inputs["health"], inputs.get("split") or {}
    reasons, notes = [], []
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
    saving = candidate.get("expected_saving_per_customer")
    if saving is not None and not saving > thresholds.min_expected_saving:
        costs = inputs.get("costs", {})
        reasons.append(
            f"expected saving {saving:.2f} per customer at the best threshold is not above the floor "
            f"{thresholds.min_expected_saving:.2f} (missed churner {costs.get('missed_churner')}, "
            f"retention offer {costs.get('retention_offer')})"
        )
    if split.get("kind") and split["kind"] != "out_of_time":
        notes.append(
            f"evaluated in-window, not out of time ({split.get('reason')}): its metrics are optimistic"
        )

    champion = inputs["champion"]
    if champion is None:
        notes.append("no champion yet: judged on its own floors")
        return GateResult(not reasons, reasons, notes)
    name, status = f"champion v{champion['version']}", champion["status"]
    if status == NEWER_CHAMPION:
        reasons.append(
            f"trained on cutoff {inputs['training_cutoff']}, earlier than {name}'s cutoff "
            f"{champion['training_cutoff']}: a backfill registers a version but never replaces a newer champion"
        )
    elif status == NO_FIT_CUTOFF:
        notes.append(
            f"{name} has no recorded fit cutoff (registered before out-of-time evaluation): "
            "not compared, the challenger is judged on its own floors"
        )
    elif status == ROWS_NOT_UNSEEN:
        reasons.append(
            f"unseen-rows check failed, the comparison with {name} would not be fair: "
            + "; ".join(champion["problems"])
        )
    else:
        comparison, theirs = champion["comparison"], champion["metrics"]
        level = f"{100 * comparison['confidence']:.0f}% CI"
        auc_ci, saving_ci = comparison["auc_difference_ci"], comparison["saving_difference_ci"]
        auc_text = (
            f"ROC AUC {candidate['roc_auc']:.3f} vs {name} {theirs['roc_auc']:.3f} on the same "
            f"{comparison['rows']} unseen rows: difference {comparison['auc_difference']:+.3f}, {level} "
            f"{_interval(auc_ci)}"
        )
        saving_text = (
            f"expected saving per customer {candidate.get('expected_saving_per_customer', 0.0):.2f} vs "
            f"{theirs.get('expected_saving_per_customer', 0.0):.2f}: difference "
            f"{comparison['saving_difference_per_customer']:+.2f}, {level} {_interval(saving_ci, 2)}"
        )
        if auc_ci[1] < -thresholds.auc_tolerance:
            reasons.append(f"{auc_text} lies below -{thresholds.auc_tolerance} (the AUC tolerance)")
        else:
            notes.append(auc_text)
        if saving_ci[1] < -thresholds.saving_tolerance:
            reasons.append(f"{saving_text} lies below -{thresholds.saving_tolerance} (the saving tolerance)")
        else:
            notes.append(saving_text)
    return GateResult(not reasons, reasons, notes)


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    version: str
    description: str
    reasons: list[str]
    notes: list[str]
    champion_roc_auc: float | None  # the champion's ROC AUC on the same unseen rows, if compared


def decide_promotion(inputs: dict[str, Any], thresholds: GateThresholds, tracking) -> GateDecision:
    """Run the gate on recorded inputs and act on it: promote the version to champion, or tag it
    rejected with the reasons. ``tracking`` is an MLflowTracking resource."""
    result = evaluate_gate(inputs, thresholds)
    version, champion = inputs["version"], inputs["champion"]
    context = ("; " + "; ".join(result.notes)) if result.notes else ""
    if result.passed:
        previous = champion["version"] if champion else None
        description = (
            f"promoted version {version} to champion" + (f" (was {previous})" if previous else "") + context
        )
        tracking.promote(version, description)
    else:
        description = f"version {version} not promoted: " + "; ".join(result.reasons) + context
        tracking.reject(version, result.reasons)
    compared = champion is not None and champion.get("status") == COMPARED
    return GateDecision(
        result.passed,
        version,
        description,
        result.reasons,
        result.notes,
        champion["metrics"]["roc_auc"] if compared else None,
    )
