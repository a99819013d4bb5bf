"""ml/churn_labels, ml/training_set, ml/churn_model, ml/churn_scores and ml/feature_drift (their
checks: ``checks.py``)."""

import dagster as dg
import pandas as pd

from churn_platform.contracts import derived as columns
from churn_platform.engines.base import FeatureEngine
from churn_platform.ml.business import Costs
from churn_platform.ml.drift import (
    DEFAULT_PSI_THRESHOLD,
    drift_by_day,
    drift_summary_by_day,
    prediction_drift,
)
from churn_platform.ml.labels import compute_churn_labels
from churn_platform.ml.model_card import CARD_PATH, render_model_card
from churn_platform.ml.promotion import (
    BootstrapSettings,
    Challenger,
    auc_interval,
    evaluation_metrics,
    gate_inputs,
)
from churn_platform.ml.scoring import predict_with, score_customers
from churn_platform.ml.training import (
    build_training_set,
    train_churn_model,
    training_as_of_dates,
    training_lineage,
)
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration import pools
from churn_platform.orchestration.partitions import LABEL_HORIZON_DAYS, PlatformPartitions
from churn_platform.orchestration.retries import EXTERNAL_CALL_RETRY
from churn_platform.settings.promotion import PromotionSettings
from churn_platform.storage.model_registry import MLflowTracking, ModelIntegrityError, NoChampionError
from churn_platform.storage.parquet_files import ParquetFiles
from churn_platform.storage.parquet_io_manager import LATEST_MATERIALIZED, source_files, to_json_metadata


class TrainingSetConfig(dg.Config):
    sample_every_days: int = 7  # as-of snapshots this far apart, to limit near-duplicate rows


class ChurnModelConfig(dg.Config):
    seed: int = 0
    decision_threshold: float = 0.3  # for precision/recall/F1 in the run's metrics
    evaluation_dates: int = 1  # the latest as-of dates the model is evaluated on (out of time)
    bootstrap_resamples: int = 1000  # for the confidence intervals of the gate's comparison


class FeatureDriftConfig(dg.Config):
    psi_threshold: float = DEFAULT_PSI_THRESHOLD


