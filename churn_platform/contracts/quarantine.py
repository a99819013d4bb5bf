"""Where rows that break a contract's row rule are kept: one Parquet file per asset and partition,
``<warehouse>/quarantine/<asset key>/<partition>.parquet``, beside the data they were kept out of.

Each row says which file and line it came from, the rule and column it broke, the offending value
and the line as it was. Re-materializing the partition after a fix (of the file, or of the rule's
configuration) re-reads everything: rows that now pass are admitted, and the quarantine file is
replaced (removed when nothing is quarantined any more).
"""

from collections.abc import Sequence

import dagster as dg
import pyarrow as pa
from pydantic import Field
from upath import UPath

from churn_platform.storage.connection import ObjectStoreConnection, open_path
from churn_platform.storage.files import partition_path, uri_of, write_bytes_atomic
from churn_platform.storage.parquet_files import table_to_parquet

QUARANTINE_SCHEMA = pa.schema(
    [
        ("partition", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),
        ("rule", pa.string()),
        ("column", pa.string()),
        ("value", pa.string()),
        ("message", pa.string()),
        ("record", pa.string()),  # the line as it landed (first MAX_RECORD_CHARS characters)
    ]
)
MAX_RECORD_CHARS = 4_000
PREVIEW_ROWS = 5


class QuarantineStore(dg.ConfigurableResource):
    """The quarantine tables: a local folder, s3://bucket/prefix or gs://bucket/prefix."""

    base_path: str = Field(description="Root of the quarantine tables (inside the warehouse).")
    connection: ObjectStoreConnection | None = None

    def path_for(self, asset_key: dg.AssetKey, partition: str) -> UPath:
        return partition_path(
            open_path(self.base_path, self.connection), asset_key.path, partition, ".parquet"
        )

    def replace(
        self,
        asset_key: dg.AssetKey,
        partitions: Sequence[str],
        rows: pa.Table,
        schema: pa.Schema = QUARANTINE_SCHEMA,
    ) -> dict[str, str]:
        """Make each partition's quarantine exactly ``rows`` of that partition (a ``partition``
        column; ``schema``: QUARANTINE_SCHEMA for line-based sources, the asset's own otherwise):
        written when there are any, removed when there are none (a fixed partition leaves no stale
        quarantine). Returns the URIs written, by partition."""
        written = {}
        for partition in partitions:
            mine = rows.filter(pa.compute.equal(rows["partition"], partition)) if rows.num_rows else rows
            path = self.path_for(asset_key, partition)
            if mine.num_rows:
                write_bytes_atomic(path, table_to_parquet(mine.cast(schema)))
                written[partition] = uri_of(path)
            elif path.exists():
                path.unlink()
        return written


def quarantine_metadata(rows: pa.Table, written: dict[str, str]) -> dict:
    """Materialization metadata: how many rows were kept out, by rule, where they are, a preview."""
    by_rule: dict[str, int] = {}
    for rule in rows["rule"].to_pylist() if rows.num_rows else []:
        by_rule[rule] = by_rule.get(rule, 0) + 1
    metadata: dict = {
        "quarantined_rows": rows.num_rows,
        "quarantined_by_rule": dg.MetadataValue.json(by_rule),
    }
    if written:
        metadata["quarantine"] = dg.MetadataValue.json(written)
        preview = rows.slice(0, PREVIEW_ROWS).select(["file", "line", "rule", "value"]).to_pandas()
        metadata["quarantine_preview"] = dg.MetadataValue.md(preview.to_markdown(index=False))
    return metadata
