import datetime as dt
import os

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn_platform.orchestration.run_tags import partition_range_tags
from churn_platform.storage import files
from churn_platform.storage.files import StorageError, sha256_hex, validate_partition_key
from churn_platform.storage.parquet_io_manager import (
    ParquetIOManager,
    source_files,
    split_by_partition,
)

daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")


def make_assets(frame_for_range):
    @dg.asset(
        key=["raw", "things"],
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_column": "day"},
    )
    def things(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return frame_for_range(context.partition_keys)

    @dg.asset(
        partitions_def=daily,
        ins={
            "things": dg.AssetIn(
                key=["raw", "things"], partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2)
            )
        },
    )
    def window_sum(things: pd.DataFrame) -> pd.DataFrame:
        # Echo what was loaded, so the test can see exactly which rows and files arrived.
        window_sum.loaded = things
        return pd.DataFrame({"total": [int(things["value"].sum())]})

    return things, window_sum


def rows_for(keys):
    return pd.DataFrame(
        {
            "day": [dt.date.fromisoformat(k) for k in keys for _ in range(2)],
            "value": [i for i, _ in enumerate(keys) for _ in range(2)],
            "at": pd.to_datetime([f"{k}T10:00:00.123456789Z" for k in keys for _ in range(2)]),
        }
    )


def test_range_output_is_split_into_one_file_per_partition_and_loads_back(tmp_path):
    manager = ParquetIOManager(base_path=str(tmp_path))
    things, window_sum = make_assets(rows_for)
    result = dg.materialize(
        [things], resources={"io_manager": manager}, tags=partition_range_tags("2026-01-01", "2026-01-04")
    )
    assert result.success
    written = sorted(p.name for p in (tmp_path / "raw" / "things").iterdir())
    assert written == ["2026-01-01.parquet", "2026-01-02.parquet", "2026-01-03.parquet", "2026-01-04.parquet"]
    third = pd.read_parquet(tmp_path / "raw" / "things" / "2026-01-03.parquet")
    assert third["day"].tolist() == [dt.date(2026, 1, 3)] * 2 and third["value"].tolist() == [2, 2]

    result = dg.materialize(
        [things, window_sum],
        selection=[window_sum],
        partition_key="2026-01-04",
        resources={"io_manager": manager},
    )
    assert result.success
    loaded = window_sum.loaded
    assert loaded["value"].tolist() == [1, 1, 2, 2, 3, 3]  # the three days up to 2026-01-04, in order
    sources = source_files(loaded)
    assert [s["partition"] for s in sources] == ["2026-01-02", "2026-01-03", "2026-01-04"]
    for source in sources:
        with open(source["uri"], "rb") as handle:
            assert source["sha256"] == sha256_hex(handle.read())


def test_materialization_metadata_names_uri_rows_and_hash(tmp_path):
    manager = ParquetIOManager(base_path=str(tmp_path))
    things, _ = make_assets(rows_for)
    result = dg.materialize([things], partition_key="2026-01-02", resources={"io_manager": manager})
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    path = tmp_path / "raw" / "things" / "2026-01-02.parquet"
    assert meta["uri"].value == str(path)
    assert meta["dagster/row_count"].value == 2
    assert meta["sha256"].value == sha256_hex(path.read_bytes())
    assert [c.name for c in meta["dagster/column_schema"].value.columns] == ["day", "value", "at"]


def test_parquet_is_readable_by_spark_and_duckdb_conventions(tmp_path):
    manager = ParquetIOManager(base_path=str(tmp_path))
    things, _ = make_assets(rows_for)
    dg.materialize([things], partition_key="2026-01-02", resources={"io_manager": manager})
    path = tmp_path / "raw" / "things" / "2026-01-02.parquet"
    schema = pq.read_schema(path)
    assert str(schema.field("at").type) == "timestamp[us, tz=UTC]"  # Spark 4 refuses nanoseconds
    assert str(schema.field("day").type) == "date32[day]"
    assert duckdb.sql(f"SELECT SUM(value) FROM '{path}'").fetchall() == [(0,)]


def test_rows_outside_the_run_range_fail_and_write_nothing(tmp_path):
    manager = ParquetIOManager(base_path=str(tmp_path))
    things, _ = make_assets(lambda keys: rows_for(keys + ["2026-02-01"]))
    result = dg.materialize(
        [things],
        resources={"io_manager": manager},
        raise_on_error=False,
        tags=partition_range_tags("2026-01-01", "2026-01-03"),
    )
    assert not result.success
    assert "outside the partitions being written" in str(
        result.get_step_failure_events()[0].event_specific_data.error
    )
    assert not (tmp_path / "raw" / "things").exists()


