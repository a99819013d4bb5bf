"""`churn-platform doctor`, run as an operator runs it, against a production-s3 configuration whose
services all run on loopback: moto's S3 (warehouse and a versioned, locked backup bucket), the
Dagster instance on Postgres (deploy/dagster.yaml), an MLflow server on Postgres with artifacts on
S3, the Zendesk simulator, a Spark standalone cluster, and a Slack-shaped webhook URL. Everything
up: exit 0, every check ok. Then one service at a time broken: exit 1, exactly that check fails
and names the setting to change; then every service down at once, each in another way. No secret
(AWS keys, the Zendesk token, the Slack URL or its token, a password in a URL) ever reaches the
output. The servers start once for the module; each case is one `churn-platform doctor` process
(~4 s, mostly imports)."""

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from churn_platform.crm.simulator import ZendeskSimulator
from churn_platform.settings import load_settings
from churn_platform_tests.support.deployment import (
    BIN,
    SparkCluster,
    postgres_database,
    production_instance_home,
    start_mlflow_server,
    start_spark_cluster,
)
from churn_platform_tests.support.servers import S3Server, free_port

pytestmark = pytest.mark.slow

CLI = str(BIN / "churn-platform")
SERVICES = {"warehouse", "backups", "dagster", "mlflow", "crm", "spark", "slack", "online", "serving"}
AWS_KEY_ID, AWS_SECRET = "AKIADOCTOR0000000001", "doctor-aws-secret-9f8e7d6c5b4a"
EMAIL, ZENDESK_TOKEN = "ops@example.com", "doctor-zendesk-token-3c2b1a"
SLACK_TOKEN = "XXXXXXXX"
SLACK_URL = f"https://hooks.slack.com/services/T000/B000/{SLACK_TOKEN}"
PG_PASSWORD = "s3cret-pg-password"
API_KEY = "doctor-serving-key-" + uuid.uuid4().hex
SECRETS = [AWS_KEY_ID, AWS_SECRET, ZENDESK_TOKEN, SLACK_URL, SLACK_TOKEN, PG_PASSWORD, API_KEY]


@dataclass
class Stack:
    env: dict[str, str]
    s3: S3Server
    spark: SparkCluster
    work: Path


@dataclass(frozen=True)
class Line:
    status: str
    setting: str
    detail: str


@dataclass(frozen=True)
class Report:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> dict[str, Line]:
        parsed = {}
        for line in self.stdout.splitlines():
            fields = line.split(None, 3)
            assert len(fields) == 4 and fields[0] in ("ok", "FAIL"), f"not a report line: {line!r}\n{self}"
            parsed[fields[1]] = Line(fields[0], fields[2], fields[3])
        return parsed

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-3000:]}"

    def assert_no_secret(self, *more: str) -> None:
        for secret in [*SECRETS, *more]:
            assert secret not in self.stdout + self.stderr, f"{secret!r} leaked:\n{self}"


def _hermetic_environ() -> dict[str, str]:
    """The runner's environment without anything that configures the platform or its services."""
    prefixes = ("CHURN_", "DAGSTER_", "AWS_", "ZENDESK_", "SLACK_", "MLFLOW_", "GOOGLE_", "PG")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def doctor(stack: Stack, **changes: str | None) -> Report:
    """`churn-platform doctor` with the stack's environment, ``changes`` applied (None: unset)."""
    env = {**_hermetic_environ(), **stack.env}
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    result = subprocess.run(
        [CLI, "doctor"], env=env, cwd=stack.work, capture_output=True, text=True, timeout=180
    )
    return Report(result.returncode, result.stdout, result.stderr)


def _stop_spark(started: Future) -> None:
    with contextlib.suppress(Exception):  # a cluster that failed to start cleaned up after itself
        started.result().stop()


