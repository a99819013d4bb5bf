"""Where the feature SQL runs. The features are defined once, as SQL in DuckDB's dialect; the
engine is chosen per environment (CHURN_FEATURE_ENGINE):

- ``DuckDBEngine`` (default): embedded, fast on one machine's worth of data.
- ``SparkEngine``: the same SQL transpiled to Spark SQL by sqlglot and run on the session of
  dagster-pyspark's (lazy) PySparkResource: ``local[*]`` by default, any master by configuration.
"""

from collections.abc import Callable
from functools import lru_cache

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import sqlglot
from dagster_pyspark import LazyPySparkResource

# A function running a DuckDB-dialect query over named pandas tables: what the feature code needs.
SqlRunner = Callable[[str, dict[str, pd.DataFrame]], pd.DataFrame]


class FeatureEngine(dg.ConfigurableResource):
    """Runs a DuckDB-dialect query over named pandas tables and returns a pandas result."""

    def run_sql(self, sql: str, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
        raise NotImplementedError


class DuckDBEngine(FeatureEngine):
    threads: int = 2

    def run_sql(self, sql: str, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
        return run_duckdb(sql, tables, self.threads)


def run_duckdb(sql: str, tables: dict[str, pd.DataFrame], threads: int = 2) -> pd.DataFrame:
    con = duckdb.connect(config={"threads": threads})
    try:
        for name, frame in tables.items():
            # Arrow keeps date columns as DATE (pandas object columns would need type sniffing).
            con.register(name, pa.Table.from_pandas(frame, preserve_index=False))
        return con.sql(sql).to_arrow_table().to_pandas()
    finally:
        con.close()


@lru_cache(maxsize=32)
def to_spark_sql(sql: str) -> str:
    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]


class SparkEngine(FeatureEngine):
    pyspark: LazyPySparkResource

    def run_sql(self, sql: str, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
        spark = self.pyspark.spark_session
        for name, frame in tables.items():
            # Arrow in and out (Spark 4), as with DuckDB: the same types, empty tables included.
            spark.createDataFrame(pa.Table.from_pandas(frame, preserve_index=False)).createOrReplaceTempView(name)
        return spark.sql(to_spark_sql(sql)).toArrow().to_pandas()


def spark_config(master: str, shuffle_partitions: int, driver_memory: str) -> dict[str, str]:
    """Settings that matter on small machines; override any of them in production."""
    return {
        "spark.master": master,
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.driver.memory": driver_memory,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }
