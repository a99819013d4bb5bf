"""Checks of the ml stage: the blocking promotion gate on ml/churn_model and the drift warning
on ml/feature_drift. The gate's logic lives in ``promotion.py``."""

import dagster as dg

from churn_platform.ml.promotion import GateThresholds, decide_promotion
from churn_platform.ml.tracking import MLflowTracking
from churn_platform.orchestration import asset_keys as keys
from churn_platform.storage.materializations import latest_materialization
from churn_platform.storage.parquet_io_manager import to_json_metadata


class PromotionGateConfig(dg.Config):
    min_roc_auc: float = GateThresholds.min_roc_auc
    min_pr_auc_lift: float = GateThresholds.min_pr_auc_lift
    max_auc_drop_vs_champion: float = GateThresholds.max_auc_drop_vs_champion


@dg.asset_check(asset=keys.CHURN_MODEL, blocking=True, name=keys.PROMOTION_GATE.name)
def churn_model_promotion_gate(
    context: dg.AssetCheckExecutionContext, config: PromotionGateConfig, mlflow_tracking: MLflowTracking
) -> dg.AssetCheckResult:
    """Promote the new model version to `champion` only if its metrics clear the floors, it is not
    worse than the champion on the same hold-out by more than the margin, and its predictions are
    well-formed. A rejected version stays registered with the reason; the champion is untouched."""
    # The partition's own materialization (a check given the asset as input would load the wrong one).
    entry = latest_materialization(context.instance, keys.CHURN_MODEL, context.partition_key)
    inputs = entry.asset_materialization.metadata["gate_inputs"].value
    thresholds = GateThresholds(config.min_roc_auc, config.min_pr_auc_lift, config.max_auc_drop_vs_champion)
    decision = decide_promotion(inputs, thresholds, mlflow_tracking)
    metadata = {
        "model_version": decision.version,
        "roc_auc": inputs["candidate"]["roc_auc"],
        "reasons": to_json_metadata(decision.reasons),
    }
    if decision.champion_roc_auc is not None:
        metadata["champion_roc_auc_same_holdout"] = decision.champion_roc_auc
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


ML_CHECKS = [churn_model_promotion_gate, drift_below_threshold]


def promotion_gate_run_config(thresholds: dict[str, float]) -> dict:
    """Run config that sets the gate's thresholds (PromotionGateConfig fields) for one run."""
    return {"ops": {churn_model_promotion_gate.node_def.name: {"config": thresholds}}}
