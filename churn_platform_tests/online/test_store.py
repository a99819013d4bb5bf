"""The online feature store on a real Redis server (loopback): versions, the pointer, expiry, and
reads that rebuild exactly the table the batch path reads."""

import uuid

import pandas as pd
import pyarrow as pa
import pytest
import redis

from churn_platform.online.store import (
    OnlineFeaturesMissing,
    current_version,
    read_current_rows,
    read_rows,
    read_schema,
    write_version,
)


@pytest.fixture
def client():
    connection = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield connection, prefix
    for key in connection.scan_iter(f"{prefix}:*"):
        connection.delete(key)


def features(as_of: str, customers: int = 5) -> pa.Table:
    return pa.table(
        {
            "as_of_date": pa.array([pd.Timestamp(as_of).date()] * customers, pa.date32()),
            "customer_id": pa.array(range(1, customers + 1), pa.int64()),
            "events_30d": pa.array([3, None, 0, 7, 1][:customers], pa.int64()),
            "spend_30d": pa.array([1.5, float("nan"), None, 0.1 + 0.2, 2.0][:customers], pa.float64()),
            "is_active": pa.array([True, False, True, True, True][:customers]),
        }
    )


def test_reads_rebuild_the_batch_table_exactly(client):
    connection, prefix = client
    table = features("2026-02-01")
    write_version(connection, prefix, "2026-02-01", table, keep=2)
    schema = read_schema(connection, prefix, "2026-02-01")
    frame, missing = read_rows(connection, prefix, "2026-02-01", schema, [4, 1, 99])
    assert missing == [99]
    batch = table.to_pandas().set_index("customer_id", drop=False).loc[[4, 1]].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, batch, check_dtype=False)
    assert frame.loc[0, "spend_30d"] == 0.1 + 0.2  # every bit of a float survives
    assert frame.loc[1, "events_30d"] == 3
    nulls, _ = read_rows(connection, prefix, "2026-02-01", schema, [2, 3])
    assert nulls["events_30d"].isna().tolist() == [True, False]  # null stays null, never 0
    assert nulls["spend_30d"].isna().tolist() == [True, True]  # NaN and NULL both arrive as missing


def test_the_pointer_moves_forward_only_and_old_versions_expire(client):
    connection, prefix = client
    with pytest.raises(OnlineFeaturesMissing, match="materialize online/customer_features"):
        current_version(connection, prefix)
    write_version(connection, prefix, "2026-02-02", features("2026-02-02"), keep=2)
    load = write_version(connection, prefix, "2026-02-03", features("2026-02-03"), keep=2)
    assert load.current == current_version(connection, prefix) == "2026-02-03"
    # A backfill of an older day does not replace the newer version, and falls out of the kept two.
    load = write_version(connection, prefix, "2026-02-01", features("2026-02-01"), keep=2)
    assert load.current == "2026-02-03" and load.expired == ["2026-02-01"]
    assert not connection.exists(f"{prefix}:features:2026-02-01")
    load = write_version(connection, prefix, "2026-02-04", features("2026-02-04"), keep=2)
    assert load.expired == ["2026-02-02"] and current_version(connection, prefix) == "2026-02-04"
    with pytest.raises(OnlineFeaturesMissing, match="2026-02-02 are gone"):
        read_schema(connection, prefix, "2026-02-02")


class WatchingClient:
    """A real client that checks, before every row write, that readers still see the old version."""

    def __init__(self, connection, prefix: str, expected_current: str) -> None:
        self.connection, self.prefix, self.expected, self.row_writes = connection, prefix, expected_current, 0

    def hset(self, *args, **kwargs):
        assert current_version(self.connection, self.prefix) == self.expected
        self.row_writes += 1
        return self.connection.hset(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.connection, name)


def test_a_half_written_version_is_never_current(client, monkeypatch):
    connection, prefix = client
    write_version(connection, prefix, "2026-02-01", features("2026-02-01"), keep=2)
    monkeypatch.setattr("churn_platform.online.store.CHUNK_ROWS", 2)  # several writes for one version
    watching = WatchingClient(connection, prefix, "2026-02-01")
    write_version(watching, prefix, "2026-02-02", features("2026-02-02"), keep=2)
    assert watching.row_writes == 3 and current_version(connection, prefix) == "2026-02-02"


class ReloadWatchingClient(WatchingClient):
    """Checks, before every row write of a re-load, that readers still get the old rows in full."""

    def hset(self, *args, **kwargs):
        as_of, schema, frame, missing = read_current_rows(self.connection, self.prefix, [1, 2, 3, 4, 5])
        assert as_of == self.expected and not missing and frame["events_30d"].iloc[0] == 3
        self.row_writes += 1
        return self.connection.hset(*args, **kwargs)


def test_reloading_the_current_day_never_shows_a_partial_version(client, monkeypatch):
    connection, prefix = client
    write_version(connection, prefix, "2026-02-01", features("2026-02-01"), keep=2)
    monkeypatch.setattr("churn_platform.online.store.CHUNK_ROWS", 1)
    changed = features("2026-02-01", customers=3).set_column(
        2, "events_30d", pa.array([30, 31, 32], pa.int64())
    )
    watching = ReloadWatchingClient(connection, prefix, "2026-02-01")
    write_version(watching, prefix, "2026-02-01", changed, keep=2)
    assert watching.row_writes == 3
    as_of, _, frame, missing = read_current_rows(connection, prefix, [1, 2, 3, 4])
    assert frame["events_30d"].tolist() == [30, 31, 32] and missing == [4]  # the new rows, only them
    assert not list(connection.scan_iter(f"{prefix}:features:2026-02-01:loading:*"))  # no staging left
