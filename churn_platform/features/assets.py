"""features/customer_daily_activity and features/customer_features.

The big inputs arrive as ParquetFiles (scanned by the engine, never loaded into pandas) and the
engine's own result is returned: ParquetIOManager writes Arrow, and Spark writes its partitions itself.
"""

from typing import Any

import dagster as dg
import pandas as pd

from churn_platform.automation import on_upstream_change
from churn_platform.features.activity import compute_daily_activity
from churn_platform.features.rolling import compute_customer_features
from churn_platform.partitions import daily_partitions
from churn_platform.settings import FEATURE_WINDOW_DAYS
from churn_platform.sql_engine import FeatureEngine
from churn_platform.storage.parquet_files import ParquetFiles

# pyarrow.Table from DuckDB, a lazy pyspark DataFrame from Spark: both stored by ParquetIOManager.
FeatureTable = Any


@dg.asset(
    key=["features", "customer_daily_activity"],
    group_name="features",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={
        "interaction_logs": dg.AssetIn(key=["raw", "interaction_logs"]),
        "ticket_sentiment": dg.AssetIn(key=["enriched", "ticket_sentiment"]),
    },
    metadata={"partition_column": "activity_date"},
    automation_condition=on_upstream_change(),
    kinds={"sql", "parquet"},
)
def customer_daily_activity(
    feature_engine: FeatureEngine, interaction_logs: ParquetFiles, ticket_sentiment: pd.DataFrame
) -> FeatureTable:
    """Per customer and day: event counts by type, sessions, spend, ticket counts, mean sentiment."""
    return compute_daily_activity(interaction_logs, ticket_sentiment, feature_engine.query)


@dg.asset(
    key=["features", "customer_features"],
    group_name="features",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={
        "customer_daily_activity": dg.AssetIn(
            key=["features", "customer_daily_activity"],
            # The 30 daily partitions up to and including the as-of date (fewer near the start date).
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-(FEATURE_WINDOW_DAYS - 1), allow_nonexistent_upstream_partitions=True
            ),
        )
    },
    metadata={"partition_column": "as_of_date"},
    automation_condition=on_upstream_change(),
    kinds={"sql", "parquet"},
)
def customer_features(
    context: dg.AssetExecutionContext, feature_engine: FeatureEngine, customer_daily_activity: ParquetFiles
) -> FeatureTable:
    """Per customer as of the partition date: rolling 7/30-day activity, tickets, recency and trend."""
    return compute_customer_features(customer_daily_activity, context.partition_keys, feature_engine.query)
