"""features/customer_daily_activity and features/customer_features.

The big inputs arrive as ParquetFiles (scanned by the engine, never loaded into pandas) and the
engine's own table is returned: ParquetIOManager writes Arrow, and Spark writes its partitions itself.
"""

from typing import Any

import dagster as dg
import pandas as pd

from churn_platform.contracts.features import CUSTOMER_DAILY_ACTIVITY, CUSTOMER_FEATURES
from churn_platform.contracts.verify import build_contract_check
from churn_platform.engines.base import FeatureEngine
from churn_platform.features.activity import compute_daily_activity
from churn_platform.features.rolling import compute_customer_features
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration import pools
from churn_platform.orchestration.partitions import PlatformPartitions
from churn_platform.storage.parquet_files import ParquetFiles

# pyarrow.Table from DuckDB, a SparkTable from Spark: both stored by ParquetIOManager.
FeatureTable = Any


def build_feature_assets(partitions: PlatformPartitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=keys.CUSTOMER_DAILY_ACTIVITY,
        group_name="features",
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={
            "interaction_logs": dg.AssetIn(key=keys.INTERACTION_LOGS),
            "ticket_sentiment": dg.AssetIn(key=keys.TICKET_SENTIMENT),
        },
        metadata={"partition_column": "activity_date", **CUSTOMER_DAILY_ACTIVITY.definition_metadata()},
        automation_condition=partitions.on_upstream_change(),
        kinds={"sql", "parquet"},
        pool=pools.FEATURE_ENGINE,
    )
    def customer_daily_activity(
        feature_engine: FeatureEngine, interaction_logs: ParquetFiles, ticket_sentiment: pd.DataFrame
    ) -> FeatureTable:
        """Per customer and day: event counts by type, sessions, spend, ticket counts, mean sentiment."""
        return compute_daily_activity(interaction_logs, ticket_sentiment, feature_engine.query_table)

    @dg.asset(
        key=keys.CUSTOMER_FEATURES,
        group_name="features",
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={
            "customer_daily_activity": dg.AssetIn(
                key=keys.CUSTOMER_DAILY_ACTIVITY, partition_mapping=partitions.feature_window()
            )
        },
        metadata={"partition_column": "as_of_date", **CUSTOMER_FEATURES.definition_metadata()},
        automation_condition=partitions.on_upstream_change(),
        kinds={"sql", "parquet"},
        pool=pools.FEATURE_ENGINE,
    )
    def customer_features(
        context: dg.AssetExecutionContext,
        feature_engine: FeatureEngine,
        customer_daily_activity: ParquetFiles,
    ) -> FeatureTable:
        """Per customer as of the partition date: rolling 7/30-day activity, tickets, recency and trend."""
        return compute_customer_features(
            customer_daily_activity, context.partition_keys, feature_engine.query_table
        )

    return [customer_daily_activity, customer_features]


def build_feature_checks(partitions: PlatformPartitions) -> list[dg.AssetChecksDefinition]:
    return [
        build_contract_check(keys.CUSTOMER_DAILY_ACTIVITY, CUSTOMER_DAILY_ACTIVITY, partitions.daily),
        build_contract_check(keys.CUSTOMER_FEATURES, CUSTOMER_FEATURES, partitions.daily),
    ]
