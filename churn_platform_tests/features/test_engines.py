"""One feature definition, two engines: DuckDB and Spark (on a real standalone cluster) must agree."""

import json
import re
import urllib.request

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster_pyspark import LazyPySparkResource
from upath import UPath

from churn_platform.crm.sentiment import score_ticket_sentiment
from churn_platform.crm.tickets import normalize_tickets
from churn_platform.definitions import build_definitions
from churn_platform.engines.duckdb import DuckDBEngine
from churn_platform.engines.spark import SparkEngine, spark_config
from churn_platform.features.activity import DAILY_ACTIVITY_SQL, compute_daily_activity
from churn_platform.features.rolling import compute_customer_features
from churn_platform.logs.parsing import parse_log_file
from churn_platform.ml.labels import compute_churn_labels
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.run_tags import partition_range_tags
from churn_platform.settings import SettingsError, load_settings
from churn_platform.storage.connection import ObjectStoreConnection
from churn_platform.storage.files import StorageError
from churn_platform.storage.parquet_io_manager import ParquetIOManager
from churn_platform.synthetic.generator import events_to_jsonl, generate
from churn_platform_tests.support.data import S3_TEST_ENV, START, generate_into
from churn_platform_tests.support.deployment import start_spark_cluster

LOGS, ACTIVITY = keys.INTERACTION_LOGS, keys.CUSTOMER_DAILY_ACTIVITY
SPARK_METADATA = b"org.apache.spark.sql.parquet.row.metadata"  # in the footer of files Spark wrote

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory):
    """A real standalone cluster: the master and a worker, each its own JVM; the executors run
    in a third, so every table crosses the network and every file is written by another process."""
    cluster = start_spark_cluster(tmp_path_factory.mktemp("spark"), cores=2, memory="2g")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def spark_engine(spark_cluster):
    # One session for the module (it takes ~15 s to start); small shuffles for small data.
    engine = SparkEngine(
        pyspark=LazyPySparkResource(spark_config=spark_config(spark_cluster.master_url, 2, "1g"))
    )
    yield engine
    engine.pyspark.spark_session.stop()


def test_the_parity_tests_run_on_the_standalone_cluster(spark_engine, spark_cluster):
    session = spark_engine.pyspark.spark_session
    assert session.sparkContext.master == spark_cluster.master_url
    assert session.range(1000).selectExpr("sum(id)").collect()[0][0] == 499500
    # The master sees this session as an application holding the worker's cores: the work ran in
    # an executor of the worker, not in the driver.
    with urllib.request.urlopen(f"{spark_cluster.web_url}/json/", timeout=10) as response:
        master = json.load(response)
    (app,) = [a for a in master["activeapps"] if a["id"] == session.sparkContext.applicationId]
    assert app["cores"] > 0 and master["aliveworkers"] == 1


@pytest.fixture(scope="module")
def inputs():
    data = generate(START, days=45, customers=150, seed=8)
    logs = pd.concat(
        [
            parse_log_file("mem://x", events_to_jsonl(d.events).encode(), d.date.isoformat())
            for d in data.event_days
        ],
        ignore_index=True,
    )
    sentiment = score_ticket_sentiment(normalize_tickets(data.tickets))
    return logs, sentiment


def days(first: str, last: str) -> list[str]:
    return pd.date_range(first, last).strftime("%Y-%m-%d").tolist()


@pytest.fixture(scope="module")
def warehouse(inputs, tmp_path_factory) -> ParquetIOManager:
    """The logs stored as the platform stores them: one Parquet file per day."""
    manager = ParquetIOManager(base_path=str(tmp_path_factory.mktemp("warehouse")))
    logs, _ = inputs
    manager.write_partitions(LOGS, sorted(logs["event_date"].astype(str).unique()), logs, "event_date")
    return manager


def staging_left(warehouse_dir) -> list:
    """What Spark's staging folder still holds after a write (it must be cleaned up)."""
    staging = warehouse_dir / "_staging"
    return list(staging.iterdir()) if staging.exists() else []


def same(left: pd.DataFrame, right: pd.DataFrame, columns: list[str]) -> None:
    left = left.sort_values(columns).reset_index(drop=True)
    right = right.sort_values(columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-9, atol=1e-12)