def _wait_until_answering(url: str, timeout: float = 90.0) -> None:
    """The MLflow server listens before its worker has booted: wait for a real answer, so that the
    doctor's 5 s request timeout measures the server, not its start-up."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(s3_server: S3Server, tmp_path_factory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("doctor")
    aws = {"AWS_ACCESS_KEY_ID": AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_REGION": "us-east-1"}
    with contextlib.ExitStack() as cleanup, ThreadPoolExecutor(1) as pool:
        dagster_db = cleanup.enter_context(postgres_database("doctor_dagster"))
        mlflow_db = cleanup.enter_context(postgres_database("doctor_mlflow"))
        # The Spark cluster and the MLflow server start side by side (each takes ~10-20 s).
        spark_started = pool.submit(start_spark_cluster, work / "spark", 1, "1g")
        cleanup.callback(_stop_spark, spark_started)
        mlflow = start_mlflow_server(
            mlflow_db.url,
            f"s3://{s3_server.new_bucket()}/mlflow",
            work,
            env={"MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint, **aws},
        )
        cleanup.callback(mlflow.process.stop)
        _wait_until_answering(f"{mlflow.url}/health")
        simulator = ZendeskSimulator([], email=EMAIL, api_token=ZENDESK_TOKEN).start()
        cleanup.callback(simulator.stop)
        spark = spark_started.result()
        env = {
            "CHURN_ENV": "production-s3",
            "CHURN_S3_BUCKET": s3_server.new_bucket(versioned=True),
            "CHURN_S3_BACKUP_BUCKET": s3_server.new_bucket(versioned=True, object_lock=True),
            "CHURN_S3_ENDPOINT_URL": s3_server.endpoint,
            **aws,
            "DAGSTER_HOME": str(production_instance_home(work / "dagster_home")),
            **dagster_db.dagster_env,
            "CHURN_MLFLOW_TRACKING_URI": mlflow.url,
            "CHURN_MLFLOW_DATABASE_URL": mlflow_db.url,  # the server's database: metadata backups dump it
            "CHURN_CRM_URL": simulator.url,
            "CHURN_CRM_EMAIL": EMAIL,
            "ZENDESK_API_TOKEN": ZENDESK_TOKEN,
            "CHURN_FEATURE_ENGINE": "spark",
            "CHURN_SPARK_MASTER": spark.master_url,
            "SLACK_WEBHOOK_URL": SLACK_URL,
            "CHURN_ONLINE_KEY_PREFIX": f"doctor-{uuid.uuid4().hex[:8]}",  # the Redis on loopback
            "CHURN_SERVING_API_KEY": API_KEY,
        }
        load_settings(env)  # a complete production configuration, or this fixture says what is missing
        yield Stack(env, s3_server, spark, work)


def _unversioned_backup_bucket(stack: Stack) -> dict[str, str | None]:
    return {"CHURN_S3_BACKUP_BUCKET": stack.s3.new_bucket()}


def _closed_port(name: str, template: str) -> Callable[[Stack], dict[str, str | None]]:
    """``name`` set to ``template`` with a loopback port nothing listens on."""
    return lambda stack: {name: template.format(port=free_port())}


def _set(**changes: str | None) -> Callable[[Stack], dict[str, str | None]]:
    return lambda stack: changes


def test_every_service_up_is_reported_ok(stack):
    report = doctor(stack)
    assert report.returncode == 0, report
    lines = report.lines
    assert set(lines) == SERVICES, report
    assert all(line.status == "ok" for line in lines.values()), report
    assert lines["warehouse"].setting == "CHURN_S3_BUCKET"
    assert "versioning Enabled, Object Lock Enabled" in lines["backups"].detail
    assert "postgres storage" in lines["dagster"].detail
    assert "registry answered" in lines["mlflow"].detail
    assert "authenticated" in lines["crm"].detail
    assert "accepts connections" in lines["spark"].detail
    assert lines["slack"].detail.startswith("an incoming-webhook URL")
    assert "answered; no features loaded yet" in lines["online"].detail
    assert lines["serving"].detail.startswith(f"set ({len(API_KEY)} characters); CRM webhooks off")
    report.assert_no_secret()


# case -> (how to break it, the service that must fail, the setting its line names, text in its detail).
# Spark's case (its master stopped) is the module's last test.
BROKEN = {
    "warehouse bucket missing": (
        _set(CHURN_S3_BUCKET=f"missing-{uuid.uuid4().hex[:8]}"),
        "warehouse",
        "CHURN_S3_BUCKET",
        "does not exist",
    ),
    "backup bucket without versions": (
        _unversioned_backup_bucket,
        "backups",
        "CHURN_S3_BACKUP_BUCKET",
        "does not keep versions",
    ),
    "dagster database missing": (
        _set(DAGSTER_PG_DB="doctor_no_such_database"),
        "dagster",
        "DAGSTER_PG_DB",
        "does not exist",
    ),
    "mlflow database down, password in the URI": (
        lambda stack: {
            **_closed_port(
                "CHURN_MLFLOW_TRACKING_URI",
                f"postgresql+psycopg2://u:{PG_PASSWORD}@127.0.0.1:{{port}}/mlflow",
            )(stack),
            # A database tracking store needs its artifacts in a bucket (the production check).
            "CHURN_MLFLOW_ARTIFACT_LOCATION": "s3://doctor-mlflow/artifacts",
        },
        "mlflow",
        "CHURN_MLFLOW_TRACKING_URI",
        "postgresql+psycopg2://127.0.0.1:",
    ),
    "crm wrong token": (
        _set(ZENDESK_API_TOKEN="doctor-wrong-token-7a6b"),
        "crm",
        "CHURN_CRM_EMAIL/ZENDESK_API_TOKEN",
        "refused the credentials (401)",
    ),
    "redis down": (
        _closed_port("CHURN_REDIS_URL", "redis://127.0.0.1:{port}/0"),
        "online",
        "CHURN_REDIS_URL",
        "Connection refused",
    ),
    "service key too short": (
        _set(CHURN_SERVING_API_KEY="short-key"),
        "serving",
        "CHURN_SERVING_API_KEY",
        "shorter than 16 characters",
    ),
    "slack url not https": (
        _set(SLACK_WEBHOOK_URL=SLACK_URL.replace("https:", "http:")),
        "slack",
        "SLACK_WEBHOOK_URL",
        "is not https",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_service_down_is_the_one_failure_and_names_its_setting(stack, case):
    breaks, service, setting, text = BROKEN[case]
    changes = breaks(stack)
    report = doctor(stack, **changes)
    assert report.returncode == 1, report
    lines = report.lines
    assert set(lines) == SERVICES, report
    assert {name for name, line in lines.items() if line.status == "FAIL"} == {service}, report
    assert lines[service].setting == setting, report
    assert text in lines[service].detail, report
    assert f"1 of {len(SERVICES)} checks failed" in report.stderr
    report.assert_no_secret(*(value for value in changes.values() if value and "token" in value))


def test_every_service_down_at_once_each_named(stack):
    """Other ways each service can be down, all in one run: every line fails on its own setting."""
    simulator = ZendeskSimulator([], email=EMAIL, api_token=ZENDESK_TOKEN).start()
    stopped_crm = simulator.url
    simulator.stop()
    sqlite_home = stack.work / "sqlite_home"
    sqlite_home.mkdir()
    report = doctor(
        stack,
        CHURN_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
        DAGSTER_HOME=str(sqlite_home),
        CHURN_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}",
        CHURN_CRM_URL=stopped_crm,
        CHURN_SPARK_MASTER=f"spark://127.0.0.1:{free_port()}",
        SLACK_WEBHOOK_URL=f"https://example.com/services/T000/B000/{SLACK_TOKEN}",
        CHURN_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        CHURN_SERVING_API_KEY="guessable",
    )
    assert report.returncode == 1, report
    expected = {
        "warehouse": ("CHURN_S3_ENDPOINT_URL", "cannot reach http://127.0.0.1:"),
        "backups": ("CHURN_S3_ENDPOINT_URL", "cannot reach http://127.0.0.1:"),
        "dagster": ("DAGSTER_HOME", "sqlite storage; production expects Postgres: deploy/dagster.yaml"),
        "mlflow": ("CHURN_MLFLOW_TRACKING_URI", "connection refused"),
        "crm": ("CHURN_CRM_URL", "connection failed"),
        "spark": ("CHURN_SPARK_MASTER", "no master answers"),
        "slack": ("SLACK_WEBHOOK_URL", "host is not hooks.slack.com"),
        "online": ("CHURN_REDIS_URL", "Connection refused"),
        "serving": ("CHURN_SERVING_API_KEY", "shorter than 16 characters"),
    }
    lines = report.lines
    assert {name: line.status for name, line in lines.items()} == dict.fromkeys(SERVICES, "FAIL"), report
    for service, (setting, text) in expected.items():
        assert lines[service].setting == setting and text in lines[service].detail, report
    assert f"{len(SERVICES)} of {len(SERVICES)} checks failed" in report.stderr
    report.assert_no_secret()


def test_settings_that_do_not_load_are_reported_naming_each_variable(stack):
    report = doctor(stack, SLACK_WEBHOOK_URL=None, CHURN_CRM_URL=None)
    assert report.returncode == 1, report
    rows = [line.split(None, 3) for line in report.stdout.splitlines()]
    assert [row[:3] for row in rows] == [
        ["FAIL", "settings", "SLACK_WEBHOOK_URL"],
        ["FAIL", "settings", "CHURN_CRM_URL"],
    ], report
    report.assert_no_secret()


def test_an_unreachable_postgres_names_host_and_port(stack, monkeypatch):
    """In process (no subprocess needed): the instance's database refusing connections."""
    from churn_platform.cli.doctor import check_dagster

    for name, value in {**stack.env, "DAGSTER_PG_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    result = check_dagster(load_settings(stack.env))
    assert not result.ok and result.setting == "DAGSTER_PG_HOST/DAGSTER_PG_PORT", result
    assert "Connection refused" in result.detail


def test_a_stopped_spark_master_fails_the_spark_check(stack):
    # Last in the module: the master stays down (the fixture stops the worker afterwards).
    stack.spark.master.stop()
    report = doctor(stack)
    assert report.returncode == 1, report
    lines = report.lines
    assert {name for name, line in lines.items() if line.status == "FAIL"} == {"spark"}, report
    assert lines["spark"].setting == "CHURN_SPARK_MASTER"
    assert "no master answers" in lines["spark"].detail
    report.assert_no_secret()


def test_gcs_buckets_are_listed_and_a_missing_one_is_named(gcs_server, tmp_path):
    """The GCS side of the storage checks, in process against the emulator."""
    from churn_platform.cli.doctor import check_backups, check_warehouse
    from churn_platform_tests.support.data import gcs_settings

    settings = gcs_settings(gcs_server, str(tmp_path / "mlflow"))
    warehouse, backups = check_warehouse(settings), check_backups(settings)
    assert warehouse.ok and warehouse.setting == "CHURN_GCS_BUCKET", warehouse
    assert backups.ok and "retention" in backups.detail, backups
    missing = load_settings(
        {
            "CHURN_ENV": "gcs",
            "CHURN_GCS_BUCKET": f"missing-{uuid.uuid4().hex[:8]}",
            "CHURN_GCS_BACKUP_BUCKET": gcs_server.new_bucket(),
            "CHURN_GCS_ENDPOINT_URL": gcs_server.endpoint,
            "CHURN_GCS_TOKEN": "anon",
            "GOOGLE_CLOUD_PROJECT": "test",
        }
    )
    result = check_warehouse(missing)
    assert not result.ok and result.setting == "CHURN_GCS_BUCKET" and "does not exist" in result.detail
