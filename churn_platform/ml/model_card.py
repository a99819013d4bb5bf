"""A short Markdown model card per registered version: data, split, metrics with intervals, top
features and, once the gate has run, its decision. Logged to the MLflow run as ``model_card.md``
and shown in Dagster's metadata."""

from __future__ import annotations

from typing import Any

import pandas as pd

CARD_PATH = "model_card.md"
PENDING = "_Pending: the `promotion_gate` check of this materialization decides._"


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_model_card(
    model_name: str,
    version: str,
    training_cutoff: str,
    as_of_dates: list[str],
    split: dict[str, Any],
    metrics: dict[str, float],
    roc_auc_ci: list[float],
    costs: dict[str, float],
    importances: pd.Series,
    gate_inputs: dict[str, Any],
    top_features: int = 5,
) -> str:
    """The card without the gate's decision (``with_decision`` adds it)."""
    window = f"{as_of_dates[0]} .. {as_of_dates[-1]}" if as_of_dates else "unknown"
    lines = [
        f"# Model card: {model_name} version {version}",
        "",
        "## Data",
        f"- training cutoff (partition): {training_cutoff}",
        f"- as-of dates: {window} ({len(as_of_dates)} snapshots), "
        f"{split['fit_rows'] + split['evaluation_rows']} rows used",
        "",
        "## Split",
        f"- kind: **{split['kind']}**" + (f" ({split['reason']})" if split.get("reason") else ""),
        f"- fitted on as-of dates up to {split['fit_cutoff']}: {split['fit_rows']} rows, "
        f"churn rate {split['fit_churn_rate']:.3f}",
        f"- evaluated on {', '.join(split['evaluation_dates']) or 'n/a'}: {split['evaluation_rows']} rows, "
        f"churn rate {split['evaluation_churn_rate']:.3f} (purge: {split['purge_days']} days)",
        "- the registered model is the model evaluated here (not refitted on the evaluation rows)",
        "",
        "## Metrics on the evaluation rows",
        "| metric | value |",
        "|---|---|",
        f"| ROC AUC | {metrics['roc_auc']:.3f} (95% CI {roc_auc_ci[0]:.3f} .. {roc_auc_ci[1]:.3f}) |",
        f"| PR AUC | {metrics['pr_auc']:.3f} (churn rate {metrics['positive_rate']:.3f}) |",
        f"| Brier | {metrics['brier']:.4f} |",
        f"| expected saving per customer | {metrics.get('expected_saving_per_customer', 0.0):.2f} "
        f"(total {metrics.get('expected_saving', 0.0):.0f}) |",
        f"| best threshold | {_fmt(metrics.get('best_threshold', 'none (no offer pays off)'))}, "
        f"flags {metrics.get('flagged_rate_at_best_threshold', 0.0):.1%} |",
        "",
        f"Costs: missed churner {costs['missed_churner']:g}, retention offer {costs['retention_offer']:g}.",
        "",
        f"## Top features (permutation importance, drop in ROC AUC; top {top_features})",
    ]
    lines += [
        f"{i}. `{name}`: {value:.4f}"
        for i, (name, value) in enumerate(importances.head(top_features).items(), 1)
    ]
    lines += ["", "## Comparison with the champion"]
    champion = gate_inputs.get("champion")
    if champion is None:
        lines.append("- no champion at training time")
    elif champion.get("status") == "compared":
        comparison, theirs = champion["comparison"], champion["metrics"]
        auc_ci, saving_ci = comparison["auc_difference_ci"], comparison["saving_difference_ci"]
        lines += [
            f"- champion v{champion['version']} (fit cutoff {champion['fit_cutoff']}) on the same "
            f"{comparison['rows']} unseen rows: ROC AUC {theirs['roc_auc']:.3f}, expected saving per customer "
            f"{theirs.get('expected_saving_per_customer', 0.0):.2f}",
            f"- ROC AUC difference (this - champion) {comparison['auc_difference']:+.3f}, "
            f"{100 * comparison['confidence']:.0f}% CI {auc_ci[0]:+.3f} .. {auc_ci[1]:+.3f} "
            f"(paired bootstrap, {comparison['resamples']} resamples)",
            f"- saving difference per customer {comparison['saving_difference_per_customer']:+.2f}, "
            f"CI {saving_ci[0]:+.2f} .. {saving_ci[1]:+.2f}",
        ]
    else:
        lines.append(f"- champion v{champion['version']}: not compared ({champion['status']})")
        lines += [f"  - {problem}" for problem in champion.get("problems", [])]
    lines += ["", "## Promotion gate", PENDING]
    return "\n".join(lines) + "\n"


def with_decision(card: str, passed: bool, reasons: list[str], notes: list[str]) -> str:
    """The card with the gate's decision in place of the pending line."""
    decision = ["**promoted to champion**" if passed else "**not promoted**"]
    decision += [f"- reason: {r}" for r in reasons] + [f"- {n}" for n in notes]
    return card.replace(PENDING, "\n".join(decision))
