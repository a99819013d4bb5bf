"""online/customer_features: each day's customer features, loaded into the online store."""

import dagster as dg
import pyarrow.parquet as pq

from churn_platform.online.resources import OnlineFeatureStore
from churn_platform.online.store import write_version
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import PlatformPartitions
from churn_platform.orchestration.retries import EXTERNAL_CALL_RETRY
from churn_platform.storage.parquet_files import ParquetFiles


def build_online_assets(partitions: PlatformPartitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=keys.ONLINE_CUSTOMER_FEATURES,
        group_name="online",
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"customer_features": dg.AssetIn(key=keys.CUSTOMER_FEATURES)},
        automation_condition=partitions.on_upstream_change(),
        retry_policy=EXTERNAL_CALL_RETRY,
        kinds={"redis"},
    )
    def online_customer_features(
        context: dg.AssetExecutionContext, online_store: OnlineFeatureStore, customer_features: ParquetFiles
    ) -> dg.MaterializeResult:
        """The day's features of every customer in Redis, for `churn-platform serve`: a version per
        as-of date, made current (atomically, and only forward in time) once fully written; older
        versions beyond CHURN_ONLINE_KEEP_VERSIONS are deleted. A range loads day by day."""
        client = online_store.client()
        loads = []
        for day, path in zip(context.partition_keys, customer_features.paths, strict=True):
            table = pq.read_table(path.path, filesystem=path.fs)  # one day at a time: bounded memory
            loads.append(write_version(client, online_store.prefix, day, table, online_store.keep_versions))
        newest = loads[-1]
        return dg.MaterializeResult(
            metadata={
                "rows": sum(load.rows for load in loads),
                "rows_by_day": {load.as_of: load.rows for load in loads},
                "current_version": newest.current,
                "expired_versions": sorted({v for load in loads for v in load.expired}),
            }
        )

    return [online_customer_features]
