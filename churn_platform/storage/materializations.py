"""What the Dagster instance recorded as materialized: the lookups every stage shares."""

from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

# Metadata of an asset read from files that another stage copies as they were read (e.g.
# raw/inference_logs -> backups/inference_logs): by partition, a list of {uri, bytes, sha256}.
SOURCE_FILES_METADATA = "source_files"


def latest_materialization(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None
) -> dg.EventLogEntry | None:
    """The newest materialization event of ``key`` (of one ``partition`` if given), or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition is not None else None),
        limit=1,
    ).records
    return records[0].event_log_entry if records else None


def find_materialization(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    partition: str,
    matches: Callable[[Mapping[str, Any]], bool],
    limit: int = 200,
) -> dg.EventLogEntry | None:
    """The newest of the last ``limit`` materializations of ``key``'s ``partition`` whose metadata
    ``matches`` (e.g. the one whose file has a given SHA-256), or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=limit
    ).records
    for record in records:
        entry = record.event_log_entry
        if matches(entry.asset_materialization.metadata):
            return entry
    return None
