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

import io
import json
from collections.abc import Sequence
from typing import Any, Optional

import dagster as dg
import pandas as pd
import pyarrow as pa
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


def dataframe_to_parquet_bytes(df: pd.DataFrame) -> bytes:
    """Parquet that pandas, DuckDB and Spark all read: microsecond timestamps (Spark 4 refuses ns)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, coerce_timestamps="us", allow_truncated_timestamps=True)
    return buffer.getvalue()


def parquet_bytes_to_dataframe(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()


def split_by_partition(
    df: pd.DataFrame, column: str, partition_keys: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """Split a multi-partition output into one frame per key; every key gets a (maybe empty) frame."""
    if column not in df.columns:
        raise StorageError(
            f"output covers {len(partition_keys)} partitions but has no column {column!r} to split on"
        )
    # Factorize first: a range holds few distinct dates but many rows.
    codes, values = pd.factorize(df[column], use_na_sentinel=True)
    value_keys = [str(value)[:10] for value in values]
    unexpected = sorted(set(value_keys) - set(partition_keys)) + (["<null>"] if (codes < 0).any() else [])
    if unexpected:
        raise StorageError(
            f"column {column!r} holds values outside the partitions being written: {unexpected[:5]}"
        )
    parts = {key: df.iloc[0:0] for key in partition_keys}
    for code, key in enumerate(value_keys):
        parts[key] = df[codes == code]
    return {key: frame.reset_index(drop=True) for key, frame in parts.items()}


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
        if context.has_asset_partitions:
            keys = [validate_partition_key(k) for k in context.asset_partition_keys]
            if len(keys) > 1 and column is None:
                raise StorageError(
                    f"{asset_key.to_user_string()} produced one output for {len(keys)} partitions "
                    f"but declares no {PARTITION_COLUMN!r} metadata to split it on"
                )
            parts = split_by_partition(obj, column, keys) if column else {keys[0]: obj}
        else:
            parts = {None: obj}

        # Serialise everything first: a failure here must not leave half a range written.
        payloads = {key: dataframe_to_parquet_bytes(frame) for key, frame in parts.items()}
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
                {"partition": key, "uri": uri_of(path), "rows": len(parts[key]),
                 "bytes": len(data), "sha256": sha256_hex(data),
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
