"""Which engine runs the feature SQL (DuckDB embedded, or Spark)."""

from dataclasses import dataclass

from churn_platform.settings.declare import setting


@dataclass(frozen=True)
class EngineSettings:
    feature_engine: str = setting(
        "CHURN_FEATURE_ENGINE", "duckdb", "`duckdb` or `spark`", choices=("duckdb", "spark")
    )
    spark_master: str = setting(
        "CHURN_SPARK_MASTER",
        "local[*]",
        "any Spark master URL: `spark://host:7077`, `k8s://https://...`, `yarn`",
    )
    spark_shuffle_partitions: int = setting(
        "CHURN_SPARK_SHUFFLE_PARTITIONS",
        8,
        "`spark.sql.shuffle.partitions` (Spark's 200 is far too many for small data)",
        minimum=1,
    )
    spark_driver_memory: str = setting("CHURN_SPARK_DRIVER_MEMORY", "2g", "`spark.driver.memory`")
    spark_packages: str = setting(
        "CHURN_SPARK_PACKAGES",
        "",
        "Maven coordinates for `spark.jars.packages`, e.g. the hadoop-aws connector",
    )
