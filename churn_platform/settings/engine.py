"""Which engine runs the feature SQL (DuckDB embedded, or Spark)."""

from dataclasses import dataclass

from churn_platform.settings.declare import SettingsError, setting


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
    spark_conf: str = setting(
        "CHURN_SPARK_CONF",
        "",
        "more Spark properties, `key=value` pairs separated by `;` (e.g. `spark.driver.host=10.0.0.7;"
        "spark.executor.memory=4g`); they override the platform's",
    )
    spark_packages: str = setting(
        "CHURN_SPARK_PACKAGES",
        "",
        "Maven coordinates for `spark.jars.packages`, e.g. the hadoop-aws connector",
    )

    def __post_init__(self) -> None:
        self.extra_spark_conf()  # refuse a malformed CHURN_SPARK_CONF at load, not at the first Spark step

    def extra_spark_conf(self) -> dict[str, str]:
        pairs = {}
        for item in filter(None, (part.strip() for part in self.spark_conf.split(";"))):
            key, equals, value = item.partition("=")
            if not equals or not key.strip().startswith("spark."):
                raise SettingsError(f"CHURN_SPARK_CONF: {item!r} is not a `spark.<property>=<value>` pair")
            pairs[key.strip()] = value.strip()
        return pairs
