"""Metadata backups and restores, by breaking things: the Dagster instance and the MLflow store are
backed up while runs write, deleted, and restored from the backup store; a flipped byte is found
by `verify` and refused by `restore`, naming the object; live files are never overwritten unless
told to."""

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from click.testing import CliRunner

from churn_platform.backups.catalog import (
    RestoreRefused,
    find_snapshot,
    list_snapshots,
    object_entries,
    read_verified,
    restore_snapshot,
)
from churn_platform.backups.drill import run_restore_drill
from churn_platform.backups.metadata import instance_source, snapshot_files
from churn_platform.backups.resources import BackupStore
from churn_platform.cli.main import main
from churn_platform.definitions import build_definitions
from churn_platform.ml.scoring import predict_with
from churn_platform.ml.training import train_churn_model
from churn_platform.orchestration import asset_keys as keys
from churn_platform.settings import load_settings
from churn_platform.storage.model_registry import ModelIntegrityError
from churn_platform_tests.support.data import s3_environment, synthetic_table

pytestmark = pytest.mark.slow


@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
def busy_table() -> int:
    return 1


def environment(tmp_path: Path) -> dict[str, str]:
    return {
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "CHURN_BACKUP_DIR": str(tmp_path / "backups"),
        "CHURN_START_DATE": "2026-01-01",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }


@pytest.fixture
def platform(request, tmp_path, monkeypatch):
    """A Dagster instance with runs, and an MLflow store with a champion; backups on local disk,
    or (``indirect`` param ``s3``) in a versioned, Object Lock bucket on moto's S3 server."""
    environ = environment(tmp_path)
    if getattr(request, "param", "local") == "s3":
        s3 = request.getfixturevalue("s3_server")
        environ |= s3_environment(s3, str(tmp_path / "data" / "mlflow"))
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    defs = build_definitions(settings)
    registry = defs.resources["mlflow_tracking"]
    model = train_churn_model(
        synthetic_table(rows=600), id_column="account", label_column="label", exclude=()
    )
    record = registry.log_training(
        model.pipeline, model.holdout.features, {}, model.metrics, {}, {"files": []}, {}, "restore test"
    )
    registry.tag_version(record.version, {"model_sha256": registry.download_version(record.version).sha256})
    registry.promote(record.version, "test")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for day in ("2026-01-02", "2026-01-03"):
            assert dg.materialize([busy_table], instance=instance, partition_key=day).success
        yield settings, defs, instance, registry, model


def back_up(defs, instance) -> dg.MaterializeResult:
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[keys.PLATFORM_METADATA]
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("platform", ["local", "s3"], indirect=True)
def test_instance_and_mlflow_store_restore_after_they_are_deleted(platform, tmp_path):
    settings, defs, instance, registry, model = platform
    runs_before = {r.run_id for r in instance.get_runs()}
    metadata = back_up(defs, instance)
    prefix = metadata["snapshot"].value
    assert metadata["objects"].value >= 4  # instance databases, MLflow database, model files

    code, listed = cli("backups", "list")
    assert code == 0 and prefix in listed and "metadata" in listed
    code, verified = cli("backups", "verify")
    assert code == 0 and "all objects match" in verified

    # Disaster: the instance's databases and the whole MLflow store are gone.
    home = Path(instance.root_directory)
    mlflow_dir = Path(settings.mlflow.directory or tmp_path / "data" / "mlflow")
    shutil.rmtree(home / "history")
    shutil.rmtree(home / "schedules", ignore_errors=True)
    shutil.rmtree(mlflow_dir)

    code, out = cli("restore", prefix)
    assert code == 0, out
    store_kind = "s3://" if settings.storage.env == "s3" else "/"
    assert defs.resources["backup_store"].base_path.startswith(store_kind)
    # Byte for byte what the backup holds (verified against the manifest before writing).
    snapshot = find_snapshot(defs.resources["backup_store"], prefix)
    contents, problems = read_verified(defs.resources["backup_store"], snapshot)
    assert not problems
    restored_to = {
        "dagster": home,
        "mlflow/db": mlflow_dir,
        "mlflow/artifacts": Path(settings.mlflow.artifact_location),
    }
    for name, data in contents.items():
        folder = next(f for f in restored_to if name.startswith(f + "/"))
        assert (restored_to[folder] / name[len(folder) + 1 :]).read_bytes() == data, name
    assert snapshot.objects.keys() == contents.keys() and len(contents) >= 4
    with dg.DagsterInstance.from_config(str(home)) as restored:
        assert {r.run_id for r in restored.get_runs()} >= runs_before
        assert restored.get_materialized_partitions(busy_table.key) == {"2026-01-02", "2026-01-03"}
    pipeline, artifact = registry.load_champion()
    assert artifact.version == "1"
    np.testing.assert_allclose(predict_with(pipeline, model.holdout.features), model.holdout.probabilities)


