"""A partition-aware Parquet IO manager for local paths, s3:// and gs:// (fsspec).

Layout: ``<base_path>/<asset key path>/<partition key>.parquet``; unpartitioned assets are stored at
``<base_path>/<asset key path>.parquet``.

- An output that covers several partitions (a single-run backfill) is split on the asset's
  ``partition_column`` (definition metadata) into one file per partition. Dagster's own
  UPathIOManager refuses such outputs (dagster issue #14332).
- Loading several partitions returns one concatenated DataFrame; ``df.attrs["source_files"]``
  lists exactly which files were read, with their SHA-256, for lineage.
- Writes are atomic per file (see ``write_bytes_atomic``). A range is validated completely before
  the first file is written, so a bad range output writes nothing.
"""

import json
from collections.abc import Sequence
from typing import Any, Optional

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field
from upath import UPath

from churn_platform.storage.connection import ObjectStoreConnection, open_path
from churn_platform.storage.files import (
    StorageError,
    object_version,
    read_bytes,
    sha256_hex,
    uri_of,
    validate_partition_key,
    write_bytes_atomic,
)

PARTITION_COLUMN = "partition_column"


def table_to_parquet(table: pa.Table) -> pa.Buffer:
    """Parquet that pandas, DuckDB and Spark all read: microsecond timestamps (Spark 4 refuses ns)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, coerce_timestamps="us", allow_truncated_timestamps=True)
    return sink.getvalue()



def parquet_bytes_to_dataframe(data: bytes) -> pd.DataFrame:
    # BufferReader lets Arrow read columns in parallel; a Python file object would not.
    return pq.read_table(pa.BufferReader(data)).to_pandas()


def split_by_partition(table: pa.Table, column: str, partition_keys: Sequence[str]) -> dict[str, pa.Table]:
    """Split an output into one table per partition key; every key gets a (maybe empty) table."""
    if column not in table.column_names:
        raise StorageError(
            f"output covers {len(partition_keys)} partitions but has no column {column!r} to split on"
        )
    values = table.column(column)
    if pa.types.is_timestamp(values.type):
        values = pc.cast(values, pa.date32())
    if len(partition_keys) == 1 and values.null_count == 0 and table.num_rows:
        # One partition: the column's min and max settle it without touching every row.
        bounds = pc.min_max(values)
        low, high = (str(bounds[name].as_py())[:10] for name in ("min", "max"))
        if low == high == partition_keys[0]:
            return {low: table}
    as_keys = pc.cast(values, pa.string())  # date32 -> "YYYY-MM-DD", computed in Arrow, not per row
    found = as_keys.unique().to_pylist()
    unexpected = sorted(str(k) for k in set(found) - set(partition_keys))
    if unexpected:
        raise StorageError(
            f"column {column!r} holds values outside the partitions being written: {unexpected[:5]}"
        )
    if len(partition_keys) == 1 and found == list(partition_keys):  # one partition, all rows in it
        return {found[0]: table}
    return {
        key: table.filter(pc.equal(as_keys, key)) if key in found else table.slice(0, 0)
        for key in partition_keys
    }


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores each asset partition as one Parquet file under ``base_path``."""

    base_path: str = Field(description="Local directory, s3://bucket/prefix or gs://bucket/prefix.")
    connection: Optional[ObjectStoreConnection] = None

    def _root(self) -> UPath:
        return open_path(self.base_path, self.connection)

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> UPath:
        if partition_key is None:
            *parents, name = asset_key.path
            return self._root().joinpath(*parents, f"{name}.parquet")
        return self._root().joinpath(*asset_key.path, f"{validate_partition_key(partition_key)}.parquet")

    # -- writing ------------------------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise StorageError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "ParquetIOManager stores pandas DataFrames"
            )
        asset_key = context.asset_key
        column = (context.definition_metadata or {}).get(PARTITION_COLUMN)
        table = pa.Table.from_pandas(obj, preserve_index=False)
        if context.has_asset_partitions:
            keys = [validate_partition_key(k) for k in context.asset_partition_keys]
            if len(keys) > 1 and column is None:
                raise StorageError(
                    f"{asset_key.to_user_string()} produced one output for {len(keys)} partitions "
                    f"but declares no {PARTITION_COLUMN!r} metadata to split it on"
                )
            parts = split_by_partition(table, column, keys) if column else {keys[0]: table}
        else:
            parts = {None: table}

        # Serialise everything first: a failure here must not leave half a range written.
        payloads = {key: table_to_parquet(part) for key, part in parts.items()}
        written = []
        for key, data in payloads.items():
            path = self.path_for(asset_key, key)
            try:
                write_bytes_atomic(path, data)
            except Exception as exc:
                raise StorageError(
                    f"could not write {uri_of(path)}: {exc}. The previous version, if any, is intact; "
                    "re-run the partition once storage is reachable."
                ) from exc
            written.append(
                {"partition": key, "uri": uri_of(path), "rows": parts[key].num_rows,
                 "bytes": data.size, "sha256": sha256_hex(data),
                 "version": object_version(path) if len(payloads) == 1 else None}
            )
        context.add_output_metadata(_output_metadata(obj, written))

    # -- reading ------------------------------------------------------------------------------
    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        asset_key = context.asset_key
        keys: list[str | None] = (
            list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        )
        frames, sources = [], []
        for key in keys:
            path = self.path_for(asset_key, key)
            try:
                data = read_bytes(path)
            except StorageError as exc:
                where = f" partition {key}" if key else ""
                raise StorageError(
                    f"{asset_key.to_user_string()}{where} is not materialized: {uri_of(path)} does "
                    f"not exist. Materialize it first, e.g. `dagster asset materialize -m "
                    f"churn_platform.definitions --select {asset_key.to_user_string()}"
                    + (f" --partition {key}`" if key else "`")
                ) from exc
            frame = parquet_bytes_to_dataframe(data)
            frames.append(frame)
            sources.append(
                {"asset": asset_key.to_user_string(), "partition": key, "uri": uri_of(path),
                 "rows": len(frame), "sha256": sha256_hex(data)}
            )
        result = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        result.attrs["source_files"] = sources
        return result


def _output_metadata(obj: pd.DataFrame, written: list[dict]) -> dict[str, Any]:
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name=str(name), type=str(dtype)) for name, dtype in obj.dtypes.items()]
    )
    metadata: dict[str, Any] = {"dagster/column_schema": schema}
    if len(written) == 1:
        metadata["dagster/row_count"] = written[0]["rows"]
        metadata["bytes"] = written[0]["bytes"]
        metadata["uri"] = dg.MetadataValue.path(written[0]["uri"])
        metadata["sha256"] = written[0]["sha256"]
        if written[0]["version"]:
            metadata["object_version"] = written[0]["version"]
    else:
        # Dagster attaches the same metadata to every partition of a range run; a per-file list
        # would grow with the square of the range, so record the totals and the layout.
        metadata["partitions_written"] = len(written)
        metadata["rows_total"] = int(sum(item["rows"] for item in written))
        metadata["bytes_total"] = int(sum(item["bytes"] for item in written))
        metadata["uri_pattern"] = written[0]["uri"].rsplit("/", 1)[0] + "/{partition}.parquet"
    return metadata


def source_files(df: pd.DataFrame) -> list[dict]:
    """The files a loaded DataFrame came from (set by ParquetIOManager.load_input)."""
    return list(df.attrs.get("source_files", []))


def to_json_metadata(value: Any) -> dg.MetadataValue:
    return dg.MetadataValue.json(json.loads(json.dumps(value, default=str)))
