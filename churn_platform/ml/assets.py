"""ml/churn_labels, ml/training_set, ml/churn_model (+ promotion_gate check), ml/churn_scores and
ml/feature_drift (+ drift_below_threshold check)."""

import dagster as dg
import pandas as pd

from churn_platform.automation import EXTERNAL_CALL_RETRY, on_upstream_change
from churn_platform.ml.drift import DEFAULT_PSI_THRESHOLD
from churn_platform.ml.drift import feature_drift as feature_drift_table
from churn_platform.ml.gate import (
    GateThresholds,
    champion_on_holdout,
    evaluate_gate,
    prediction_health,
)
from churn_platform.ml.labels import compute_churn_labels
from churn_platform.ml.plots import evaluation_figures
from churn_platform.ml.scoring import predict_with, score_customers
from churn_platform.ml.tracking import MLflowTracking, NoChampionError
from churn_platform.ml.training import (
    ChurnModel,
    build_training_set,
    threshold_metrics,
    train_churn_model,
    training_as_of_dates,
    training_lineage,
)
from churn_platform.partitions import daily_partitions, labelled_partitions
from churn_platform.settings import LABEL_HORIZON_DAYS, load_settings
from churn_platform.sql_engine import FeatureEngine
from churn_platform.storage.artifact_io_manager import ArtifactStore
from churn_platform.storage.parquet_files import ParquetFiles
from churn_platform.storage.parquet_io_manager import (
    parquet_bytes_to_dataframe,
    source_files,
    to_json_metadata,
)

CHURN_MODEL_KEY = dg.AssetKey(["ml", "churn_model"])
TRAINING_SET_KEY = dg.AssetKey(["ml", "training_set"])
FEATURE_DRIFT_KEY = dg.AssetKey(["ml", "feature_drift"])
TRAINING_WINDOW_DAYS = load_settings().training_window_days
DRIFT_FEATURES = [
    "events_7d", "events_30d", "sessions_30d", "spend_30d", "active_days_30d", "tickets_30d",
    "mean_sentiment_30d", "days_since_last_event", "activity_trend",
]


@dg.asset(
    key=["ml", "churn_labels"],
    group_name="ml",
    partitions_def=labelled_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={
        "customer_daily_activity": dg.AssetIn(
            key=["features", "customer_daily_activity"],
            # The 30 days after the as-of date; all of them must be materialized.
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=1, end_offset=LABEL_HORIZON_DAYS),
        )
    },
    metadata={"partition_column": "as_of_date"},
    kinds={"sql", "parquet"},
    automation_condition=on_upstream_change(),
)
def churn_labels(
    context: dg.AssetExecutionContext, feature_engine: FeatureEngine, customer_daily_activity: ParquetFiles
) -> pd.DataFrame:
    """Whether each customer cancelled in the 30 days after the as-of date."""
    labels = compute_churn_labels(customer_daily_activity, context.partition_keys, feature_engine.run_sql)
    context.add_output_metadata({"churned": int(labels["churned"].sum())})
    return labels


class TrainingSetConfig(dg.Config):
    sample_every_days: int = 7  # as-of snapshots this far apart, to limit near-duplicate rows


@dg.asset(
    key=["ml", "training_set"],
    group_name="ml",
    partitions_def=labelled_partitions,
    ins={
        name: dg.AssetIn(
            key=key,
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-(TRAINING_WINDOW_DAYS - 1), allow_nonexistent_upstream_partitions=True
            ),
        )
        for name, key in (
            ("customer_features", ["features", "customer_features"]),
            ("churn_labels", ["ml", "churn_labels"]),
        )
    },
    kinds={"pandas", "parquet"},
)
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingSetConfig,
    customer_features: pd.DataFrame,
    churn_labels: pd.DataFrame,
) -> pd.DataFrame:
    """Features joined to labels for as-of dates in the training window ending at the partition
    (CHURN_TRAINING_WINDOW_DAYS long, one snapshot every `sample_every_days`)."""
    as_of_dates = training_as_of_dates(context.partition_key, TRAINING_WINDOW_DAYS, config.sample_every_days)
    table = build_training_set(customer_features, churn_labels, as_of_dates)
    lineage = [f for f in source_files(customer_features) + source_files(churn_labels)
               if f["partition"] in as_of_dates]
    context.add_output_metadata(
        {
            "as_of_dates": to_json_metadata(as_of_dates),
            "churned_rows": int(table["churned"].sum()),
            "lineage": to_json_metadata(lineage),
        }
    )
    return table


