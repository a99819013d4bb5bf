"""A partition-aware Parquet IO manager for local paths, s3:// and gs:// (fsspec).

Layout: ``<base_path>/<asset key path>/<partition key>.parquet``; unpartitioned assets are stored at
``<base_path>/<asset key path>.parquet``.

- An output that covers several partitions (a single-run backfill) is split on the asset's
  ``partition_column`` (definition metadata) into one file per partition. Dagster's own
  UPathIOManager refuses such outputs (dagster issue #14332).
- Outputs may be pandas or Arrow tables, or a ``SelfWritingTable`` (Spark writes its partitions itself).
- Loading several partitions returns one concatenated DataFrame; ``df.attrs["source_files"]``
  lists exactly which files were read, with their SHA-256, for lineage. An input annotated
  ``ParquetFiles`` gets the partitions' file URIs instead, for an engine to scan directly.
- Writes are atomic per file (see ``write_bytes_atomic``). A range is validated completely before
  the first file is written, so a bad range output writes nothing.
"""

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

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
    commit_staged,
    object_version,
    partition_path,
    read_bytes,
    remove_stale_temporaries,
    sha256_hex,
    uri_of,
    validate_partition_key,
    write_bytes_atomic,
)
from churn_platform.storage.materializations import latest_materialization
from churn_platform.storage.parquet_files import ParquetFiles, SelfWritingTable, table_to_parquet

