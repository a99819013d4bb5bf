"""ml/churn_labels, ml/training_set, ml/churn_model and ml/churn_scores."""

import dagster as dg
import pandas as pd

from churn_platform.ml.labels import compute_churn_labels
from churn_platform.ml.scoring import score_customers
from churn_platform.ml.training import (
    ChurnModel,
    build_training_set,
    train_churn_model,
    training_as_of_dates,
)
from churn_platform.partitions import daily_partitions, labelled_partitions
from churn_platform.settings import LABEL_HORIZON_DAYS, load_settings
from churn_platform.storage.artifact_io_manager import ArtifactStore
from churn_platform.storage.parquet_io_manager import source_files, to_json_metadata

CHURN_MODEL_KEY = dg.AssetKey(["ml", "churn_model"])
TRAINING_WINDOW_DAYS = load_settings().training_window_days


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
    kinds={"duckdb", "parquet"},
)
def churn_labels(context: dg.AssetExecutionContext, customer_daily_activity: pd.DataFrame) -> pd.DataFrame:
    """Whether each customer cancelled in the 30 days after the as-of date."""
    labels = compute_churn_labels(customer_daily_activity, context.partition_keys)
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


@dg.asset(
    key=["ml", "churn_model"],
    group_name="ml",
    partitions_def=labelled_partitions,
    ins={"training_set": dg.AssetIn(key=["ml", "training_set"])},
    io_manager_key="model_io_manager",
    kinds={"scikitlearn"},
)
def churn_model(
    context: dg.AssetExecutionContext, config: ChurnModelConfig, training_set: pd.DataFrame
) -> ChurnModel:
    """A scikit-learn pipeline trained on the training set, with held-out metrics."""
    model = train_churn_model(training_set, seed=config.seed)
    model.trained_on = {"training_cutoff": context.partition_key, "files": source_files(training_set)}
    context.add_output_metadata(
        {
            **{name: dg.MetadataValue.float(value) for name, value in model.metrics.items()},
            "features": to_json_metadata(model.feature_columns),
            "training_set": to_json_metadata(source_files(training_set)),
        }
    )
    return model


@dg.asset(
    key=["ml", "churn_scores"],
    group_name="ml",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={"customer_features": dg.AssetIn(key=["features", "customer_features"])},
    deps=[dg.AssetDep(CHURN_MODEL_KEY, partition_mapping=dg.LastPartitionMapping())],
    metadata={"partition_column": "as_of_date"},
    kinds={"scikitlearn", "parquet"},
)
def churn_scores(
    context: dg.AssetExecutionContext, artifact_store: ArtifactStore, customer_features: pd.DataFrame
) -> pd.DataFrame:
    """Every active customer's churn probability as of the partition date, from the latest model."""
    event = context.instance.get_latest_materialization_event(CHURN_MODEL_KEY)
    if event is None or event.asset_materialization is None:
        raise dg.Failure(
            "no churn model has been trained yet: materialize ml/training_set and ml/churn_model "
            "for a labelled date first (see `churn-platform demo`)"
        )
    materialization = event.asset_materialization
    uri = materialization.metadata["uri"].value
    version = f"{materialization.partition}:{materialization.metadata['sha256'].value[:12]}"
    model = artifact_store.load_uri(uri)
    scores = score_customers(model, customer_features, model_version=version)
    context.add_output_metadata({"model_version": version, "model_uri": dg.MetadataValue.path(uri)})
    return scores
