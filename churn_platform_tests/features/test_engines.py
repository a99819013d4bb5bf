"""One feature definition, two engines: DuckDB and Spark (local mode) must agree."""

import dagster as dg
import pandas as pd
import pytest
from dagster_pyspark import LazyPySparkResource
from upath import UPath

from churn_platform.crm.sentiment import score_ticket_sentiment
from churn_platform.crm.tickets import normalize_tickets
from churn_platform.definitions import build_definitions
from churn_platform.features.activity import compute_daily_activity
from churn_platform.features.rolling import compute_customer_features
from churn_platform.jobs import partition_range_tags
from churn_platform.logs.parsing import parse_log_file
from churn_platform.ml.labels import compute_churn_labels
from churn_platform.settings import load_settings
from churn_platform.sql_engine import DuckDBEngine, SparkEngine, spark_config
from churn_platform.synthetic.generator import events_to_jsonl, generate
from churn_platform_tests.conftest import START, generate_into

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark_engine():
    # One local session for the module (it takes ~15 s to start); small shuffles for small data.
    engine = SparkEngine(pyspark=LazyPySparkResource(spark_config=spark_config("local[2]", 2, "1g")))
    yield engine
    engine.pyspark.spark_session.stop()


@pytest.fixture(scope="module")
def inputs():
    data = generate(START, days=45, customers=150, seed=8)
    logs = pd.concat(
        [parse_log_file("mem://x", events_to_jsonl(d.events).encode(), d.date.isoformat()) for d in data.event_days],
        ignore_index=True,
    )
    sentiment = score_ticket_sentiment(normalize_tickets(data.tickets))
    return logs, sentiment


def same(left: pd.DataFrame, right: pd.DataFrame, keys: list[str]) -> None:
    left = left.sort_values(keys).reset_index(drop=True)
    right = right.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-9, atol=1e-12)


def test_daily_activity_features_and_labels_are_equal_on_both_engines(inputs, spark_engine):
    logs, sentiment = inputs
    duck = DuckDBEngine()
    activity = compute_daily_activity(logs, sentiment, duck.run_sql)
    same(activity, compute_daily_activity(logs, sentiment, spark_engine.run_sql), ["customer_id", "activity_date"])
    as_of = pd.date_range("2026-02-01", "2026-02-14").strftime("%Y-%m-%d").tolist()
    features = compute_customer_features(activity, as_of, duck.run_sql)
    assert len(features) > 1000
    same(features, compute_customer_features(activity, as_of, spark_engine.run_sql), ["as_of_date", "customer_id"])
    label_days = pd.date_range("2026-01-01", "2026-01-10").strftime("%Y-%m-%d").tolist()
    labels = compute_churn_labels(activity, label_days, duck.run_sql)
    assert labels["churned"].sum() > 0
    same(labels, compute_churn_labels(activity, label_days, spark_engine.run_sql), ["as_of_date", "customer_id"])


def test_a_multi_day_spark_run_equals_day_by_day(inputs, spark_engine):
    logs, sentiment = inputs
    activity = compute_daily_activity(logs, sentiment)
    days = ["2026-02-03", "2026-02-04", "2026-02-05"]
    together = compute_customer_features(activity, days, spark_engine.run_sql)
    one_by_one = pd.concat([compute_customer_features(activity, [d], spark_engine.run_sql) for d in days], ignore_index=True)
    same(together, one_by_one, ["as_of_date", "customer_id"])


def test_the_engine_is_chosen_by_configuration_and_the_graph_stays_the_same(tmp_path, spark_engine):
    outputs = {}
    for engine in ("duckdb", "spark"):
        settings = load_settings({"CHURN_DATA_DIR": str(tmp_path / engine), "CHURN_FEATURE_ENGINE": engine,
                                  "CHURN_SPARK_MASTER": "local[2]", "CHURN_SPARK_SHUFFLE_PARTITIONS": "2"})
        generate_into(settings, days=12, customers=80, seed=2)
        defs = build_definitions(settings)
        assert type(defs.resources["feature_engine"]).__name__ == {"duckdb": "DuckDBEngine", "spark": "SparkEngine"}[engine]
        with dg.instance_for_test() as instance:
            assert defs.resolve_job_def("daily_ingestion_job").execute_in_process(
                instance=instance, tags=partition_range_tags("2026-01-01", "2026-01-12")).success
        outputs[engine] = {
            key: pd.read_parquet(UPath(settings.warehouse_dir) / "features" / key / "2026-01-12.parquet")
            for key in ("customer_daily_activity", "customer_features")
        }
    same(outputs["duckdb"]["customer_daily_activity"], outputs["spark"]["customer_daily_activity"], ["customer_id", "activity_date"])
    same(outputs["duckdb"]["customer_features"], outputs["spark"]["customer_features"], ["as_of_date", "customer_id"])
