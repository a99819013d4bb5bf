"""Evaluation plots logged with each training run: ROC, precision-recall, calibration, importance."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or in CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import precision_recall_curve, roc_curve


def permutation_importances(
    pipeline, features: pd.DataFrame, y: np.ndarray, seed: int, rows: int = 3000
) -> pd.Series:
    """Mean drop in ROC AUC when each feature is shuffled, largest first, on a sample of the rows:
    model-agnostic, and bounded in cost on big evaluation sets."""
    sample = min(rows, len(features))
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(features), size=sample, replace=False)
    result = permutation_importance(
        pipeline, features.iloc[idx], y[idx], scoring="roc_auc", n_repeats=3, random_state=seed
    )
    return pd.Series(result.importances_mean, index=list(features.columns)).sort_values(ascending=False)


def evaluation_figures(
    y: np.ndarray,
    p: np.ndarray,
    pipeline,
    features: pd.DataFrame,
    seed: int,
    importance_rows: int = 3000,
    importances: pd.Series | None = None,
) -> dict[str, plt.Figure]:
    """ROC, precision-recall, calibration and permutation importance (computed unless given)."""
    figures = {}
    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fpr, tpr), ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    figures["roc_curve.png"] = fig

    precision, recall, _ = precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision), ax.axhline(y.mean(), linestyle="--", color="grey")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    figures["precision_recall_curve.png"] = fig

    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(predicted, observed, marker="o"), ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="predicted churn probability", ylabel="observed churn rate", title="Calibration")
    figures["calibration.png"] = fig

    if importances is None:
        importances = permutation_importances(pipeline, features, y, seed, importance_rows)
    ordered = importances.sort_values()
    fig, ax = plt.subplots(figsize=(6, max(3, 0.25 * len(ordered))))
    ax.barh(np.array(ordered.index), ordered.to_numpy())
    ax.set(xlabel="drop in ROC AUC when shuffled", title="Permutation importance")
    fig.tight_layout()
    figures["feature_importance.png"] = fig
    return figures