def test_a_flipped_byte_is_reported_by_verify_and_refused_by_restore(platform, tmp_path):
    settings, defs, instance, *_ = platform
    prefix = back_up(defs, instance)["snapshot"].value
    store = defs.resources["backup_store"]
    snapshot = find_snapshot(store, prefix)
    victim = next(name for name in snapshot.objects if name.startswith("mlflow/db/"))
    path = Path(store.uri(f"{prefix}/{victim}"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))

    code, out = cli("backups", "verify", prefix)
    assert code == 1 and victim in out and "does not match" in out
    mlflow_db = Path(settings.mlflow.tracking_uri[len("sqlite:///") :])
    before = mlflow_db.read_bytes()
    code, out = cli("restore", prefix, "--force")
    assert code == 1 and victim in out and "nothing restored" in out
    assert mlflow_db.read_bytes() == before  # not a byte written


def test_restore_never_overwrites_live_files_unless_forced(platform):
    settings, defs, instance, *_ = platform
    prefix = back_up(defs, instance)["snapshot"].value
    code, out = cli("restore", prefix)
    assert code == 1 and "exist" in out and "--force" in out
    code, out = cli("restore", prefix, "--force")
    assert code == 0, out


WRITER = """
import sys, dagster as dg
from churn_platform_tests.backups.test_restore import busy_table
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    for day in range(1, 29):
        dg.materialize([busy_table], instance=instance, partition_key=f"2026-02-{day:02d}")
        print(day, flush=True)
"""


def test_a_backup_taken_while_runs_write_restores_to_an_instance_with_every_finished_run(platform, tmp_path):
    _, defs, instance, *_ = platform
    # Another process writes runs and events while the backup reads the databases.
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, instance.root_directory], stdout=subprocess.PIPE, text=True
    )
    try:
        for _ in range(3):  # let it get going
            assert writer.stdout.readline(), "the writer process stopped"
        finished = {r.run_id for r in instance.get_runs() if r.is_finished}
        prefix = back_up(defs, instance)["snapshot"].value
        assert writer.poll() is None, "the writer finished before the backup: nothing was written during it"
    finally:
        writer.kill()
        writer.wait()

    target = tmp_path / "restored_home"
    store = defs.resources["backup_store"]
    restore_snapshot(store, find_snapshot(store, prefix), {"dagster": target})
    for db in target.rglob("*.db"):
        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",), db
    with dg.DagsterInstance.from_config(str(target)) as restored:
        assert len(finished) >= 5 and finished <= {r.run_id for r in restored.get_runs()}


def drill(defs, instance) -> tuple[dict, dg.AssetCheckEvaluation]:
    result = defs.resolve_job_def("metadata_backup_job").execute_in_process(instance=instance)
    assert result.success  # a failed check does not fail the run: it is the drill's verdict
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == keys.RESTORE_DRILL]
    [check] = result.get_asset_check_evaluations()
    return event.materialization.metadata, check


def test_the_restore_drill_restores_the_newest_backup_and_measures_recovery(platform):
    _, defs, instance, *_ = platform
    metadata, check = drill(defs, instance)
    assert check.asset_check_key == keys.RECOVERY_OBJECTIVES and check.passed, check.description
    assert metadata["champion_version"].value == "1"
    assert metadata["runs_restored"].value >= 2  # the fixture's runs, restored and opened
    assert 0 < metadata["recovery_time_seconds"].value < 900
    assert 0 <= metadata["recovery_point_age_hours"].value < 0.1  # taken moments ago, in the same job
    assert metadata["metadata_snapshot"].value.startswith("metadata/")