PARTITION_COLUMN = "partition_column"
# Input metadata: load the newest materialized partition of the upstream asset, whatever its key
# (e.g. the latest training set as the drift reference), instead of the mapped partition.
LATEST_MATERIALIZED = {"load_partition": "latest_materialized"}


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
    connection: ObjectStoreConnection | None = None

    def _root(self) -> UPath:
        return open_path(self.base_path, self.connection)

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> UPath:
        return partition_path(self._root(), asset_key.path, partition_key, ".parquet")

    # -- writing ------------------------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        column = (context.definition_metadata or {}).get(PARTITION_COLUMN)
        preview_rows = int((context.definition_metadata or {}).get(PREVIEW_ROWS_METADATA, 0))
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        schema, written = self.write_partitions(
            context.asset_key, keys, obj, column, context.log, preview_rows
        )
        context.add_output_metadata(_output_metadata(schema, written))
        if len(written) > 1:
            # Dagster gives every partition of a range run the same metadata (the range's totals;
            # dagster issue #18123): each partition's own rows, file and SHA-256 go in an observation.
            for item in written:
                context.log_event(
                    dg.AssetObservation(
                        asset_key=context.asset_key,
                        partition=item["partition"],
                        metadata=_partition_metadata(item),
                    )
                )

    def write_partitions(
        self,
        asset_key: dg.AssetKey,
        keys: Sequence[str | None],
        obj: Any,
        column: str | None = None,
        log: logging.Logger | None = None,
        preview_rows: int = 0,
    ) -> tuple[pa.Schema, list[dict]]:
        """Store an output (pandas, Arrow or a SelfWritingTable) as one file per partition key,
        with a Markdown preview of the first ``preview_rows`` rows (not of engine-written tables).

        Several keys (a single-run backfill) need ``column`` to split on. A SelfWritingTable (a
        Spark result) is written by its engine where the engine reaches the storage.
        """
        keys = [validate_partition_key(k) if k is not None else None for k in keys]
        if len(keys) > 1 and column is None:
            raise StorageError(
                f"{asset_key.to_user_string()} produced one output for {len(keys)} partitions "
                f"but declares no {PARTITION_COLUMN!r} metadata to split it on"
            )
        if isinstance(obj, SelfWritingTable):
            partitioned = column is not None and keys[0] is not None
            if partitioned and obj.can_write_to(self._root(), self.connection):
                return self._write_by_engine(asset_key, keys, obj, column)
            if partitioned and log:
                log.warning(
                    f"the engine has no connector for {uri_of(self._root())} "
                    "(see README, Features): the output goes through this process"
                )
            obj = obj.to_arrow()
        if isinstance(obj, pd.DataFrame):
            obj = pa.Table.from_pandas(obj, preserve_index=False)
        if not isinstance(obj, pa.Table):
            raise StorageError(
                f"{asset_key.to_user_string()} returned {type(obj).__name__}; "
                "ParquetIOManager stores pandas and Arrow tables and engine tables (SparkTable)"
            )
        parts = split_by_partition(obj, column, keys) if column and keys[0] is not None else {keys[0]: obj}

        # Serialise everything first: a failure here must not leave half a range written.
        payloads = {key: table_to_parquet(part) for key, part in parts.items()}
        directory = self.path_for(asset_key, keys[0]).parent
        try:
            removed = remove_stale_temporaries(directory, time.time())
        except Exception:  # housekeeping only: the write below reports an unreachable store itself
            removed = []
        if removed and log:
            log.warning(
                f"removed {len(removed)} temporary files left by killed writers in {uri_of(directory)}"
            )
        if len(payloads) == 1:
            self._write_one(asset_key, keys[0], payloads[keys[0]])
        else:
            self._write_range(asset_key, payloads)
        written = [
            {
                "partition": key,
                "uri": uri_of(self.path_for(asset_key, key)),
                "rows": parts[key].num_rows,
                "bytes": data.size,
                "sha256": sha256_hex(data),
                "version": object_version(self.path_for(asset_key, key)) if len(payloads) == 1 else None,
            }
            for key, data in payloads.items()
        ]
        if preview_rows:
            written[0]["preview"] = preview_markdown(parts[keys[0]], preview_rows)
        return obj.schema, written

    def _write_one(self, asset_key: dg.AssetKey, key: str | None, data: pa.Buffer) -> None:
        path = self.path_for(asset_key, key)
        try:
            write_bytes_atomic(path, data)
        except Exception as exc:
            raise StorageError(
                f"could not write {uri_of(path)}: {exc}. The previous version, if any, is intact; "
                "re-run the partition once storage is reachable."
            ) from exc

    def _write_range(self, asset_key: dg.AssetKey, payloads: dict[str | None, pa.Buffer]) -> None:
        """All or nothing: every partition's file is staged beside its target first; only when all
        are staged are they moved into place (renames locally). A failure while staging removes the
        staged files and replaces nothing, so the warehouse and the event log (which records no
        materialization for a failed step) agree."""
        token = uuid.uuid4().hex[:12]
        staged: dict[str | None, UPath] = {}
        try:
            for key, data in payloads.items():
                target = self.path_for(asset_key, key)
                # The staging time is in the name: stale files are aged by it, not by a store's clock.
                staged[key] = target.parent / f".staging-{int(time.time())}-{token}-{target.name}"
                write_bytes_atomic(staged[key], data)
        except Exception as exc:
            for path in staged.values():
                with contextlib.suppress(Exception):
                    path.fs.rm(path.path)
            raise StorageError(
                f"could not write {asset_key.to_user_string()} for {len(payloads)} partitions "
                f"({min(payloads)}..{max(payloads)}): {exc}. No partition was replaced; re-run the range "
                "once storage is reachable."
            ) from exc
        committed: list[str | None] = []
        for key, path in staged.items():
            try:
                commit_staged(path, self.path_for(asset_key, key))
            except Exception as exc:
                raise StorageError(
                    f"could not move {asset_key.to_user_string()} {key} into place: {exc}. Replaced already: "
                    f"{', '.join(map(str, committed)) or 'none'}; re-run the range (the staged files are "
                    "removed by the next write after an hour)."
                ) from exc
            committed.append(key)

    def _write_by_engine(
        self, asset_key: dg.AssetKey, keys: list[str], table: SelfWritingTable, column: str
    ) -> tuple[pa.Schema, list[dict]]:
        targets = {key: self.path_for(asset_key, key) for key in keys}
        try:
            table.write_partitions(column, targets, self._root() / "_staging")
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(
                f"Spark could not write {asset_key.to_user_string()} under {uri_of(self._root())}: {exc}. "
                "Files already in place are whole (each is renamed or copied into place); re-run the range."
            ) from exc
        written, schema = [], None
        for key, path in targets.items():
            parquet = pq.ParquetFile(path.path, filesystem=path.fs)
            schema = parquet.schema_arrow
            entry = {
                "partition": key,
                "uri": uri_of(path),
                "rows": parquet.metadata.num_rows,
                "bytes": path.fs.size(path.path),
                "sha256": None,
                "version": None,
            }
            if len(targets) == 1:  # hashing reads the file back: only worth it for one partition
                entry |= {"sha256": sha256_hex(read_bytes(path)), "version": object_version(path)}
            written.append(entry)
        return schema, written

    # -- reading ------------------------------------------------------------------------------
    def load_input(self, context: dg.InputContext) -> Any:
        asset_key = context.asset_key
        keys: list[str | None] = (
            list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        )
        if (context.definition_metadata or {}).get("load_partition") == LATEST_MATERIALIZED["load_partition"]:
            keys = [_latest_materialized_partition(context.instance, asset_key)]
        if context.dagster_type is not None and context.dagster_type.typing_type is ParquetFiles:
            return self.partition_files(asset_key, keys)
        frames, sources = [], []
        for key in keys:
            path = self.path_for(asset_key, key)
            try:
                data = read_bytes(path)
            except StorageError:
                if path.exists():  # there but unreadable now: a storage fault, which a retry may fix
                    raise
                raise _not_materialized(asset_key, key, path) from None
            frame = parquet_bytes_to_dataframe(data)
            frames.append(frame)
            sources.append(
                {
                    "asset": asset_key.to_user_string(),
                    "partition": key,
                    "uri": uri_of(path),
                    "rows": len(frame),
                    "sha256": sha256_hex(data),
                }
            )
        result = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        result.attrs["source_files"] = sources
        return result

    def partition_files(self, asset_key: dg.AssetKey, keys: Sequence[str | None]) -> ParquetFiles:
        """The files of these partitions, for an engine to scan itself; all must exist."""
        paths = [self.path_for(asset_key, key) for key in keys]
        folder = paths[0].parent
        try:
            folder.fs.invalidate_cache()
            present = {p.rstrip("/").rsplit("/", 1)[-1] for p in folder.fs.ls(folder.path, detail=False)}
        except FileNotFoundError:
            present = set()
        for key, path in zip(keys, paths, strict=False):
            if path.name not in present:
                raise _not_materialized(asset_key, key, path)
        return ParquetFiles(asset=asset_key.to_user_string(), paths=tuple(paths), connection=self.connection)