class ChurnModelConfig(dg.Config):
    seed: int = 0
    decision_threshold: float = 0.3  # for precision/recall/F1 in the run's metrics


@dg.asset(
    key=["ml", "churn_model"],
    group_name="ml",
    partitions_def=labelled_partitions,
    ins={"training_set": dg.AssetIn(key=["ml", "training_set"])},
    io_manager_key="model_io_manager",
    retry_policy=EXTERNAL_CALL_RETRY,
    kinds={"scikitlearn", "mlflow"},
)
def churn_model(
    context: dg.AssetExecutionContext, config: ChurnModelConfig, training_set: pd.DataFrame,
    mlflow_tracking: MLflowTracking,
) -> ChurnModel:
    """A scikit-learn pipeline trained on the training set, tracked in MLflow and registered as a
    new version of the `churn_model` registered model. Promotion is the gate check's decision."""
    model = train_churn_model(training_set, seed=config.seed)
    holdout = model.holdout
    metrics = {**model.metrics, **threshold_metrics(holdout.labels, holdout.probabilities, config.decision_threshold)}
    lineage = training_lineage(context.partition_key, training_set, source_files(training_set))
    record = mlflow_tracking.log_training(
        model.pipeline, holdout.features,
        params={"seed": config.seed, "decision_threshold": config.decision_threshold,
                "training_cutoff": context.partition_key, "features": ",".join(model.feature_columns),
                **{f"model.{k}": v for k, v in model.pipeline.named_steps["model"].get_params().items()}},
        metrics=metrics,
        tags={"dagster.run_id": context.run.run_id, "dagster.partition": context.partition_key},
        lineage=lineage,
        figures=evaluation_figures(holdout.labels, holdout.probabilities, model.pipeline, holdout.features, config.seed),
        run_name=f"churn_model {context.partition_key}",
    )
    champion = champion_on_holdout(mlflow_tracking, holdout)
    model.trained_on = {**lineage, "mlflow": {"run_id": record.run_id, "version": record.version}}
    gate_inputs = {"version": record.version, "candidate": metrics,
                   "health": prediction_health(holdout.probabilities), "champion": champion}
    metadata: dict = {name: dg.MetadataValue.float(value) for name, value in metrics.items()}
    metadata.update({
        "mlflow_run_id": record.run_id,
        "model_version": record.version,
        "champion_version": champion["version"] if champion else "none",
        "gate_inputs": to_json_metadata(gate_inputs),
        "features": to_json_metadata(model.feature_columns),
        "training_set": to_json_metadata(source_files(training_set)),
    })
    if record.run_url:
        metadata["mlflow_run"] = dg.MetadataValue.url(record.run_url)
    context.add_output_metadata(metadata)
    model.holdout = None
    return model


class PromotionGateConfig(dg.Config):
    min_roc_auc: float = GateThresholds.min_roc_auc
    min_pr_auc_lift: float = GateThresholds.min_pr_auc_lift
    max_auc_drop_vs_champion: float = GateThresholds.max_auc_drop_vs_champion