def build_ml_assets(
    partitions: PlatformPartitions, promotion: PromotionSettings | None = None
) -> list[dg.AssetsDefinition]:
    """The ml stage's assets; ``promotion`` holds the business costs the model is judged by
    (the declared defaults when not given)."""
    training_window_days = partitions.training_window_days
    promotion = promotion or PromotionSettings()
    costs = Costs(promotion.missed_churner, promotion.retention_offer)

    @dg.asset(
        key=keys.CHURN_LABELS,
        group_name="ml",
        partitions_def=partitions.labelled,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={
            "customer_daily_activity": dg.AssetIn(
                key=keys.CUSTOMER_DAILY_ACTIVITY, partition_mapping=partitions.label_window()
            )
        },
        metadata={"partition_column": "as_of_date", **columns.CHURN_LABELS.definition_metadata()},
        kinds={"sql", "parquet"},
        automation_condition=partitions.on_upstream_change(),
        pool=pools.FEATURE_ENGINE,
    )
    def churn_labels(
        context: dg.AssetExecutionContext,
        feature_engine: FeatureEngine,
        customer_daily_activity: ParquetFiles,
    ) -> pd.DataFrame:
        """Whether each customer cancelled in the 30 days after the as-of date."""
        labels = compute_churn_labels(
            customer_daily_activity, context.partition_keys, feature_engine.query_pandas
        )
        context.add_output_metadata({"churned": int(labels["churned"].sum())})
        return labels

    @dg.asset(
        key=keys.TRAINING_SET,
        group_name="ml",
        partitions_def=partitions.labelled,
        ins={
            "customer_features": dg.AssetIn(
                key=keys.CUSTOMER_FEATURES, partition_mapping=partitions.training_window()
            ),
            "churn_labels": dg.AssetIn(key=keys.CHURN_LABELS, partition_mapping=partitions.training_window()),
        },
        metadata=columns.TRAINING_SET.definition_metadata(),
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
        as_of_dates = training_as_of_dates(
            context.partition_key, training_window_days, config.sample_every_days
        )
        table = build_training_set(customer_features, churn_labels, as_of_dates)
        lineage = [
            f
            for f in source_files(customer_features) + source_files(churn_labels)
            if f["partition"] in as_of_dates
        ]
        context.add_output_metadata(
            {
                "as_of_dates": to_json_metadata(as_of_dates),
                "churned_rows": int(table["churned"].sum()),
                "lineage": to_json_metadata(lineage),
            }
        )
        return table

    @dg.asset(
        key=keys.CHURN_MODEL,
        group_name="ml",
        partitions_def=partitions.labelled,
        ins={"training_set": dg.AssetIn(key=keys.TRAINING_SET)},
        retry_policy=EXTERNAL_CALL_RETRY,
        kinds={"scikitlearn", "mlflow"},
        pool=pools.TRAINING,
    )
    def churn_model(
        context: dg.AssetExecutionContext,
        config: ChurnModelConfig,
        training_set: pd.DataFrame,
        mlflow_tracking: MLflowTracking,
    ) -> dg.MaterializeResult:
        """A scikit-learn pipeline fitted on the older as-of dates of the training set and evaluated
        out of time on the latest (purged of one label horizon in between), tracked in MLflow and
        registered as a new version of the `churn_model` registered model with its split and model
        card. The registered version's files are the model: promotion (the gate check's decision),
        scoring and backups all use them, and record their SHA-256 (`model_sha256`)."""
        model = train_churn_model(
            training_set,
            seed=config.seed,
            horizon_days=LABEL_HORIZON_DAYS,
            evaluation_dates=config.evaluation_dates,
        )
        holdout, split = model.holdout, model.split
        bootstrap = BootstrapSettings(resamples=config.bootstrap_resamples, seed=config.seed)
        metrics = evaluation_metrics(model, config.decision_threshold, costs)
        roc_auc_ci = auc_interval(holdout.labels, holdout.probabilities, bootstrap)
        metrics.update({"roc_auc_ci_low": roc_auc_ci[0], "roc_auc_ci_high": roc_auc_ci[1]})
        cutoff = context.partition_key
        lineage = training_lineage(cutoff, training_set, source_files(training_set))
        # Plots need matplotlib and scikit-learn's inspection tools: imported by the training step only.
        from churn_platform.ml.plots import evaluation_figures, permutation_importances

        importances = permutation_importances(model.pipeline, holdout.features, holdout.labels, config.seed)
        record = mlflow_tracking.log_training(
            model.pipeline,
            holdout.features,
            params={
                "seed": config.seed,
                "decision_threshold": config.decision_threshold,
                "training_cutoff": cutoff,
                "features": ",".join(model.feature_columns),
                "cost_missed_churner": costs.missed_churner,
                "cost_retention_offer": costs.retention_offer,
                **{f"split.{k}": v for k, v in split.as_tags().items()},
                **{f"model.{k}": v for k, v in model.pipeline.named_steps["model"].get_params().items()},
            },
            metrics=metrics,
            tags={"dagster.run_id": context.run.run_id, "dagster.partition": cutoff},
            lineage=lineage,
            figures=evaluation_figures(
                holdout.labels,
                holdout.probabilities,
                model.pipeline,
                holdout.features,
                config.seed,
                importances=importances,
            ),
            run_name=f"churn_model {cutoff}",
        )
        artifact = mlflow_tracking.download_version(record.version)
        artifact.discard()  # only its digest is needed here
        # The split on the registered version (the gate reads a champion's fit cutoff from here) and
        # the digest of its files, which scoring and backups compare with what they load and copy.
        mlflow_tracking.tag_version(
            record.version,
            {"training_cutoff": cutoff, "model_sha256": artifact.sha256, **split.as_tags()},
        )
        champion = mlflow_tracking.champion_record()
        gate = gate_inputs(
            Challenger(record.version, cutoff, split, metrics, holdout),
            champion,
            lambda: mlflow_tracking.load_version(champion["version"])[0],
            costs,
            bootstrap,
            LABEL_HORIZON_DAYS,
        )
        card = render_model_card(
            mlflow_tracking.model_name,
            record.version,
            cutoff,
            lineage["as_of_dates"],
            gate["split"],
            metrics,
            roc_auc_ci,
            gate["costs"],
            importances,
            gate,
        )
        mlflow_tracking.log_text(record.run_id, card, CARD_PATH)
        # Rounded for people (the UI plots these); MLflow and gate_inputs keep full precision.
        metadata: dict = {name: dg.MetadataValue.float(round(value, 4)) for name, value in metrics.items()}
        metadata.update(
            {
                "mlflow_run_id": record.run_id,
                "model_version": record.version,
                "model_uri": artifact.uri,
                "model_sha256": artifact.sha256,
                "model_files": to_json_metadata(artifact.files),
                "champion_version": champion["version"] if champion else "none",
                "split": split.kind,
                "fit_cutoff": split.fit_cutoff or "none",
                "evaluation_dates": to_json_metadata(split.evaluation_dates),
                "gate_inputs": to_json_metadata(gate),
                "model_card": dg.MetadataValue.md(card),
                "features": to_json_metadata(model.feature_columns),
                "training_config": to_json_metadata(config.model_dump()),  # for rebuild-model
                "training_set": to_json_metadata(source_files(training_set)),
            }
        )
        if record.run_url:
            metadata["mlflow_run"] = dg.MetadataValue.url(record.run_url)
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(
        key=keys.CHURN_SCORES,
        group_name="ml",
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"customer_features": dg.AssetIn(key=keys.CUSTOMER_FEATURES)},
        deps=[dg.AssetDep(keys.CHURN_MODEL, partition_mapping=dg.LastPartitionMapping())],
        metadata={"partition_column": "as_of_date", **columns.CHURN_SCORES.definition_metadata()},
        automation_condition=partitions.on_upstream_change(ignore=[keys.CHURN_MODEL]),
        retry_policy=EXTERNAL_CALL_RETRY,
        kinds={"scikitlearn", "parquet"},
    )
    def churn_scores(
        context: dg.AssetExecutionContext, mlflow_tracking: MLflowTracking, customer_features: pd.DataFrame
    ) -> pd.DataFrame:
        """Every active customer's churn probability as of the partition date, from the champion model."""
        try:
            pipeline, artifact = mlflow_tracking.load_champion()
        except (NoChampionError, ModelIntegrityError) as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None
        scores = score_customers(
            lambda frame: predict_with(pipeline, frame), customer_features, model_version=artifact.version
        )
        context.add_output_metadata(
            {"model_version": artifact.version, "model_uri": artifact.uri, "model_sha256": artifact.sha256}
        )
        return scores

    @dg.asset(
        key=keys.FEATURE_DRIFT,
        group_name="ml",
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={
            "customer_features": dg.AssetIn(key=keys.CUSTOMER_FEATURES),
            # The newest training set materialized (whatever its as-of date), loaded by the IO manager.
            "training_set": dg.AssetIn(
                key=keys.TRAINING_SET,
                partition_mapping=dg.LastPartitionMapping(),
                metadata=LATEST_MATERIALIZED,
            ),
        },
        metadata={"partition_column": "as_of_date", **columns.FEATURE_DRIFT.definition_metadata()},
        automation_condition=partitions.on_upstream_change(ignore=[keys.TRAINING_SET]),
        kinds={"pandas", "parquet"},
    )
    def feature_drift(
        context: dg.AssetExecutionContext,
        config: FeatureDriftConfig,
        customer_features: pd.DataFrame,
        training_set: pd.DataFrame,
    ) -> pd.DataFrame:
        """Population stability index of each feature of the day's active customers against the most
        recent training set; `drifted` marks features above the threshold (checked by `drift_below_threshold`)."""
        drift = drift_by_day(training_set, customer_features, config.psi_threshold)
        [reference] = source_files(training_set)
        max_psi_by_day, drifted_features_by_day = drift_summary_by_day(drift)
        context.add_output_metadata(
            {
                "reference": dg.MetadataValue.path(reference["uri"]),
                "psi_threshold": config.psi_threshold,
                "max_psi": float(drift["psi"].max()) if len(drift) else 0.0,
                # Per day: a range run's metadata is attached to every partition of the range.
                "max_psi_by_day": to_json_metadata(max_psi_by_day),
                "drifted_features_by_day": to_json_metadata(drifted_features_by_day),
            }
        )
        return drift

    @dg.asset(
        key=keys.PREDICTION_DRIFT,
        group_name="ml",
        partitions_def=partitions.daily,
        ins={
            "inference_logs": dg.AssetIn(key=keys.INFERENCE_LOGS),
            # Day D's requests are served from the features (and batch scores) as of D-1.
            "churn_scores": dg.AssetIn(
                key=keys.CHURN_SCORES,
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1),
            ),
        },
        automation_condition=partitions.on_upstream_change(ignore=[keys.CHURN_SCORES]),
        metadata=columns.PREDICTION_DRIFT.definition_metadata(),
        kinds={"pandas", "parquet"},
    )
    def prediction_drift_of_served_scores(
        context: dg.AssetExecutionContext,
        config: FeatureDriftConfig,
        inference_logs: pd.DataFrame,
        churn_scores: pd.DataFrame,
    ) -> pd.DataFrame:
        """Prediction drift: the PSI of the churn probabilities `churn-platform serve` answered on the
        day (customers scored by id) against the batch scores of the day before, the features the
        service served from; checked by `prediction_drift_below_threshold`."""
        # Scores served from the stored features only: not what-if rows, nor webhook scores with a
        # new ticket folded in.
        served = inference_logs.loc[
            inference_logs["endpoint"].isin(["customer", "batch"]), "churn_probability"
        ]
        drift = prediction_drift(churn_scores["churn_probability"], served, config.psi_threshold)
        context.add_output_metadata({k: v for k, v in drift.items() if v is not None})
        # Typed as declared (contracts/derived.py): a day with nothing served has nulls, not Arrow's null type.
        return pd.DataFrame([{"date": context.partition_key, **drift}]).astype(
            {"served_mean": "float64", "reference_mean": "float64", "psi": "float64"}
        )

    return [
        churn_labels,
        training_set,
        churn_model,
        churn_scores,
        feature_drift,
        prediction_drift_of_served_scores,
    ]