def _latest_materialized_partition(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> str:
    entry = latest_materialization(instance, asset_key)
    if entry is None:
        raise StorageError(
            f"{asset_key.to_user_string()} has never been materialized; materialize it first, e.g. "
            f"`dagster asset materialize -m churn_platform.definitions --select {asset_key.to_user_string()} --partition ...`"
        )
    return entry.asset_materialization.partition


class PartitionNotMaterialized(dg.Failure, StorageError):
    """A missing upstream partition: a Failure without retries (retrying the step cannot create
    it), and a StorageError for callers outside Dagster."""

    def __init__(self, message: str) -> None:
        super().__init__(description=message, allow_retries=False)


def _not_materialized(asset_key: dg.AssetKey, key: str | None, path: UPath) -> PartitionNotMaterialized:
    where = f" partition {key}" if key else ""
    return PartitionNotMaterialized(
        f"{asset_key.to_user_string()}{where} is not materialized: {uri_of(path)} does "
        f"not exist. Materialize it first, e.g. `dagster asset materialize -m "
        f"churn_platform.definitions --select {asset_key.to_user_string()}"
        + (f" --partition {key}`" if key else "`")
    )


# Definition metadata: how many rows the materialization's preview shows (set by governance.py).
PREVIEW_ROWS_METADATA = "preview_rows"


def preview_markdown(table: pa.Table, rows: int) -> str:
    """The first rows as a Markdown table for the materialization's page (floats to 4 digits, long
    texts cut at 60 characters)."""
    frame = table.slice(0, rows).to_pandas()
    for name in frame.columns:
        if frame[name].dtype == object:
            frame[name] = frame[name].map(
                lambda v: v if not isinstance(v, str) or len(v) <= 60 else v[:57] + "..."
            )
    return frame.to_markdown(index=False, floatfmt=".4g")


def _partition_metadata(item: dict) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": item["rows"],
        "bytes": item["bytes"],
        "uri": dg.MetadataValue.path(item["uri"]),
    }
    if item["sha256"]:
        metadata["sha256"] = item["sha256"]
    return metadata


def _output_metadata(schema: pa.Schema, written: list[dict]) -> dict[str, Any]:
    columns = [dg.TableColumn(name=f.name, type=str(f.type)) for f in schema]
    metadata: dict[str, Any] = {"dagster/column_schema": dg.TableSchema(columns=columns)}
    if written and written[0].get("preview"):
        label = "preview" if len(written) == 1 else f"preview ({written[0]['partition']}, first of the range)"
        metadata["preview"] = dg.MetadataValue.md(f"{label}:\n\n{written[0]['preview']}")
    if len(written) == 1:
        metadata["dagster/row_count"] = written[0]["rows"]
        metadata["bytes"] = written[0]["bytes"]
        metadata["uri"] = dg.MetadataValue.path(written[0]["uri"])
        if written[0]["sha256"]:
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
