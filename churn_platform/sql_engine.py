"""Where the feature SQL runs. The features are defined once, as SQL in DuckDB's dialect; the
engine is chosen per environment (CHURN_FEATURE_ENGINE):

- ``DuckDBEngine`` (default): embedded, fast on one machine's worth of data.
- ``SparkEngine``: the same SQL transpiled to Spark SQL by sqlglot and run on the session of
  dagster-pyspark's (lazy) PySparkResource: ``local[*]`` by default, any master by configuration.

Large inputs arrive as ``ParquetFiles`` and are scanned by the engine itself; ``query`` returns the
engine's own result (Arrow, or a lazy Spark DataFrame that Spark writes to the warehouse itself).
"""

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import sqlglot
from dagster_pyspark import LazyPySparkResource

from churn_platform.storage.parquet_files import ParquetFiles
from churn_platform.storage.spark_files import spark_can_access, spark_uri

# A table the feature SQL reads: rows in memory, or partition files the engine scans itself.
Table = pd.DataFrame | ParquetFiles
# A function running a DuckDB-dialect query over named tables: what the feature code needs. It
# returns pandas (``run_sql``) or the engine's own result for ParquetIOManager to write (``query``).
SqlRunner = Callable[[str, dict[str, Table]], Any]

# Floating-point sums depend on the order rows arrive in, which parallel scans do not fix. Money
# and sentiment are summed as decimals (exact, order-free), so every engine and every run gives
# the same bits: feature files are reproducible byte for byte.
MONEY = "DECIMAL(18, 2)"
SCORE = "DECIMAL(18, 9)"


class FeatureEngine(dg.ConfigurableResource):
    """Runs a DuckDB-dialect query over named tables."""

    def query(self, sql: str, tables: dict[str, Table]) -> Any:
        """The engine's own result (Arrow for DuckDB, a lazy Spark DataFrame), for an asset to return."""
        raise NotImplementedError

    def run_sql(self, sql: str, tables: dict[str, Table]) -> pd.DataFrame:
        """The result as pandas, for small results that Python code goes on with."""
        raise NotImplementedError


class DuckDBEngine(FeatureEngine):
    threads: int = 2

    def query(self, sql: str, tables: dict[str, Table]) -> pa.Table:
        return query_duckdb(sql, tables, self.threads)

    def run_sql(self, sql: str, tables: dict[str, Table]) -> pd.DataFrame:
        return run_duckdb(sql, tables, self.threads)


def query_duckdb(sql: str, tables: dict[str, Table], threads: int = 2) -> pa.Table:
    con = duckdb.connect(config={"threads": threads})
    try:
        for name, table in tables.items():
            if isinstance(table, ParquetFiles):
                if table.protocol:  # s3:// or gs://: DuckDB reads through our configured fsspec client
                    con.register_filesystem(table.filesystem())
                con.read_parquet(table.uris).create_view(name)
            else:
                # Arrow keeps date columns as DATE (pandas object columns would need type sniffing).
                con.register(name, pa.Table.from_pandas(table, preserve_index=False))
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def run_duckdb(sql: str, tables: dict[str, Table], threads: int = 2) -> pd.DataFrame:
    return query_duckdb(sql, tables, threads).to_pandas()


@lru_cache(maxsize=32)
def to_spark_sql(sql: str, ordered: bool = True) -> str:
    """The query in Spark SQL; ``ordered=False`` drops the final ORDER BY (a global sort with a
    sampling pass in Spark) where the writer orders each partition's rows itself."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    if not ordered:
        tree.set("order", None)
    return tree.sql(dialect="spark")


class SparkEngine(FeatureEngine):
    pyspark: LazyPySparkResource

    def query(self, sql: str, tables: dict[str, Table]) -> Any:
        # Executed when written; the writer sorts each partition's rows (storage/spark_files.py),
        # so the query's global sort is dropped.
        return self._sql(sql, tables, ordered=False)

    def run_sql(self, sql: str, tables: dict[str, Table]) -> pd.DataFrame:
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


def spark_config(master: str, shuffle_partitions: int, driver_memory: str, packages: str = "") -> dict[str, str]:
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