def test_daily_activity_features_and_labels_are_equal_on_both_engines(inputs, spark_engine):
    logs, sentiment = inputs
    duck = DuckDBEngine()
    activity = compute_daily_activity(logs, sentiment, duck.query_pandas)
    same(
        activity,
        compute_daily_activity(logs, sentiment, spark_engine.query_pandas),
        ["customer_id", "activity_date"],
    )
    as_of = pd.date_range("2026-02-01", "2026-02-14").strftime("%Y-%m-%d").tolist()
    features = compute_customer_features(activity, as_of, duck.query_pandas)
    assert len(features) > 1000
    same(
        features,
        compute_customer_features(activity, as_of, spark_engine.query_pandas),
        ["as_of_date", "customer_id"],
    )
    label_days = pd.date_range("2026-01-01", "2026-01-10").strftime("%Y-%m-%d").tolist()
    labels = compute_churn_labels(activity, label_days, duck.query_pandas)
    assert labels["churned"].sum() > 0
    same(
        labels,
        compute_churn_labels(activity, label_days, spark_engine.query_pandas),
        ["as_of_date", "customer_id"],
    )


def test_a_multi_day_spark_run_equals_day_by_day(inputs, spark_engine):
    logs, sentiment = inputs
    activity = compute_daily_activity(logs, sentiment)
    days = ["2026-02-03", "2026-02-04", "2026-02-05"]
    together = compute_customer_features(activity, days, spark_engine.query_pandas)
    one_by_one = pd.concat(
        [compute_customer_features(activity, [d], spark_engine.query_pandas) for d in days], ignore_index=True
    )
    same(together, one_by_one, ["as_of_date", "customer_id"])


def test_the_engine_is_chosen_by_configuration_and_the_graph_stays_the_same(tmp_path, spark_engine):
    outputs = {}
    for engine in ("duckdb", "spark"):
        settings = load_settings(
            {
                "CHURN_DATA_DIR": str(tmp_path / engine),
                "CHURN_FEATURE_ENGINE": engine,
                "CHURN_SPARK_MASTER": "local[2]",
                "CHURN_SPARK_SHUFFLE_PARTITIONS": "2",
            }
        )
        generate_into(settings, days=12, customers=80, seed=2)
        defs = build_definitions(settings)
        assert (
            type(defs.resources["feature_engine"]).__name__
            == {"duckdb": "DuckDBEngine", "spark": "SparkEngine"}[engine]
        )
        with dg.instance_for_test() as instance:
            assert (
                defs.resolve_job_def("daily_ingestion_job")
                .execute_in_process(instance=instance, tags=partition_range_tags("2026-01-01", "2026-01-12"))
                .success
            )
        footer = pq.read_schema(
            UPath(settings.storage.warehouse_dir).joinpath(*keys.CUSTOMER_FEATURES.path, "2026-01-12.parquet")
        ).metadata
        assert (SPARK_METADATA in (footer or {})) == (engine == "spark")  # Spark wrote the warehouse itself
        outputs[engine] = {
            key: pd.read_parquet(
                UPath(settings.storage.warehouse_dir).joinpath(*key.path, "2026-01-12.parquet")
            )
            for key in (keys.CUSTOMER_DAILY_ACTIVITY, keys.CUSTOMER_FEATURES)
        }
    same(
        outputs["duckdb"][keys.CUSTOMER_DAILY_ACTIVITY],
        outputs["spark"][keys.CUSTOMER_DAILY_ACTIVITY],
        ["customer_id", "activity_date"],
    )
    same(
        outputs["duckdb"][keys.CUSTOMER_FEATURES],
        outputs["spark"][keys.CUSTOMER_FEATURES],
        ["as_of_date", "customer_id"],
    )


def test_both_engines_scan_the_partition_files_themselves_and_agree(inputs, warehouse, spark_engine):
    logs, sentiment = inputs
    files = warehouse.partition_files(LOGS, days("2026-01-01", "2026-02-14"))
    assert len(files.uris) == 45 and all(u.endswith(".parquet") for u in files.uris)
    from_memory = compute_daily_activity(logs, sentiment, DuckDBEngine().query_pandas)
    assert len(from_memory) > 1000
    same(
        compute_daily_activity(files, sentiment, DuckDBEngine().query_pandas),
        from_memory,
        ["customer_id", "activity_date"],
    )
    same(
        compute_daily_activity(files, sentiment, spark_engine.query_pandas),
        from_memory,
        ["customer_id", "activity_date"],
    )


