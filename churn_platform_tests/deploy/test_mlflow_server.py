"""MLflow as production runs it: a tracking server on PostgreSQL with its artifacts on S3 (moto's
server). The platform trains, registers and promotes a model through it, and scoring loads the
champion from it: nothing of the registry is a local file."""

import boto3
import dagster as dg
import psycopg2
import pytest
from mlflow.tracking import MlflowClient

from churn_platform.cli.demo import DemoPlan
from churn_platform.definitions import build_definitions
from churn_platform.ml.checks import promotion_gate_run_config
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.run_tags import partition_range_tags
from churn_platform.storage.model_registry import CHAMPION, MLflowTracking
from churn_platform_tests.support.data import S3_TEST_ENV, START, generate_into, settings_for
from churn_platform_tests.support.deployment import postgres_database, start_mlflow_server
from churn_platform_tests.support.stack import PERMISSIVE_GATE

pytestmark = pytest.mark.slow

DAYS, CUSTOMERS = 60, 150
MODEL_NAME = MLflowTracking.model_fields["model_name"].default


@pytest.fixture
def mlflow_server(s3_server, tmp_path):
    bucket = s3_server.new_bucket()
    env = {**S3_TEST_ENV, "MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint}
    with postgres_database("churn_mlflow") as database:
        server = start_mlflow_server(database.url, f"s3://{bucket}/mlflow", tmp_path, env)
        try:
            yield server, bucket, database
        finally:
            server.process.stop()


def test_a_model_is_trained_registered_promoted_and_served_through_the_mlflow_server(
    mlflow_server, s3_server, tmp_path
):
    server, bucket, database = mlflow_server
    settings = settings_for(
        str(tmp_path / "data"), CHURN_MLFLOW_TRACKING_URI=server.url, CHURN_TRAINING_WINDOW_DAYS="14"
    )
    assert settings.mlflow.artifact_location is None  # the server's own store, not a local folder
    generate_into(settings, days=DAYS, customers=CUSTOMERS, seed=13)
    defs = build_definitions(settings)
    plan = DemoPlan.for_days(START, DAYS)
    steps = [
        ("daily_ingestion_job", partition_range_tags(plan.first_day, plan.last_day), None, None),
        ("labels_job", partition_range_tags(plan.first_day, plan.last_labelled_day), None, None),
        ("training_job", {}, plan.last_labelled_day, promotion_gate_run_config(PERMISSIVE_GATE)),
        ("scoring_job", partition_range_tags(plan.scoring_from, plan.last_day), None, None),
    ]
    with dg.instance_for_test() as instance:
        for job, tags, partition, run_config in steps:
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, tags=tags, partition_key=partition, run_config=run_config
            )
            assert result.success, job
        model = instance.get_latest_materialization_event(keys.CHURN_MODEL).asset_materialization.metadata
        scores = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys.CHURN_SCORES, asset_partitions=[plan.last_day]), limit=1
        ).records[0]

    # The registry lives in the server's Postgres database ...
    client = MlflowClient(server.url)
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    digest = model["model_sha256"].value
    assert champion.tags["model_sha256"] == digest
    assert scores.asset_materialization.metadata["model_sha256"].value == digest  # scoring loaded it
    with psycopg2.connect(database.url.replace("+psycopg2", "")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT name, version FROM model_versions")
        assert (MODEL_NAME, str(champion.version)) in {(n, str(v)) for n, v in cursor.fetchall()}
        cursor.execute("SELECT alias FROM registered_model_aliases")
        assert CHAMPION in {row[0] for row in cursor.fetchall()}
    # ... and the model's files in its artifact store on S3, not beside the code.
    objects = boto3.client("s3", endpoint_url=s3_server.endpoint, **_boto_auth()).list_objects_v2(
        Bucket=bucket, Prefix="mlflow/"
    )
    names = [entry["Key"] for entry in objects.get("Contents", [])]
    assert any(name.endswith("MLmodel") for name in names), names
    assert not (tmp_path / "data" / "mlflow").exists()


def _boto_auth() -> dict[str, str]:
    return {
        "region_name": S3_TEST_ENV["AWS_REGION"],
        "aws_access_key_id": S3_TEST_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
    }
