"""Atomic writes through the platform's writers (ParquetIOManager, BackupStore.write_once), not
only through the file helper: a writer that dies mid-write leaves the previous file whole at its path, shows readers no partial file, and leaves no temporary file behind
(``storage/files.py``: "readers see either the previous version or the whole new one")."""

import datetime as dt

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


def test_range_write_that_dies_leaves_every_file_whole(tmp_path, monkeypatch):
    """A single-run backfill writes one file after another: each is the old or the new one, whole."""
    manager = ParquetIOManager(base_path=str(tmp_path))
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    targets = [tmp_path / "raw" / "things" / f"{d}.parquet" for d in days]
    version = {"n": 1}
    things = things_asset(lambda keys: frame(version["n"], keys))
    tags = partition_range_tags(days[0], days[-1])
    assert dg.materialize([things], tags=tags, resources={"io_manager": manager}).success
    previous = [t.read_bytes() for t in targets]

    version["n"] = 2
    with dying_disk(
        monkeypatch, tmp_path, budget=len(previous[1]) // 2, spare_files=1, watch=targets
    ) as disk:
        result = dg.materialize([things], tags=tags, resources={"io_manager": manager}, raise_on_error=False)
    assert not result.success and disk.faults == 1
    # The fault hit the second file: the first is the new version, whole; the others the old ones.
    (seen,) = disk.seen_at_fault
    assert seen[str(targets[1])] == previous[1] and seen[str(targets[2])] == previous[2]
    assert pd.read_parquet(targets[0])["value"].tolist() == frame(2, days[:1])["value"].tolist()
    assert [t.read_bytes() for t in targets[1:]] == previous[1:]
    assert files_under(tmp_path) == [f"raw/things/{d}.parquet" for d in days]


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