def test_spark_writes_the_warehouse_itself_and_a_range_equals_day_by_day(
    inputs, warehouse, spark_engine, tmp_path
):
    _, sentiment = inputs
    files = warehouse.partition_files(LOGS, days("2026-01-01", "2026-02-14"))
    activity = spark_engine.query_table(DAILY_ACTIVITY_SQL, {"logs": files, "sentiment": sentiment})
    # One range write (as a single-run backfill does), then the same days one by one.
    together = ParquetIOManager(base_path=str(tmp_path / "range"))
    range_days = days("2026-01-01", "2026-02-14")
    schema, written = together.write_partitions(ACTIVITY, range_days, activity, "activity_date")
    assert [w["partition"] for w in written] == range_days and sum(w["rows"] for w in written) > 1000
    assert "activity_date" in schema.names
    apart = ParquetIOManager(base_path=str(tmp_path / "apart"))
    for day in ["2026-01-20", "2026-02-14"]:
        # The day computed on its own: its own log file and its own tickets.
        one = spark_engine.query_table(
            DAILY_ACTIVITY_SQL,
            {
                "logs": warehouse.partition_files(LOGS, [day]),
                "sentiment": sentiment[sentiment["updated_date"].astype(str) == day],
            },
        )
        _, [entry] = apart.write_partitions(ACTIVITY, [day], one, "activity_date")
        assert entry["sha256"] and entry["rows"] > 0
        range_file, day_file = together.path_for(ACTIVITY, day), apart.path_for(ACTIVITY, day)
        assert SPARK_METADATA in pq.read_schema(range_file.path).metadata  # written by Spark, not the driver
        # Rows sorted in the same order in both: the same table exactly, row for row.
        pd.testing.assert_frame_equal(
            pd.read_parquet(range_file.path), pd.read_parquet(day_file.path), check_exact=True
        )
    assert not staging_left(tmp_path / "range")
    # Spark and DuckDB wrote the same rows.
    duck = ParquetIOManager(base_path=str(tmp_path / "duck"))
    duck.write_partitions(
        ACTIVITY,
        range_days,
        compute_daily_activity(files, sentiment, DuckDBEngine().query_table),
        "activity_date",
    )
    for day in ["2026-01-01", "2026-02-14"]:
        same(
            pd.read_parquet(duck.path_for(ACTIVITY, day).path),
            pd.read_parquet(together.path_for(ACTIVITY, day).path),
            ["customer_id", "activity_date"],
        )


def test_spark_output_for_a_day_without_rows_is_an_empty_file_with_the_schema(
    warehouse, spark_engine, tmp_path
):
    manager = ParquetIOManager(base_path=str(tmp_path))
    frame = spark_engine.query_table(
        "SELECT customer_id, event_date FROM logs WHERE event_date = DATE '2026-01-03'",
        {"logs": warehouse.partition_files(LOGS, ["2026-01-03"])},
    )
    _, written = manager.write_partitions(LOGS, ["2026-01-02", "2026-01-03"], frame, "event_date")
    assert [w["rows"] > 0 for w in written] == [False, True]
    empty = pq.read_table(manager.path_for(LOGS, "2026-01-02").path)
    assert empty.num_rows == 0 and empty.schema.names == ["customer_id", "event_date"]


def test_spark_rows_outside_the_range_fail_and_nothing_is_written(warehouse, spark_engine, tmp_path):
    manager = ParquetIOManager(base_path=str(tmp_path))
    frame = spark_engine.query_table(
        "SELECT customer_id, event_date FROM logs",
        {"logs": warehouse.partition_files(LOGS, ["2026-01-03", "2026-01-04"])},
    )
    with pytest.raises(StorageError, match=r"values outside the partitions being written: \['2026-01-04'\]"):
        manager.write_partitions(LOGS, ["2026-01-03"], frame, "event_date")
    assert not manager.path_for(LOGS, "2026-01-03").exists()
    assert not staging_left(tmp_path)


