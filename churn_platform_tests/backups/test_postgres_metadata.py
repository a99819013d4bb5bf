"""Metadata backups in production: the Dagster instance on PostgreSQL and the MLflow server's
PostgreSQL database are dumped with pg_dump into the backup store; the restore drill restores both
into scratch databases and opens them; `churn-platform restore` puts them into empty databases and
refuses databases that hold data. Real servers: PostgreSQL on loopback, `mlflow server`, moto S3."""

import json

import dagster as dg
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from churn_platform.backups.catalog import find_snapshot, read_verified
from churn_platform.cli.demo import DemoPlan, run_demo
from churn_platform.cli.main import main
from churn_platform.definitions import build_definitions
from churn_platform.orchestration import asset_keys as keys
from churn_platform.settings import load_settings
from churn_platform.storage.model_registry import CHAMPION
from churn_platform_tests.support.data import S3_TEST_ENV, START, generate_into
from churn_platform_tests.support.deployment import (
    postgres_database,
    production_instance_home,
    start_mlflow_server,
)
from churn_platform_tests.support.stack import PERMISSIVE_GATE

pytestmark = pytest.mark.slow

DAYS, CUSTOMERS = 60, 150
# Trust authentication on the loopback server accepts any password: these stand for real ones and
# must never appear in a manifest, a log line or a CLI message.
INSTANCE_PASSWORD, MLFLOW_PASSWORD = "instance-pw-4f1c", "mlflow-pw-9a2e"


def with_password(url: str, password: str) -> str:
    return url.replace("://postgres@", f"://postgres:{password}@")


@pytest.fixture(scope="module")
def production(s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("postgres_backups")
    bucket = s3_server.new_bucket()
    with postgres_database("churn_instance") as instance_db, postgres_database("churn_mlflow") as mlflow_db:
        server = start_mlflow_server(
            mlflow_db.url,
            f"s3://{bucket}/mlflow",
            root,
            {**S3_TEST_ENV, "MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint},
        )
        environ = {
            **instance_db.dagster_env,
            "DAGSTER_PG_PASSWORD": INSTANCE_PASSWORD,
            "DAGSTER_HOME": str(production_instance_home(root / "dagster_home")),
            "CHURN_DATA_DIR": str(root / "data"),
            "CHURN_BACKUP_DIR": str(root / "backups"),
            "CHURN_START_DATE": START.isoformat(),
            "CHURN_TRAINING_WINDOW_DAYS": "14",
            "CHURN_MLFLOW_TRACKING_URI": server.url,
            "CHURN_MLFLOW_DATABASE_URL": with_password(mlflow_db.url, MLFLOW_PASSWORD),
        }
        try:
            with pytest.MonkeyPatch.context() as patch:
                for name, value in environ.items():
                    patch.setenv(name, value)
                settings = load_settings()
                generate_into(settings, days=DAYS, customers=CUSTOMERS, seed=17)
                defs = build_definitions(settings)
                with dg.DagsterInstance.get() as instance:
                    # The whole graph, ending with metadata_backup_job: the backup and the drill.
                    run_demo(
                        defs,
                        instance,
                        DemoPlan.for_days(START, DAYS),
                        gate=PERMISSIVE_GATE,
                    )
                    yield environ, settings, defs, instance, server
        finally:
            server.process.stop()


def latest_metadata(instance, key: dg.AssetKey) -> dict:
    return instance.get_latest_materialization_event(key).asset_materialization.metadata


def test_both_databases_are_dumped_and_the_drill_restores_and_opens_them(production):
    environ, settings, defs, instance, server = production
    backup = latest_metadata(instance, keys.PLATFORM_METADATA)
    store = defs.resources["backup_store"]
    snapshot = find_snapshot(store, backup["snapshot"].value)
    contents, problems = read_verified(store, snapshot)
    assert not problems
    # pg_dump's custom format, one archive per database, and the instance's configuration.
    assert contents["dagster/postgres/database.pgdump"].startswith(b"PGDMP")
    assert contents["mlflow/postgres/database.pgdump"].startswith(b"PGDMP")
    assert "dagster/dagster.yaml" in contents
    assert not any(name.startswith("dagster/history") for name in contents)  # no SQLite here

    drill = latest_metadata(instance, keys.RESTORE_DRILL)
    [check] = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(keys.RESTORE_DRILL, keys.RECOVERY_OBJECTIVES.name)]
    ).values()
    assert check.status.value == "SUCCEEDED", check
    runs_at_backup = [
        r for r in instance.get_run_records() if r.create_timestamp.timestamp() < snapshot_time(snapshot)
    ]
    assert drill["runs_restored"].value == len(runs_at_backup) >= 4
    champion = MlflowClient(server.url).get_model_version_by_alias("churn_model", CHAMPION)
    assert drill["champion_version"].value == str(champion.version)

    # Passwords: redacted in the manifest, absent from every run's events.
    manifest = store.read(f"{snapshot.prefix}/manifest.json").decode()
    assert "***" in json.loads(manifest)["sources"]["mlflow/postgres"]
    logs = " ".join(str(entry) for r in instance.get_runs() for entry in instance.all_logs(r.run_id))
    for secret in (INSTANCE_PASSWORD, MLFLOW_PASSWORD):
        assert secret not in manifest and secret not in logs


def snapshot_time(snapshot) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(snapshot.created).timestamp()


def test_restore_fills_empty_databases_and_refuses_ones_that_hold_data(production, tmp_path):
    environ, settings, defs, instance, server = production
    prefix = latest_metadata(instance, keys.PLATFORM_METADATA)["snapshot"].value
    live_runs = {r.run_id for r in instance.get_runs()}
    live_champion = MlflowClient(server.url).get_model_version_by_alias("churn_model", CHAMPION)
    with (
        postgres_database("churn_restored") as new_instance_db,
        postgres_database("churn_restored_mlflow") as new_mlflow_db,
    ):
        target = {
            **environ,
            **new_instance_db.dagster_env,
            "DAGSTER_PG_PASSWORD": INSTANCE_PASSWORD,
            "DAGSTER_HOME": str(production_instance_home(tmp_path / "restored_home")),
            "CHURN_MLFLOW_DATABASE_URL": with_password(new_mlflow_db.url, MLFLOW_PASSWORD),
        }
        restored = CliRunner().invoke(main, ["restore", prefix], env=target)
        assert restored.exit_code == 0, restored.output
        assert new_instance_db.name in restored.output and MLFLOW_PASSWORD not in restored.output

        with pytest.MonkeyPatch.context() as patch:
            for name, value in target.items():
                patch.setenv(name, value)
            with dg.DagsterInstance.get() as reopened:
                restored_runs = {r.run_id for r in reopened.get_runs()}
                assert restored_runs and restored_runs <= live_runs
                assert reopened.get_latest_materialization_event(keys.CHURN_MODEL) is not None
        client = MlflowClient(new_mlflow_db.url)
        assert client.get_model_version_by_alias("churn_model", CHAMPION).version == live_champion.version

        # Again: both databases now hold data, so nothing is restored without --force.
        again = CliRunner().invoke(main, ["restore", prefix], env=target)
        assert again.exit_code == 1
        assert "(live data); nothing restored (pass --force" in again.output
        assert INSTANCE_PASSWORD not in again.output and MLFLOW_PASSWORD not in again.output
        forced = CliRunner().invoke(main, ["restore", prefix, "--force"], env=target)
        assert forced.exit_code == 0, forced.output
