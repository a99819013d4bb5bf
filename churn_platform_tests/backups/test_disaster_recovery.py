"""Losing everything, and carrying on: the whole platform runs (ingestion to scores, with its
backups), then the data directory (or the warehouse bucket's prefix), the Dagster instance and the
MLflow store are deleted. `churn-platform restore` brings back the instance and the registry from
the backup store, the source systems deliver their exports again, and the platform continues: the
last day's scores are rebuilt byte for byte by the restored champion, and the next day, which
never existed before the disaster, is ingested and scored by it."""

import datetime as dt
import shutil
from pathlib import Path

import boto3
import dagster as dg
import pytest
from click.testing import CliRunner

from churn_platform.backups.catalog import list_snapshots
from churn_platform.cli.demo import DemoPlan, run_demo
from churn_platform.cli.main import main
from churn_platform.definitions import build_definitions
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.run_tags import partition_range_tags
from churn_platform.resources import build_resources
from churn_platform.settings import load_settings
from churn_platform.storage.files import read_bytes
from churn_platform.synthetic.generator import generate
from churn_platform.synthetic.writer import write_generated
from churn_platform_tests.support.data import START, s3_environment
from churn_platform_tests.support.stack import PERMISSIVE_GATE

pytestmark = pytest.mark.slow

DAYS, CUSTOMERS, SEED = 60, 150, 21
LAST = START + dt.timedelta(days=DAYS - 1)  # the last day before the disaster
NEXT = LAST + dt.timedelta(days=1)  # a day that arrives only after it


def deliver_sources(settings, held_back: list[dt.date]) -> None:
    """What the source systems export (product logs into the landing zone, the CRM's tickets), minus
    the log files of days that have not happened yet."""
    data = generate(START, days=DAYS + 1, customers=CUSTOMERS, seed=SEED)
    zone = build_resources(settings)["landing_zone"]
    write_generated(data, zone, settings.storage.crm_export_path, zone.connection)
    for day in held_back:
        for path in zone.files_for(day.isoformat()):
            path.unlink()


def scores_file(settings, day: dt.date) -> bytes:
    return read_bytes(build_resources(settings)["io_manager"].path_for(keys.CHURN_SCORES, day.isoformat()))


def lose_everything(settings, home: Path, s3_server) -> None:
    if settings.storage.store == "s3":  # every object under the platform's prefix of the data bucket
        bucket = boto3.resource(
            "s3",
            endpoint_url=s3_server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).Bucket(settings.storage.s3_bucket)
        bucket.objects.filter(Prefix=settings.storage.s3_prefix).delete()
        assert not list(bucket.objects.filter(Prefix=settings.storage.s3_prefix))
    shutil.rmtree(settings.storage.data_dir, ignore_errors=True)  # local data, and the MLflow store
    shutil.rmtree(home / "history")
    shutil.rmtree(home / "schedules", ignore_errors=True)


@pytest.mark.parametrize("store", ["local", "s3"])
def test_the_platform_carries_on_after_losing_its_data_instance_and_registry(
    store, tmp_path, request, monkeypatch
):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    environ = {
        "DAGSTER_HOME": str(home),
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "CHURN_BACKUP_DIR": str(tmp_path / "backups"),
        "CHURN_START_DATE": START.isoformat(),
        "CHURN_TRAINING_WINDOW_DAYS": "14",
    }
    s3_server = None
    if store == "s3":
        s3_server = request.getfixturevalue("s3_server")
        environ |= s3_environment(s3_server, str(tmp_path / "data" / "mlflow"))
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    defs = build_definitions(settings)
    deliver_sources(settings, held_back=[NEXT])
    plan = DemoPlan.for_days(START, DAYS)
    with dg.DagsterInstance.get() as instance:
        run_demo(defs, instance, plan, gate=PERMISSIVE_GATE)  # ends with the backups
        runs_before = {r.run_id for r in instance.get_runs()}
        champion = instance.get_latest_materialization_event(keys.CHURN_MODEL).asset_materialization.metadata
        metadata_snapshot = (
            instance.get_latest_materialization_event(keys.PLATFORM_METADATA)
            .asset_materialization.metadata["snapshot"]
            .value
        )
    scores_before = scores_file(settings, LAST)

    lose_everything(settings, home, s3_server)
    with pytest.raises(Exception):  # noqa: B017 - whichever error the store gives: the file is gone
        scores_file(settings, LAST)

    restored = CliRunner().invoke(main, ["restore", metadata_snapshot])
    assert restored.exit_code == 0, restored.output
    # The champion's training data: drift monitoring compares each day with it.
    [model_snapshot] = [s.prefix for s in list_snapshots(defs.resources["backup_store"]) if s.kind == "model"]
    restored = CliRunner().invoke(main, ["restore", model_snapshot, "--training-data"])
    assert restored.exit_code == 0, restored.output
    deliver_sources(settings, held_back=[])  # the sources export again, now including the next day

    window = (NEXT - dt.timedelta(days=31)).isoformat()
    with dg.DagsterInstance.get() as instance:
        assert {r.run_id for r in instance.get_runs()} >= runs_before  # the history is back
        upstream = [
            keys.CRM_TICKETS,
            keys.INTERACTION_LOGS,
            keys.TICKET_SENTIMENT,
            keys.CUSTOMER_DAILY_ACTIVITY,
        ]
        for job, selection, first in [
            ("daily_ingestion_job", upstream, window),  # the rolling window's activity, re-ingested
            ("daily_ingestion_job", [keys.CUSTOMER_FEATURES], LAST.isoformat()),
            ("scoring_job", None, LAST.isoformat()),
        ]:
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance,
                tags=partition_range_tags(first, NEXT.isoformat()),
                asset_selection=selection,
            )
            assert result.success, job
        scored = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys.CHURN_SCORES, asset_partitions=[NEXT.isoformat()]), limit=1
        ).records[0]
    # The restored champion scored the new day, and rebuilt the old one to the byte.
    assert scored.asset_materialization.metadata["model_sha256"].value == champion["model_sha256"].value
    assert scores_file(settings, LAST) == scores_before
    assert scores_file(settings, NEXT)

    # Restoring the training data again is a no-op; over a file that changed, only with --force.
    again = CliRunner().invoke(main, ["restore", model_snapshot, "--training-data"])
    assert again.exit_code == 0 and "restored 0 files" in again.output, again.output
    training_set = build_resources(settings)["io_manager"].path_for(keys.TRAINING_SET, plan.last_labelled_day)
    original = training_set.read_bytes()
    training_set.write_bytes(b"changed since")
    refused = CliRunner().invoke(main, ["restore", model_snapshot, "--training-data"])
    assert refused.exit_code == 1 and "exist with other content" in refused.output
    assert training_set.read_bytes() == b"changed since"
    forced = CliRunner().invoke(main, ["restore", model_snapshot, "--training-data", "--force"])
    assert forced.exit_code == 0 and training_set.read_bytes() == original
