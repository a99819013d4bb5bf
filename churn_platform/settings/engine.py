"""Which engine runs the feature SQL (DuckDB embedded, or Spark)."""

from dataclasses import dataclass

from churn_platform.settings.declare import setting


@dataclass(frozen=True)
class EngineSettings:
    feature_engine: str = setting(
        "CHURN_FEATURE_ENGINE", "duckdb", "`duckdb` or `spark`", choices=("duckdb", "spark")
    )
    spark_master: str = setting(
        "CHURN_SPARK_MASTER", "local[*]", "Spark master URL, e.g. `spark://host:7077`"
    )
    spark_shuffle_partitions: int = setting(
        "CHURN_SPARK_SHUFFLE_PARTITIONS", 8, "`spark.sql.shuffle.partitions`", minimum=1
    )
    spark_driver_memory: str = setting("CHURN_SPARK_DRIVER_MEMORY", "2g", "`spark.driver.memory`")
    spark_packages: str = setting(
        "CHURN_SPARK_PACKAGES",
        "",
        "Maven coordinates for `spark.jars.packages`, e.g. the hadoop-aws connector",
    )
