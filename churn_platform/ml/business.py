"""The money a churn model saves: flag the customers above a threshold for a retention offer.

Against doing nothing (every churner is lost), flagging a customer costs the offer and, if they
were going to churn, saves the cost of a missed churner. The expected saving at a threshold is
``churners flagged x cost_missed_churner - customers flagged x cost_retention_offer``; the best
threshold is the one that maximises it on the evaluation rows (flagging nobody saves 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Costs:
    missed_churner: float
    retention_offer: float

    def __post_init__(self) -> None:
        if not (0 < self.retention_offer < self.missed_churner):
            raise ValueError("need 0 < cost of a retention offer < cost of a missed churner")


def row_savings(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float | None, costs: Costs
) -> np.ndarray:
    """Each row's contribution to the saving when customers at or above ``threshold`` are flagged
    (nobody when it is None)."""
    flagged = np.asarray(probabilities) >= (np.inf if threshold is None else threshold)
    value = np.where(np.asarray(labels, dtype=bool), costs.missed_churner, 0.0) - costs.retention_offer
    return np.where(flagged, value, 0.0)


def best_threshold(labels: np.ndarray, probabilities: np.ndarray, costs: Costs) -> dict[str, float | None]:
    """The threshold with the largest expected saving on these rows, with that saving (total and
    per customer) and the share of customers it flags. When flagging anyone
    loses money; then ``best_threshold`` is None and nobody is flagged."""
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(probabilities, dtype=float)
    order = np.argsort(-p, kind="stable")
    ranked = p[order]
    saving = np.cumsum(np.where(y[order], costs.missed_churner, 0.0) - costs.retention_offer)
    # A threshold flags every row with the same probability: only the last row of a tie counts.
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    k = ends[np.argmax(saving[ends])] if len(ends) else -1
    if k < 0 or saving[k] <= 0:
        threshold, total, flagged = None, 0.0, 0
    else:
        threshold, total, flagged = float(ranked[k]), float(saving[k]), int(k + 1)
    return {
        "best_threshold": threshold,
        "expected_saving": total,
        "expected_saving_per_customer": total / max(len(p), 1),
        "flagged_rate_at_best_threshold": flagged / max(len(p), 1),
    }