def test_range_output_without_partition_column_is_refused():
    with pytest.raises(StorageError, match="no column 'day'"):
        split_by_partition(pa.table({"x": [1]}), "day", ["2026-01-01", "2026-01-02"])


def test_missing_upstream_partition_names_the_uri_and_the_fix(tmp_path):
    manager = ParquetIOManager(base_path=str(tmp_path))
    things, window_sum = make_assets(rows_for)
    dg.materialize([things], partition_key="2026-01-03", resources={"io_manager": manager})
    result = dg.materialize(
        [things, window_sum],
        selection=[window_sum],
        partition_key="2026-01-03",
        resources={"io_manager": manager},
        raise_on_error=False,
    )
    assert not result.success
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "raw/things partition 2026-01-01 is not materialized" in message
    assert str(tmp_path / "raw" / "things" / "2026-01-01.parquet") in message
    assert "dagster asset materialize" in message


@pytest.mark.parametrize("key", ["../../etc/passwd", "2026-13-01", "2026-01-01/../x", "20260101", "", None])
def test_partition_keys_must_be_dates(key):
    with pytest.raises(StorageError):
        validate_partition_key(key)


def test_failed_write_keeps_previous_version_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from upath import UPath

    target = UPath(str(tmp_path)) / "x" / "2026-01-01.parquet"
    files.write_bytes_atomic(target, b"version-1")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        files.write_bytes_atomic(target, b"version-2-partially-written")
    assert target.read_bytes() == b"version-1"
    assert os.listdir(tmp_path / "x") == ["2026-01-01.parquet"]


def test_files_are_created_with_the_processes_umask_not_private_to_the_writer(tmp_path):
    """Spark executors and backup jobs may run as another user: a warehouse file is 0644 under the
    usual umask (tempfile.mkstemp alone would leave it 0600)."""
    from upath import UPath

    target = UPath(str(tmp_path)) / "x" / "2026-01-01.parquet"
    files.write_bytes_atomic(target, b"rows")
    umask = os.umask(0o022)
    os.umask(umask)
    mode = os.stat(target.path).st_mode & 0o777
    assert mode == 0o666 & ~umask
    if umask == 0o022:
        assert mode == 0o644


def test_unpartitioned_assets_are_stored_by_key_path(tmp_path):
    @dg.asset(key=["ml", "summary"])
    def summary() -> pd.DataFrame:
        return pd.DataFrame({"a": [1]})

    dg.materialize([summary], resources={"io_manager": ParquetIOManager(base_path=str(tmp_path))})
    assert pd.read_parquet(tmp_path / "ml" / "summary.parquet")["a"].tolist() == [1]


def test_engines_get_the_files_of_the_partitions_and_a_missing_one_is_named(tmp_path):
    manager = ParquetIOManager(base_path=str(tmp_path))
    key = dg.AssetKey(["raw", "things"])
    frame = pd.DataFrame({"day": pd.to_datetime(["2026-01-01", "2026-01-02"]).date, "value": [1, 2]})
    manager.write_partitions(key, ["2026-01-01", "2026-01-02"], frame, "day")
    files = manager.partition_files(key, ["2026-01-01", "2026-01-02"])
    assert files.uris == [str(tmp_path / "raw" / "things" / f"2026-01-0{d}.parquet") for d in (1, 2)]
    assert files.read_arrow().column("value").to_pylist() == [1, 2]
    with pytest.raises(
        StorageError, match="raw/things partition 2026-01-03 is not materialized: .*2026-01-03.parquet"
    ):
        manager.partition_files(key, ["2026-01-02", "2026-01-03"])


def test_a_missing_upstream_partition_fails_once_not_retried(tmp_path):
    """Retrying cannot create an upstream partition: the step's RetryPolicy is not used up on it."""
    daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")
    attempts = []

    @dg.asset(key=["raw", "things"], partitions_def=daily)
    def things() -> None: ...

    @dg.asset(
        partitions_def=daily,
        ins={"things": dg.AssetIn(key=["raw", "things"])},
        retry_policy=dg.RetryPolicy(max_retries=3),
    )
    def uses_things(things) -> None:
        attempts.append(things)

    result = dg.materialize(
        [things.to_source_asset(), uses_things],
        partition_key="2026-01-02",
        resources={"io_manager": ParquetIOManager(base_path=str(tmp_path))},
        raise_on_error=False,
    )
    assert not result.success and attempts == []
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "raw/things partition 2026-01-02 is not materialized" in failure.step_failure_data.error.message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
