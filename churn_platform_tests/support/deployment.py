"""The production services, real and on loopback: a fresh PostgreSQL database on the machine's
server, an MLflow tracking server on Postgres with artifacts on moto's S3, and a Spark standalone
cluster (master and worker started with the scripts pyspark ships)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from churn_platform_tests.support.servers import free_port, wait_for_port

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[2]
PG_HOST = os.environ.get("CHURN_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CHURN_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CHURN_TEST_PG_USER", "postgres")


def _admin_connection():
    import psycopg2

    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    connection.autocommit = True
    return connection


@dataclass(frozen=True)
class PostgresDatabase:
    name: str
    host: str = PG_HOST
    port: int = PG_PORT
    user: str = PG_USER

    @property
    def url(self) -> str:
        """A SQLAlchemy URL (MLflow's backend store); psycopg2 is what dagster-postgres installs."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{self.name}"

    @property
    def dagster_env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads its Postgres connection from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": self.name,
        }


@contextlib.contextmanager
def postgres_database(prefix: str = "churn_test") -> Iterator[PostgresDatabase]:
    """A new, empty database on the loopback PostgreSQL server, dropped afterwards."""
    database = PostgresDatabase(f"{prefix}_{uuid.uuid4().hex[:10]}")
    with contextlib.closing(_admin_connection()) as admin, admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{database.name}"')
    try:
        yield database
    finally:
        with contextlib.closing(_admin_connection()) as admin, admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')


class Process:
    """A server in its own process group, its output in a log file, stopped with its children."""

    def __init__(self, command: list[str], log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_path = log_path
        log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.process.args[0]} exited:\n{self.log_tail()}")
            time.sleep(0.2)
        raise TimeoutError(f"no {text!r} after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@dataclass
class MLflowServer:
    url: str
    process: Process


def start_mlflow_server(
    backend_store_uri: str, artifacts_destination: str, log_dir: Path, env: Mapping[str, str] | None = None
) -> MLflowServer:
    """`mlflow server` as production runs it: a database backend store and an artifact store it
    proxies (clients never need the artifact store's credentials)."""
    port = free_port()
    process = Process(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            backend_store_uri,
            "--artifacts-destination",
            artifacts_destination,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        log_dir / "mlflow-server.log",
        env,
    )
    try:
        wait_for_port(port, timeout=90)
    except TimeoutError:
        process.stop()
        raise TimeoutError(f"the MLflow server did not start:\n{process.log_tail()}") from None
    return MLflowServer(f"http://127.0.0.1:{port}", process)


@dataclass
class SparkCluster:
    master_url: str
    web_url: str
    master: Process
    worker: Process

    def stop(self) -> None:
        self.worker.stop()
        self.master.stop()


def start_spark_cluster(work_dir: Path, cores: int = 2, memory: str = "2g") -> SparkCluster:
    """A standalone master and one worker on loopback, from pyspark's own `bin/spark-class`."""
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    spark_class = str(spark_home / "bin" / "spark-class")
    env = {"SPARK_HOME": str(spark_home), "SPARK_NO_DAEMONIZE": "1", "PYSPARK_PYTHON": sys.executable}
    work_dir.mkdir(parents=True, exist_ok=True)
    port, web_port = free_port(), free_port()
    master = Process(
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(web_port),
        ],
        work_dir / "master.log",
        env,
    )
    master_url = f"spark://127.0.0.1:{port}"
    worker = None
    try:
        master.wait_for_log("I have been elected leader", timeout=60)
        worker = Process(
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                str(cores),
                "--memory",
                memory,
                "--webui-port",
                str(free_port()),
                "--work-dir",
                str(work_dir / "work"),
                master_url,
            ],
            work_dir / "worker.log",
            env,
        )
        worker.wait_for_log("Successfully registered with master", timeout=60)
    except BaseException:
        if worker is not None:
            worker.stop()
        master.stop()
        raise
    return SparkCluster(master_url, f"http://127.0.0.1:{web_port}", master, worker)


def production_instance_home(home: Path, monitoring: dict | None = None) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml as it is, except the run launcher: no Kubernetes
    API server runs here, so runs start as local processes (the local dagster.yaml's launcher,
    whose workers run monitoring checks; it cannot resume a run, so no resume attempts), and
    ``monitoring`` overrides run monitoring's settings (a test's shorter poll interval)."""
    import yaml

    config = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    config["run_launcher"] = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["run_launcher"]
    config["run_monitoring"] = {
        **config["run_monitoring"],
        "max_resume_run_attempts": 0,
        **(monitoring or {}),
    }
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home
