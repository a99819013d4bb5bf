"""Checks of the ml stage: the blocking promotion gate on ml/churn_model and the drift warning
on ml/feature_drift. The gate's logic lives in ``promotion.py``."""

import dagster as dg

from churn_platform.ml.model_card import CARD_PATH, with_decision
from churn_platform.ml.promotion import GateThresholds, decide_promotion
from churn_platform.orchestration import asset_keys as keys
from churn_platform.storage.materializations import latest_materialization
from churn_platform.storage.model_registry import MLflowTracking
from churn_platform.storage.parquet_io_manager import to_json_metadata


class PromotionGateConfig(dg.Config):
    min_roc_auc: float = GateThresholds.min_roc_auc
    min_pr_auc_lift: float = GateThresholds.min_pr_auc_lift
    # Reject when the whole confidence interval of (challenger - champion) lies below -tolerance.
    auc_tolerance: float = GateThresholds.auc_tolerance
    saving_tolerance: float = GateThresholds.saving_tolerance  # per customer
    min_expected_saving: float = GateThresholds.min_expected_saving  # per customer

    def thresholds(self) -> GateThresholds:
        return GateThresholds(
            min_roc_auc=self.min_roc_auc,
            min_pr_auc_lift=self.min_pr_auc_lift,
            auc_tolerance=self.auc_tolerance,
            saving_tolerance=self.saving_tolerance,
            min_expected_saving=self.min_expected_saving,
        )


def decision_markdown(passed: bool, reasons: list[str], notes: list[str]) -> str:
    """The gate's decision as the check's page shows it: the verdict, then one bullet per reason."""
    lines = ["**Promoted to champion**" if passed else "**Not promoted**: the champion is unchanged", ""]
    if reasons:
        lines += ["Reasons:", *(f"- {reason}" for reason in reasons), ""]
    if notes:
        lines += ["Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(lines).strip() + "\n"


@dg.asset_check(asset=keys.CHURN_MODEL, blocking=True, name=keys.PROMOTION_GATE.name)
def churn_model_promotion_gate(
    context: dg.AssetCheckExecutionContext, config: PromotionGateConfig, mlflow_tracking: MLflowTracking
) -> dg.AssetCheckResult:
    """Promote the new model version to `champion` only if its out-of-time metrics and expected
    saving clear the floors, its predictions are well-formed, it is not a backfill of a cutoff
    older than the champion's, and, compared with the champion on rows neither was fitted on, the
    confidence intervals of the differences in ROC AUC and saving do not lie wholly below minus
    their tolerances. A rejected version stays registered with the reasons; the champion is untouched."""
    # The partition's own materialization (a check given the asset as input would load the wrong one).
    entry = latest_materialization(context.instance, keys.CHURN_MODEL, context.partition_key)
    meta = entry.asset_materialization.metadata
    inputs = meta["gate_inputs"].value
    decision = decide_promotion(inputs, config.thresholds(), mlflow_tracking)
    candidate = inputs["candidate"]
    metadata = {
        "model_version": decision.version,
        # Rounded for people; the decision above used the full-precision inputs.
        "roc_auc": round(candidate["roc_auc"], 4),
        "expected_saving_per_customer": round(candidate.get("expected_saving_per_customer", 0.0), 2),
        "decision": dg.MetadataValue.md(decision_markdown(decision.passed, decision.reasons, decision.notes)),
        "reasons": to_json_metadata(decision.reasons),
        "notes": to_json_metadata(decision.notes),
    }
    champion = inputs["champion"]
    if champion is not None:
        metadata["champion_status"] = champion["status"]
    if decision.champion_roc_auc is not None:
        comparison = champion["comparison"]
        metadata.update(
            {
                "champion_roc_auc_same_rows": round(decision.champion_roc_auc, 4),
                "champion_expected_saving_per_customer": round(
                    champion["metrics"].get("expected_saving_per_customer", 0.0), 2
                ),
                "auc_difference": round(comparison["auc_difference"], 4),
                "auc_difference_ci": to_json_metadata(comparison["auc_difference_ci"]),
                "saving_difference_ci": to_json_metadata(comparison["saving_difference_ci"]),
            }
        )
    if "model_card" in meta:
        card = with_decision(meta["model_card"].value, decision.passed, decision.reasons, decision.notes)
        mlflow_tracking.log_text(meta["mlflow_run_id"].value, card, CARD_PATH)
        metadata["model_card"] = dg.MetadataValue.md(card)
    return dg.AssetCheckResult(passed=decision.passed, description=decision.description, metadata=metadata)


@dg.asset_check(asset=keys.FEATURE_DRIFT, name=keys.DRIFT_BELOW_THRESHOLD.name)
def drift_below_threshold(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """Warns when any feature of the materialized days drifted past the PSI threshold: a signal
    to retrain (the retraining schedule can select on this check)."""
    meta = latest_materialization(context.instance, keys.FEATURE_DRIFT).asset_materialization.metadata
    max_psi, threshold = float(meta["max_psi"].value), float(meta["psi_threshold"].value)
    return dg.AssetCheckResult(
        passed=max_psi <= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"largest PSI {max_psi:.3f} (threshold {threshold})",
        metadata={"max_psi": max_psi},
    )


@dg.asset_check(asset=keys.PREDICTION_DRIFT, name=keys.PREDICTION_DRIFT_BELOW_THRESHOLD.name)
def prediction_drift_below_threshold(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """Warns when the probabilities served on the day drifted past the PSI threshold against the
    batch scores they were served from; passes (saying so) on a day nothing was served."""
    entry = latest_materialization(context.instance, keys.PREDICTION_DRIFT, context.partition_key)
    meta = entry.asset_materialization.metadata
    threshold = float(meta["psi_threshold"].value)
    if "psi" not in meta:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description="no predictions were served that day",
        )
    psi = float(meta["psi"].value)
    return dg.AssetCheckResult(
        passed=psi <= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"PSI of the served probabilities {psi:.3f} (threshold {threshold}); "
        f"{meta['served_predictions'].value} served",
        metadata={"psi": psi},
    )


ML_CHECKS = [churn_model_promotion_gate, drift_below_threshold, prediction_drift_below_threshold]


def promotion_gate_run_config(thresholds: dict[str, float]) -> dict:
    """Run config that sets the gate's thresholds (PromotionGateConfig fields) for one run."""
    return {"ops": {churn_model_promotion_gate.node_def.name: {"config": thresholds}}}
