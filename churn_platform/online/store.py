"""The online feature store: each day's customer features in Redis, one version per as-of date.

Keys (``<prefix>`` is ``CHURN_ONLINE_KEY_PREFIX``):

- ``<prefix>:features:<as_of>``: a hash, customer id -> the customer's feature row as JSON;
- ``<prefix>:features:<as_of>:schema``: the rows' Arrow schema, so that readers rebuild exactly the
  table the batch path reads from Parquet (same types, same conversion to pandas);
- ``<prefix>:features:versions``: the as-of dates held (a sorted set);
- ``<prefix>:features:current``: the as-of date readers use.

A version is written completely before the pointer moves (one atomic script), so a reader never sees
a half-written load; the pointer only moves forward, so backfilling an old day does not replace a
newer one; versions beyond the newest ``keep`` are deleted after the switch, never the current one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

CHUNK_ROWS = 5_000
STAGING_TTL_SECONDS = 24 * 3600

# Moves the pointer to ARGV[1] unless it already names a later date (ISO dates sort as text).
_ADVANCE_POINTER = """
local current = redis.call('GET', KEYS[1])
if (not current) or ARGV[1] >= current then
    redis.call('SET', KEYS[1], ARGV[1])
    return ARGV[1]
end
return current
"""


class OnlineFeaturesMissing(LookupError):
    """No feature version is loaded (or the pointer names one that is gone)."""


@dataclass(frozen=True)
class OnlineLoad:
    as_of: str
    rows: int
    current: str  # the version readers use after this load
    expired: list[str] = field(default_factory=list)


def version_key(prefix: str, as_of: str) -> str:
    return f"{prefix}:features:{as_of}"


def schema_key(prefix: str, as_of: str) -> str:
    return f"{prefix}:features:{as_of}:schema"


def versions_key(prefix: str) -> str:
    return f"{prefix}:features:versions"


def pointer_key(prefix: str) -> str:
    return f"{prefix}:features:current"


def _json_value(value: object) -> object:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_version(client, prefix: str, as_of: str, table: pa.Table, keep: int) -> OnlineLoad:
    """Load one day's feature table (one row per customer, a ``customer_id`` column) as version
    ``as_of``, then advance the pointer and expire old versions."""
    if "customer_id" not in table.column_names:
        raise ValueError(f"features as of {as_of} have no customer_id column")
    key = version_key(prefix, as_of)
    # Written under a staging key, then renamed over the version with its schema in one
    # transaction: re-loading the current day never shows readers a half-written hash, and a load
    # that dies half way leaves only a staging key, which expires.
    staging = f"{key}:loading:{uuid.uuid4().hex}"
    for start in range(0, table.num_rows, CHUNK_ROWS):
        rows = table.slice(start, CHUNK_ROWS).to_pylist()
        mapping = {
            str(row["customer_id"]): json.dumps({k: _json_value(v) for k, v in row.items()}, allow_nan=False)
            for row in rows
        }
        client.hset(staging, mapping=mapping)
        client.expire(staging, STAGING_TTL_SECONDS)
    transaction = client.pipeline(transaction=True)
    if table.num_rows:
        transaction.rename(staging, key)
        transaction.persist(key)
    else:
        transaction.delete(key)  # an empty day: an empty version
    transaction.set(schema_key(prefix, as_of), table.schema.serialize().to_pybytes())
    transaction.zadd(versions_key(prefix), {as_of: dt.date.fromisoformat(as_of).toordinal()})
    transaction.execute()
    current = _text(client.eval(_ADVANCE_POINTER, 1, pointer_key(prefix), as_of))
    held = [_text(v) for v in client.zrevrange(versions_key(prefix), 0, -1)]
    expired = [v for v in held[keep:] if v != current]
    for old in expired:
        client.delete(version_key(prefix, old), schema_key(prefix, old))
        client.zrem(versions_key(prefix), old)
    return OnlineLoad(as_of, table.num_rows, current, expired)


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def current_version(client, prefix: str) -> str:
    as_of = _text(client.get(pointer_key(prefix)))
    if as_of is None:
        raise OnlineFeaturesMissing("no online features are loaded: materialize online/customer_features")
    return as_of


def read_schema(client, prefix: str, as_of: str) -> pa.Schema:
    data = client.get(schema_key(prefix, as_of))
    if data is None:
        raise OnlineFeaturesMissing(f"online features as of {as_of} are gone (expired or deleted)")
    return _schema_of(data)


_SCHEMAS: dict[bytes, pa.Schema] = {}  # serialized schema -> schema (a handful of distinct ones)


def _schema_of(data: bytes) -> pa.Schema:
    if data not in _SCHEMAS:
        _SCHEMAS[data] = pa.ipc.read_schema(pa.py_buffer(data))
    return _SCHEMAS[data]


def read_current_raw(
    client, prefix: str, customer_ids: Sequence[int]
) -> tuple[str, pa.Schema, list[bytes | None]]:
    """The current version's as-of date and schema and these customers' rows as stored (JSON
    bytes, None for an id the version does not hold), read in one round trip, so a version
    re-loaded meanwhile is never read with another's schema."""
    as_of = current_version(client, prefix)
    pipe = client.pipeline(transaction=True)
    pipe.get(schema_key(prefix, as_of))
    pipe.hmget(version_key(prefix, as_of), [str(c) for c in customer_ids] or ["-"])
    schema_data, values = pipe.execute()
    if schema_data is None:
        raise OnlineFeaturesMissing(f"online features as of {as_of} are gone (expired or deleted)")
    return as_of, _schema_of(schema_data), values if customer_ids else []


def read_current_rows(
    client, prefix: str, customer_ids: Sequence[int]
) -> tuple[str, pa.Schema, pd.DataFrame, list[int]]:
    """The current version's as-of date and schema, these customers' rows in it as the batch path
    reads them (Arrow to pandas) and the ids it does not hold."""
    as_of, schema, values = read_current_raw(client, prefix, customer_ids)
    rows = [json.loads(v) for v in values if v is not None]
    missing = [c for c, v in zip(customer_ids, values, strict=True) if v is None]
    return as_of, schema, rows_to_frame(rows, schema), missing


def read_rows(
    client, prefix: str, as_of: str, schema: pa.Schema, customer_ids: Sequence[int]
) -> tuple[pd.DataFrame, list[int]]:
    """The rows of these customers in version ``as_of`` (read with ``schema``), and the ids that
    version does not hold."""
    values = client.hmget(version_key(prefix, as_of), [str(c) for c in customer_ids]) if customer_ids else []
    rows = [json.loads(v) for v in values if v is not None]
    missing = [c for c, v in zip(customer_ids, values, strict=True) if v is None]
    return rows_to_frame(rows, schema), missing


def rows_to_frame(rows: list[dict], schema: pa.Schema) -> pd.DataFrame:
    dates = [f.name for f in schema if pa.types.is_date(f.type)]
    for row in rows:
        for name in dates:
            if row.get(name) is not None:
                row[name] = dt.date.fromisoformat(row[name])
    return pa.Table.from_pylist(rows, schema=schema).to_pandas()
