"""Partition files handed to an engine to read itself, instead of a DataFrame loaded by Python.

An asset input annotated ``ParquetFiles`` gets, from ParquetIOManager, the URIs of the upstream
partitions (after checking they exist); DuckDB and Spark then scan the files directly, so the
largest tables never pass through pandas or the Spark driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from upath import UPath

from churn_platform.storage.connection import ObjectStoreConnection
from churn_platform.storage.files import protocol_of, uri_of


def table_to_parquet(table: pa.Table) -> pa.Buffer:
    """Parquet that pandas, DuckDB and Spark all read: microsecond timestamps (Spark 4 refuses ns)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, coerce_timestamps="us", allow_truncated_timestamps=True)
    return sink.getvalue()


@dataclass(frozen=True)
class ParquetFiles:
    """The Parquet files of some partitions of one asset, all with the asset's schema."""

    asset: str
    paths: tuple[UPath, ...]
    # The object-store connection the paths were opened with (holds secrets: kept out of repr).
    connection: ObjectStoreConnection | None = field(default=None, repr=False, compare=False)

    @property
    def protocol(self) -> str:
        """``s3``, ``gs``, ... or ``""`` for local disk."""
        return protocol_of(self.paths[0]) if self.paths else ""

    @property
    def uris(self) -> list[str]:
        """Plain paths locally, ``s3://`` / ``gs://`` URIs on object stores."""
        return [uri_of(p) for p in self.paths]

    def filesystem(self) -> AbstractFileSystem:
        """The configured fsspec client of the paths (s3fs, gcsfs or local)."""
        return self.paths[0].fs

    def read_arrow(self) -> pa.Table:
        """All files as one Arrow table (for engines that cannot reach the storage themselves)."""
        return pa.concat_tables([pq.read_table(p.path, filesystem=p.fs) for p in self.paths])


@runtime_checkable
class SelfWritingTable(Protocol):
    """A table an engine writes to the warehouse itself, one file per partition (Spark: its
    executors write the files). ParquetIOManager hands such a table its target paths."""

    def can_write_to(self, root: UPath, connection: ObjectStoreConnection | None) -> bool:
        """Whether the engine reaches this storage (else the table goes through ``to_arrow``)."""

    def write_partitions(self, column: str, targets: dict[str, UPath], staging_root: UPath) -> None:
        """Write the rows of each partition key (values of ``column``) to its target path."""

    def to_arrow(self) -> pa.Table: ...
