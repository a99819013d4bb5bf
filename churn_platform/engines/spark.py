"""SparkEngine: the feature SQL transpiled to Spark SQL by sqlglot, run on the session of
dagster-pyspark's (lazy) PySparkResource: ``local[*]`` by default, any master by configuration.

Its tables are written by Spark's executors (``spark_files.py``), not through the driver.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlglot
from dagster_pyspark import LazyPySparkResource
from upath import UPath

from churn_platform.engines.base import FeatureEngine, Table
from churn_platform.engines.spark_files import spark_can_access, spark_uri, write_partitions_with_spark
from churn_platform.settings import EngineSettings
from churn_platform.storage.connection import ObjectStoreConnection
from churn_platform.storage.parquet_files import ParquetFiles


@lru_cache(maxsize=32)
def to_spark_sql(sql: str, ordered: bool = True) -> str:
    """The query in Spark SQL; ``ordered=False`` drops the final ORDER BY (a global sort with a
    sampling pass in Spark) where the writer orders each partition's rows itself."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    if not ordered:
        tree.set("order", None)
    return tree.sql(dialect="spark")


@dataclass(frozen=True)
class SparkTable:
    """A lazy Spark query result that Spark's executors write to the warehouse themselves
    (ParquetIOManager's ``SelfWritingTable``)."""

    frame: Any  # pyspark.sql.DataFrame

    def can_write_to(self, root: UPath, connection: ObjectStoreConnection | None) -> bool:
        return spark_can_access(self.frame.sparkSession, root, connection)

    def write_partitions(self, column: str, targets: dict[str, UPath], staging_root: UPath) -> None:
        write_partitions_with_spark(self.frame, column, targets, staging_root)

    def to_arrow(self) -> pa.Table:
        return self.frame.toArrow()


class SparkEngine(FeatureEngine):
    pyspark: LazyPySparkResource

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> "SparkEngine":
        return cls(
            pyspark=LazyPySparkResource(
                spark_config={
                    **spark_config(
                        settings.spark_master,
                        settings.spark_shuffle_partitions,
                        settings.spark_driver_memory,
                        settings.spark_packages,
                    ),
                    **settings.extra_spark_conf(),
                }
            )
        )

    def query_table(self, sql: str, tables: dict[str, Table]) -> SparkTable:
        # Executed when written; the writer sorts each partition's rows (spark_files.py), so the
        # query's global sort is dropped.
        return SparkTable(self._sql(sql, tables, ordered=False))

    def query_pandas(self, sql: str, tables: dict[str, Table]) -> pd.DataFrame:
        return self._sql(sql, tables, ordered=True).toArrow().to_pandas()

    def _sql(self, sql: str, tables: dict[str, Table], ordered: bool) -> Any:
        spark = self.pyspark.spark_session
        for name, table in tables.items():
            spark_table(spark, table).createOrReplaceTempView(name)
        # Analysed now, so the views may be replaced afterwards.
        return spark.sql(to_spark_sql(sql, ordered))


def spark_table(spark: Any, table: Table) -> Any:
    """A Spark DataFrame over a table: the files scanned by the executors where Spark reaches them."""
    if isinstance(table, ParquetFiles):
        if spark_can_access(spark, table.paths[0], table.connection):
            return spark.read.parquet(*[spark_uri(p) for p in table.paths])
        table = table.read_arrow()  # no connector for this store: through the driver
    elif isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    # Arrow in (Spark 4), as with DuckDB: the same types, empty tables included.
    return spark.createDataFrame(table)


def spark_config(
    master: str, shuffle_partitions: int, driver_memory: str, packages: str = ""
) -> dict[str, str]:
    """Settings that matter on small machines; override any of them in production.

    ``packages``: Maven coordinates fetched at session start, e.g. the hadoop-aws connector that
    lets Spark read and write ``s3a://`` itself.
    """
    config = {
        "spark.master": master,
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.driver.memory": driver_memory,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        # Parquet that pandas and DuckDB read as they read the platform's own files (not INT96).
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }
    if packages:
        config["spark.jars.packages"] = packages
    return config
