"""raw/interaction_logs: the day's product events, read from the landing zone."""

import dagster as dg
import pandas as pd

from churn_platform.logs.landing_zone import LandingZone
from churn_platform.logs.parsing import LandingFileError, combine_logs, parse_log_file
from churn_platform.partitions import daily_partitions
from churn_platform.storage.files import uri_of


def read_landing_day(landing_zone: LandingZone, date: str) -> tuple[pd.DataFrame, list[str]]:
    """Read and validate every file of one day; fails (naming the folder) when none arrived."""
    files = landing_zone.files_for(date)
    if not files:
        raise LandingFileError(
            f"no interaction-log files for {date} under {landing_zone.folder_uri(date)}; "
            "land the day's *.jsonl files there (or run `churn-platform generate`) and re-run"
        )
    frames = [parse_log_file(uri_of(f), f.read_bytes(), expected_date=date) for f in files]
    return combine_logs(frames), [uri_of(f) for f in files]


@dg.asset(
    key=["raw", "interaction_logs"],
    group_name="raw",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_column": "event_date"},
    kinds={"pandas", "parquet"},
)
def interaction_logs(context: dg.AssetExecutionContext, landing_zone: LandingZone) -> pd.DataFrame:
    """The day's product events (customer_id, event_type, timestamp, properties), typed."""
    frames, landed = [], []
    for date in context.partition_keys:
        frame, files = read_landing_day(landing_zone, date)
        frames.append(frame)
        landed.extend(files)
    context.add_output_metadata({"landing_files": len(landed)})
    return combine_logs(frames)
