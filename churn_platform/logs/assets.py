"""raw/interaction_logs: the day's product events, read from the landing zone."""

import dagster as dg
import pyarrow as pa

from churn_platform.logs.landing_zone import LandingZone, fingerprint
from churn_platform.logs.parsing import LandingFileError, parse_landing_files
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import PlatformPartitions
from churn_platform.orchestration.retries import EXTERNAL_CALL_RETRY
from churn_platform.storage.files import uri_of

# Output metadata: the landing fingerprint of each day read, so the landing sensor can tell a day
# whose files were already materialized (e.g. after a cursor reset) from one that changed.
FINGERPRINTS_METADATA = "landing_fingerprints"


def landed_files(landing_zone: LandingZone, date: str) -> list:
    """The day's log files; fails (naming the folder) when none arrived."""
    files = landing_zone.files_for(date)
    if not files:
        raise LandingFileError(
            f"no interaction-log files for {date} under {landing_zone.folder_uri(date)}; "
            "land the day's *.jsonl files there (or run `churn-platform generate`) and re-run"
        )
    return files


def read_landing_day(landing_zone: LandingZone, date: str) -> tuple[pa.Table, list[str]]:
    """Read and validate every file of one day."""
    files = landed_files(landing_zone, date)
    return parse_landing_files({date: files}), [uri_of(f) for f in files]


def build_log_assets(partitions: PlatformPartitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=keys.INTERACTION_LOGS,
        group_name="raw",
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_column": "event_date"},
        kinds={"duckdb", "parquet"},
        retry_policy=EXTERNAL_CALL_RETRY,
    )
    def interaction_logs(context: dg.AssetExecutionContext, landing_zone: LandingZone) -> pa.Table:
        """The day's product events (customer_id, event_type, timestamp, properties), typed and
        validated: every file of the run's days parsed by one multi-threaded DuckDB query."""
        files_by_day, fingerprints = {}, {}
        try:
            for date in context.partition_keys:
                # Fingerprint before reading: a file re-written meanwhile changes the fingerprint again
                # and the sensor requests another run, never the reverse.
                fingerprints[date] = fingerprint(landing_zone.list_day(date))
                files_by_day[date] = landed_files(landing_zone, date)
            table = parse_landing_files(files_by_day)
        except LandingFileError as exc:
            # Bad or missing files do not get better by retrying: fail now, with the reason.
            raise dg.Failure(str(exc), allow_retries=False) from None
        landed = sum(len(files) for files in files_by_day.values())
        context.add_output_metadata({"landing_files": landed, FINGERPRINTS_METADATA: fingerprints})
        return table

    return [interaction_logs]