def test_spark_without_a_connector_for_the_store_goes_through_the_driver(
    inputs, warehouse, spark_engine, s3_server, monkeypatch
):
    """No hadoop-aws jar here (Maven is unreachable): S3 is read and written via Arrow, same result."""
    for name, value in S3_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    connection = ObjectStoreConnection(
        endpoint_url=s3_server.endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    remote = ParquetIOManager(base_path=f"s3://{s3_server.new_bucket()}/warehouse", connection=connection)
    logs, sentiment = inputs
    remote.write_partitions(
        LOGS,
        days("2026-01-01", "2026-01-05"),
        logs[logs["event_date"].astype(str) <= "2026-01-05"],
        "event_date",
    )
    files = remote.partition_files(LOGS, days("2026-01-01", "2026-01-05"))
    sentiment = sentiment[sentiment["updated_date"].astype(str) <= "2026-01-05"]
    assert files.uris[0].startswith("s3://") and "testing" not in repr(files)
    activity = spark_engine.query_table(DAILY_ACTIVITY_SQL, {"logs": files, "sentiment": sentiment})
    _, written = remote.write_partitions(
        ACTIVITY, days("2026-01-01", "2026-01-05"), activity, "activity_date"
    )
    assert len(written) == 5 and all(w["uri"].startswith("s3://") for w in written)
    local = compute_daily_activity(
        warehouse.partition_files(LOGS, days("2026-01-01", "2026-01-05")),
        sentiment,
        DuckDBEngine().query_pandas,
    )
    stored = pd.concat(
        [pd.read_parquet(remote.path_for(ACTIVITY, d).open("rb")) for d in days("2026-01-01", "2026-01-05")]
    )
    same(stored, local, ["customer_id", "activity_date"])


def test_spark_settings_come_from_the_environment():
    settings = load_settings(
        {
            "CHURN_FEATURE_ENGINE": "spark",
            "CHURN_SPARK_MASTER": "spark://spark-master:7077",
            "CHURN_SPARK_SHUFFLE_PARTITIONS": "64",
            "CHURN_SPARK_DRIVER_MEMORY": "6g",
            "CHURN_SPARK_PACKAGES": "org.apache.hadoop:hadoop-aws:3.4.1",
            "CHURN_SPARK_CONF": "spark.driver.host=10.0.0.7; spark.sql.shuffle.partitions=32;",
        }
    )
    config = build_definitions(settings).resources["feature_engine"].pyspark.spark_config
    assert config["spark.driver.host"] == "10.0.0.7"  # CHURN_SPARK_CONF: any property, and it wins
    assert {
        k: config[k]
        for k in (
            "spark.master",
            "spark.sql.shuffle.partitions",
            "spark.driver.memory",
            "spark.jars.packages",
        )
    } == {
        "spark.master": "spark://spark-master:7077",
        "spark.sql.shuffle.partitions": "32",  # CHURN_SPARK_CONF wins over CHURN_SPARK_SHUFFLE_PARTITIONS
        "spark.driver.memory": "6g",
        "spark.jars.packages": "org.apache.hadoop:hadoop-aws:3.4.1",
    }
    assert "spark.jars.packages" not in spark_config("local[2]", 2, "1g")  # nothing to fetch by default


@pytest.mark.parametrize("conf", ["spark.driver.host", "driver.host=x", "spark.a=1;oops"])
def test_a_malformed_spark_conf_is_refused_naming_the_pair(conf):
    with pytest.raises(
        SettingsError, match=r"CHURN_SPARK_CONF: '.*' is not a `spark.<property>=<value>` pair"
    ):
        load_settings({"CHURN_SPARK_CONF": conf})


def test_a_spark_job_failing_mid_write_leaves_no_files_and_no_staging(warehouse, spark_engine, tmp_path):
    manager = ParquetIOManager(base_path=str(tmp_path))
    # Fails on the executors, while writing (Spark 4's ANSI casts refuse 'x' as an integer).
    frame = spark_engine.query_table(
        "SELECT event_date, CAST(CASE WHEN customer_id > 0 THEN 'x' END AS INT) AS broken FROM logs",
        {"logs": warehouse.partition_files(LOGS, ["2026-01-03"])},
    )
    with pytest.raises(
        StorageError,
        match=(
            f"(?s)Spark could not write {re.escape(LOGS.to_user_string())} under "
            ".*CAST_INVALID_INPUT.*re-run the range"
        ),
    ):
        manager.write_partitions(LOGS, ["2026-01-03"], frame, "event_date")
    assert not manager.path_for(LOGS, "2026-01-03").exists()
    assert not staging_left(tmp_path)