def test_the_restore_drill_fails_its_check_on_a_damaged_backup_naming_the_object(platform):
    _, defs, instance, *_ = platform
    drill(defs, instance)
    store = defs.resources["backup_store"]
    snapshot = list_snapshots(store)[-1]
    victim = next(n for n in snapshot.objects if n.endswith("model.skops"))
    path = Path(store.uri(f"{snapshot.prefix}/{victim}"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

    report = run_restore_drill(store, "churn_model")  # the damaged snapshot is the newest
    assert report.metadata_snapshot == snapshot.prefix
    assert any(victim in p and "does not match" in p for p in report.problems), report.problems
    assert report.champion_version is None  # nothing was restored to look at

    later = dt.datetime.fromisoformat(snapshot.created) + dt.timedelta(hours=30)
    assert run_restore_drill(store, "churn_model", now=later).recovery_point_age_hours == pytest.approx(30)


def test_a_metadata_backup_expires_old_ones_beyond_the_retention(platform):
    _, defs, instance, *_ = platform
    store = defs.resources["backup_store"]
    now = dt.datetime.now(dt.UTC)
    for days_ago in (400, 3, 2):  # beyond the 8 weeks; two days inside the 7-day window (both stay)
        created = now - dt.timedelta(days=days_ago)
        prefix = f"metadata/old-{days_ago}"
        store.write_once(f"{prefix}/dagster/x.db", b"old")
        manifest = {"kind": "metadata", "created": created.isoformat(), "objects": {}}
        store.write_once(f"{prefix}/manifest.json", json.dumps(manifest).encode())
    metadata = back_up(defs, instance)
    assert metadata["expired"].value == ["metadata/old-400"]
    remaining = {s.prefix for s in list_snapshots(store)}
    assert {"metadata/old-3", "metadata/old-2", metadata["snapshot"].value} == remaining
    assert not Path(store.uri("metadata/old-400")).exists()


def test_a_tampered_registry_file_is_refused_by_scoring_loads(platform):
    settings, _, _, registry, _ = platform
    location = (
        registry.client().get_model_version_download_uri(registry.model_name, "1").removeprefix("file://")
    )
    skops = next(Path(location).rglob("model.skops"))
    skops.write_bytes(skops.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="not the .* recorded when it was trained"):
        registry.load_champion()


def test_uncheckpointed_sqlite_writes_are_in_the_backup_and_no_wal_file_is_copied(tmp_path):
    home = tmp_path / "home"
    (home / "history").mkdir(parents=True)
    db = home / "history" / "runs.db"
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # everything stays in runs.db-wal
    writer.execute("CREATE TABLE runs (id TEXT)")
    writer.executemany("INSERT INTO runs VALUES (?)", [(f"run-{i}",) for i in range(100)])
    writer.commit()
    assert Path(f"{db}-wal").stat().st_size > 0
    source = instance_source(home)
    assert [str(p) for p in source.files] == ["history/runs.db"]  # no -wal, no -shm
    [(name, data)] = list(snapshot_files([source]))
    restored = tmp_path / "restored.db"
    restored.write_bytes(data)
    Path(f"{restored}-wal").write_bytes(b"stale log that must not be replayed")
    restore_target = tmp_path / "target"
    (restore_target / "history").mkdir(parents=True)
    Path(f"{restore_target}/history/runs.db-wal").write_bytes(Path(f"{db}-wal").read_bytes())
    store = BackupStore(base_path=str(tmp_path / "backups"))
    store.write_once(f"metadata/x/{name}", data)
    manifest = {
        "kind": "metadata",
        "created": "2026-11-25T00:00:00+00:00",
        "objects": object_entries({name: data}),
    }
    store.write_once("metadata/x/manifest.json", json.dumps(manifest).encode())
    restore_snapshot(store, find_snapshot(store, "metadata/x"), {"dagster": restore_target})
    assert not Path(f"{restore_target}/history/runs.db-wal").exists()  # the stale log beside it went
    with sqlite3.connect(restore_target / "history" / "runs.db") as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (100,)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    writer.close()


def test_a_manifest_naming_a_path_outside_the_target_is_refused(tmp_path):
    store = BackupStore(base_path=str(tmp_path / "backups"))
    name = "dagster/../../escaped.txt"
    manifest = {
        "kind": "metadata",
        "created": "2026-11-25T00:00:00+00:00",
        "objects": object_entries({name: b"x"}),
    }
    store.write_once("metadata/evil/manifest.json", json.dumps(manifest).encode())
    snapshot = find_snapshot(store, "metadata/evil")
    # The object is read from where the manifest points (inside the store), so it verifies: only the
    # path check stands between it and a write outside the target.
    (tmp_path / "backups" / "metadata" / "evil" / "dagster").mkdir()
    (tmp_path / "backups" / "metadata" / "escaped.txt").write_bytes(b"x")
    with pytest.raises(RestoreRefused, match="would be written outside"):
        restore_snapshot(store, snapshot, {"dagster": tmp_path / "target"})
    assert not (tmp_path / "escaped.txt").exists()