@dg.asset_check(asset=CHURN_MODEL_KEY, blocking=True, name="promotion_gate")
def churn_model_promotion_gate(
    context: dg.AssetCheckExecutionContext, config: PromotionGateConfig, mlflow_tracking: MLflowTracking
) -> dg.AssetCheckResult:
    """Promote the new model version to `champion` only if its metrics clear the floors, it is not
    worse than the champion on the same hold-out by more than the margin, and its predictions are
    well-formed. A rejected version stays registered with the reason; the champion is untouched."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=CHURN_MODEL_KEY, asset_partitions=[context.partition_key]), limit=1
    ).records
    gate = records[0].asset_materialization.metadata["gate_inputs"].value
    thresholds = GateThresholds(config.min_roc_auc, config.min_pr_auc_lift, config.max_auc_drop_vs_champion)
    passed, reasons = evaluate_gate(gate["candidate"], gate["health"], gate["champion"], thresholds)
    version = gate["version"]
    if passed:
        previous = gate["champion"]["version"] if gate["champion"] else None
        description = f"promoted version {version} to champion" + (f" (was {previous})" if previous else "")
        mlflow_tracking.promote(version, description)
    else:
        description = f"version {version} not promoted: " + "; ".join(reasons)
        mlflow_tracking.reject(version, reasons)
    return dg.AssetCheckResult(
        passed=passed, description=description,
        metadata={"model_version": version, "roc_auc": gate["candidate"]["roc_auc"],
                  "champion_roc_auc_same_holdout": gate["champion"]["roc_auc"] if gate["champion"] else -1.0,
                  "reasons": to_json_metadata(reasons)},
    )


@dg.asset(
    key=["ml", "churn_scores"],
    group_name="ml",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={"customer_features": dg.AssetIn(key=["features", "customer_features"])},
    deps=[dg.AssetDep(CHURN_MODEL_KEY, partition_mapping=dg.LastPartitionMapping())],
    metadata={"partition_column": "as_of_date"},
    automation_condition=on_upstream_change(ignore=[CHURN_MODEL_KEY]),
    retry_policy=EXTERNAL_CALL_RETRY,
    kinds={"scikitlearn", "parquet"},
)
def churn_scores(
    context: dg.AssetExecutionContext, mlflow_tracking: MLflowTracking, customer_features: pd.DataFrame
) -> pd.DataFrame:
    """Every active customer's churn probability as of the partition date, from the champion model."""
    try:
        pipeline, version = mlflow_tracking.load_champion()
    except NoChampionError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    scores = score_customers(lambda frame: predict_with(pipeline, frame), customer_features, model_version=version)
    context.add_output_metadata({"model_version": version, "model_uri": f"models:/{mlflow_tracking.model_name}/{version}"})
    return scores



class FeatureDriftConfig(dg.Config):
    psi_threshold: float = DEFAULT_PSI_THRESHOLD


@dg.asset(
    key=["ml", "feature_drift"],
    group_name="ml",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={"customer_features": dg.AssetIn(key=["features", "customer_features"])},
    deps=[dg.AssetDep(TRAINING_SET_KEY, partition_mapping=dg.LastPartitionMapping())],
    metadata={"partition_column": "as_of_date"},
    automation_condition=on_upstream_change(ignore=[TRAINING_SET_KEY]),
    kinds={"pandas", "parquet"},
)
def feature_drift(
    context: dg.AssetExecutionContext, config: FeatureDriftConfig, artifact_store: ArtifactStore,
    customer_features: pd.DataFrame,
) -> pd.DataFrame:
    """Population stability index of each feature of the day's active customers against the most
    recent training set; `drifted` marks features above the threshold (checked by `drift_below_threshold`)."""
    event = context.instance.get_latest_materialization_event(TRAINING_SET_KEY)
    if event is None:
        raise dg.Failure("no training set yet to compare with: materialize ml/training_set first", allow_retries=False)
    uri = str(event.asset_materialization.metadata["uri"].value)
    reference = parquet_bytes_to_dataframe(artifact_store.read_uri(uri))
    rows = []
    for as_of_date, day in customer_features[customer_features["is_active"]].groupby("as_of_date", sort=True):
        for feature, psi in feature_drift_table(reference, day, DRIFT_FEATURES).items():
            rows.append({"as_of_date": as_of_date, "feature": feature, "psi": psi, "drifted": psi > config.psi_threshold})
    drift = pd.DataFrame(rows, columns=["as_of_date", "feature", "psi", "drifted"])
    context.add_output_metadata({"reference": dg.MetadataValue.path(uri), "psi_threshold": config.psi_threshold,
                                 "max_psi": float(drift["psi"].max()) if len(drift) else 0.0})
    return drift


@dg.asset_check(asset=FEATURE_DRIFT_KEY, name="drift_below_threshold")
def drift_below_threshold(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """Warns when any feature of the materialized days drifted past the PSI threshold: a signal
    to retrain (the retraining schedule can select on this check)."""
    event = context.instance.get_latest_materialization_event(FEATURE_DRIFT_KEY)
    meta = event.asset_materialization.metadata
    max_psi, threshold = float(meta["max_psi"].value), float(meta["psi_threshold"].value)
    return dg.AssetCheckResult(
        passed=max_psi <= threshold, severity=dg.AssetCheckSeverity.WARN,
        description=f"largest PSI {max_psi:.3f} (threshold {threshold})", metadata={"max_psi": max_psi},
    )
