"""Atomic writes through the platform's writers (ParquetIOManager, BackupStore.write_once), not
only through the file helper: a writer that dies mid-write leaves the previous file whole at its path, shows readers no partial file, and leaves no temporary file behind
(``storage/files.py``: "readers see either the previous version or the whole new one")."""

import datetime as dt
import hashlib
import os
import time

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from churn_platform.backups.resources import BackupStore
from churn_platform.orchestration.run_tags import partition_range_tags
from churn_platform.storage.files import StorageError
from churn_platform.storage.parquet_io_manager import ParquetIOManager
from churn_platform_tests.support.faults import dying_disk, files_under

DAY = "2026-01-02"
KEY = dg.AssetKey(["raw", "things"])
daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")


def frame(version: int, days=(DAY,), rows: int = 2000) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": [dt.date.fromisoformat(d) for d in days for _ in range(rows)],
            "value": [version * 1_000_000 + i for _ in days for i in range(rows)],
        }
    )


def random_bytes(size: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def things_asset(make):
    @dg.asset(
        key=KEY,
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_column": "day"},
    )
    def things(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return make(context.partition_keys)

    return things


def test_parquet_io_manager_write_that_dies_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    manager = ParquetIOManager(base_path=str(tmp_path))
    target = tmp_path / "raw" / "things" / f"{DAY}.parquet"
    manager.write_partitions(KEY, [DAY], frame(1), "day")
    previous = target.read_bytes()

    with dying_disk(monkeypatch, tmp_path, budget=len(previous) // 2, watch=[target]) as disk:
        with pytest.raises(StorageError, match="previous version, if any, is intact"):
            manager.write_partitions(KEY, [DAY], frame(2), "day")
    assert disk.faults == 1  # the write really went through the file system and died halfway
    assert disk.seen_at_fault == [{str(target): previous}]  # a reader meanwhile saw the old file
    assert target.read_bytes() == previous
    assert pd.read_parquet(target)["value"].tolist() == frame(1)["value"].tolist()
    assert files_under(tmp_path) == [f"raw/things/{DAY}.parquet"]  # no partial or temporary file

    manager.write_partitions(KEY, [DAY], frame(2), "day")  # storage back: the re-run writes it whole
    assert pd.read_parquet(target)["value"].tolist() == frame(2)["value"].tolist()


def test_parquet_io_manager_first_write_that_dies_leaves_no_file(tmp_path, monkeypatch):
    manager = ParquetIOManager(base_path=str(tmp_path))
    target = tmp_path / "raw" / "things" / f"{DAY}.parquet"
    with dying_disk(monkeypatch, tmp_path, budget=1000, watch=[target]) as disk:
        with pytest.raises(StorageError, match=f"could not write {target}"):
            manager.write_partitions(KEY, [DAY], frame(1), "day")
    assert disk.faults == 1 and disk.seen_at_fault == [{str(target): None}]
    assert not target.exists()  # downstream finds no file rather than half of one
    assert files_under(tmp_path) == []


def test_handle_output_that_dies_fails_the_run_and_keeps_the_previous_partition(tmp_path, monkeypatch):
    manager = ParquetIOManager(base_path=str(tmp_path))
    target = tmp_path / "raw" / "things" / f"{DAY}.parquet"
    version = {"n": 1}
    things = things_asset(lambda keys: frame(version["n"], keys))
    assert dg.materialize([things], partition_key=DAY, resources={"io_manager": manager}).success
    previous = target.read_bytes()

    version["n"] = 2
    with dying_disk(monkeypatch, tmp_path, budget=len(previous) // 2, watch=[target]) as disk:
        result = dg.materialize(
            [things], partition_key=DAY, resources={"io_manager": manager}, raise_on_error=False
        )
    assert not result.success and disk.faults == 1
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert f"could not write {target}" in error and "previous version, if any, is intact" in error
    assert disk.seen_at_fault == [{str(target): previous}]
    assert target.read_bytes() == previous
    assert files_under(tmp_path) == [f"raw/things/{DAY}.parquet"]


def test_range_write_that_dies_replaces_no_partition(tmp_path, monkeypatch):
    """A single-run backfill stages every partition's file before replacing any: a disk that fills
    up on the second file leaves all three old files, no staged file, and a failed step, so the
    warehouse and the event log (no new materialization) agree."""
    manager = ParquetIOManager(base_path=str(tmp_path))
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    targets = [tmp_path / "raw" / "things" / f"{d}.parquet" for d in days]
    version = {"n": 1}
    things = things_asset(lambda keys: frame(version["n"], keys))
    tags = partition_range_tags(days[0], days[-1])
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            [things], tags=tags, resources={"io_manager": manager}, instance=instance
        ).success
        previous = [t.read_bytes() for t in targets]

        version["n"] = 2
        with dying_disk(
            monkeypatch, tmp_path, budget=len(previous[1]) // 2, spare_files=1, watch=targets
        ) as disk:
            result = dg.materialize(
                [things],
                tags=tags,
                resources={"io_manager": manager},
                raise_on_error=False,
                instance=instance,
            )
        assert not result.success and disk.faults == 1
        error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
        assert "No partition was replaced" in error and "2026-01-01..2026-01-03" in error
        assert [t.read_bytes() for t in targets] == previous
        assert files_under(tmp_path) == [f"raw/things/{d}.parquet" for d in days]
        # The event log holds the first run's materializations only, one per partition.
        records = instance.fetch_materializations(dg.AssetKey(["raw", "things"]), limit=10).records
        assert sorted(r.asset_materialization.partition for r in records) == days

        # The same range again, once the disk has room: every partition is the new version.
        assert dg.materialize(
            [things], tags=tags, resources={"io_manager": manager}, instance=instance
        ).success
        assert all(
            pd.read_parquet(t)["value"].tolist() == frame(2, [d])["value"].tolist()
            for t, d in zip(targets, days, strict=True)
        )


def test_a_killed_writers_temporary_files_are_removed_by_the_next_write(tmp_path):
    """A writer killed mid-write leaves a temporary or staged file; the next write of the asset
    removes those older than an hour and leaves a fresh one (another writer may be using it)."""
    manager = ParquetIOManager(base_path=str(tmp_path))
    folder = tmp_path / "raw" / "things"
    folder.mkdir(parents=True)
    now = time.time()
    # A staged file is aged by the writer's clock in its name, not by the store's modification
    # time: the stale one was just touched, the fresh one looks old on disk.
    stale = [folder / ".tmp-abc.part", folder / f".staging-{int(now) - 7200}-0123456789ab-{DAY}.parquet"]
    fresh = folder / f".staging-{int(now) - 60}-ba9876543210-2026-01-09.parquet"
    for path in [*stale, fresh]:
        path.write_bytes(b"half a file")
    os.utime(stale[0], (now - 7200, now - 7200))
    os.utime(fresh, (now - 7200, now - 7200))
    things = things_asset(lambda keys: frame(1, keys))
    assert dg.materialize([things], partition_key=DAY, resources={"io_manager": manager}).success
    assert sorted(p.name for p in folder.iterdir()) == [fresh.name, f"{DAY}.parquet"]


def test_each_partition_of_a_range_run_has_its_own_rows_file_and_digest(tmp_path):
    """Dagster records one metadata for every partition of a range run; each partition's own rows,
    URI and SHA-256 are in an observation of that partition."""
    manager = ParquetIOManager(base_path=str(tmp_path))
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    things = things_asset(lambda keys: frame(1, keys[:1] * 2 + keys, rows=1))  # the first day has three rows
    with dg.DagsterInstance.ephemeral() as instance:
        tags = partition_range_tags(days[0], days[-1])
        assert dg.materialize(
            [things], tags=tags, resources={"io_manager": manager}, instance=instance
        ).success
        for day, rows in zip(days, (3, 1, 1), strict=True):
            (record,) = instance.fetch_observations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(["raw", "things"]), asset_partitions=[day]),
                limit=5,
            ).records
            meta = record.asset_observation.metadata
            path = tmp_path / "raw" / "things" / f"{day}.parquet"
            assert meta["dagster/row_count"].value == rows == len(pd.read_parquet(path))
            assert meta["uri"].value == str(path)
            assert meta["sha256"].value == hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_write_that_dies_leaves_no_backup_and_the_retry_stores_it(tmp_path, monkeypatch):
    store = BackupStore(base_path=str(tmp_path))
    target = tmp_path / "snapshots" / DAY / "model.joblib"
    data = random_bytes(16_384)

    with dying_disk(monkeypatch, tmp_path, budget=len(data) // 2, watch=[target]) as disk:
        with pytest.raises(OSError, match="No space left on device"):
            store.write_once(f"snapshots/{DAY}/model.joblib", data)
    assert disk.faults == 1 and disk.seen_at_fault == [{str(target): None}]
    # A half-written backup would be taken for the backup, and block its own retry as "different".
    assert not target.exists() and files_under(tmp_path) == []

    assert store.write_once(f"snapshots/{DAY}/model.joblib", data) == str(target)
    assert target.read_bytes() == data
    assert store.write_once(f"snapshots/{DAY}/model.joblib", data) == str(target)  # identical: no-op
