"""What the Dagster instance recorded as materialized: the one lookup every stage shares."""

import dagster as dg


def latest_materialization(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None
) -> dg.EventLogEntry | None:
    """The newest materialization event of ``key`` (of one ``partition`` if given), or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition is not None else None),
        limit=1,
    ).records
    return records[0].event_log_entry if records else None
