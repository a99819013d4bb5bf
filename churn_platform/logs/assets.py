"""raw/interaction_logs: the day's product events, read from the landing zone under their contract."""

import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping

import dagster as dg
import pyarrow as pa

from churn_platform.contracts.interaction_logs import INTERACTION_LOGS
from churn_platform.contracts.quarantine import QuarantineStore, quarantine_metadata
from churn_platform.contracts.verify import verify
from churn_platform.logs.landing_zone import LandingZone, UnsupportedLandingFiles, fingerprint
from churn_platform.logs.parsing import LandingFileError, parse_landing_files, read_landing_files
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import PlatformPartitions
from churn_platform.orchestration.retries import EXTERNAL_CALL_RETRY
from churn_platform.settings import ContractSettings
from churn_platform.storage.files import uri_of
from churn_platform.storage.materializations import latest_materialization
from churn_platform.storage.parquet_io_manager import to_json_metadata

# Output metadata: the landing fingerprint of each day read, so the landing sensor can tell a day
# whose files were already materialized (e.g. after a cursor reset) from one that changed.
FINGERPRINTS_METADATA = "landing_fingerprints"
ROWS_BY_DAY_METADATA = "rows_by_day"


def landed_files(landing_zone: LandingZone, date: str) -> list:
    """The day's log files; fails (naming the folder) when none arrived, and (naming them) when
    the folder holds files that are not logs."""
    try:
        files = landing_zone.files_for(date)
    except UnsupportedLandingFiles as exc:
        raise LandingFileError(str(exc)) from None
    if not files:
        raise LandingFileError(
            f"no interaction-log files for {date} under {landing_zone.folder_uri(date)}; "
            "land the day's *.jsonl files there (or run `churn-platform generate`) and re-run"
        )
    return files


def without_duplicates(files: list) -> tuple[list, dict[str, str]]:
    """The files with every exact copy of an earlier one (same bytes under another name: the same
    batch landed twice) left out, and which copies were left out of which original. Only files
    of equal size are hashed."""
    by_size: dict[int, list] = {}
    for file in files:
        by_size.setdefault(file.fs.size(file.path), []).append(file)
    duplicates: dict[str, str] = {}
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        seen: dict[str, str] = {}
        for file in same_size:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
            if digest in seen:
                duplicates[uri_of(file)] = seen[digest]
            else:
                seen[digest] = uri_of(file)
    return [f for f in files if uri_of(f) not in duplicates], duplicates


def read_landing_day(landing_zone: LandingZone, date: str) -> tuple[pa.Table, list[str]]:
    """Read and validate every file of one day (strict: any broken rule raises)."""
    files, _ = without_duplicates(landed_files(landing_zone, date))
    return parse_landing_files({date: files}), [uri_of(f) for f in files]


def refuse_emptying(instance: dg.DagsterInstance, rows_by_day: Mapping[str, int], days: list[str]) -> None:
    """A day that held rows must not be replaced by an empty one (its files were emptied or
    deleted by mistake): the previous partition stays, and the run fails saying so."""
    for day in days:
        if rows_by_day.get(day, 0):
            continue
        entry = latest_materialization(instance, keys.INTERACTION_LOGS, day)
        if entry is None:
            continue
        meta = entry.asset_materialization.metadata
        before = meta[ROWS_BY_DAY_METADATA].value.get(day, 0) if ROWS_BY_DAY_METADATA in meta else 0
        if not before and "dagster/row_count" in meta and len(days) == 1:
            before = meta["dagster/row_count"].value
        if before:
            raise LandingFileError(
                f"the landing files of {day} hold no events now, but the partition holds {before}: refusing "
                "to replace it with an empty day (were the files emptied?). Land the day's files again and re-run"
            )


def volume_problem(rows: int, previous: list[int], factor: int) -> str | None:
    """Why a day's row count is suspicious against the recent days' (their median), or None: a day
    without rows, or more than ``factor`` times above or below the median."""
    if rows == 0:
        return "no rows"
    if not previous:
        return None
    median = sorted(previous)[len(previous) // 2]
    if median and rows > factor * median:
        return f"{rows} rows, more than {factor}x the median {median} of the {len(previous)} days before"
    if median and rows * factor < median:
        return f"{rows} rows, less than 1/{factor} of the median {median} of the {len(previous)} days before"
    return None


def recent_rows(instance: dg.DagsterInstance, before: str, lookback_days: int) -> list[int]:
    """Rows read on each of the ``lookback_days`` days before ``before`` that were materialized,
    oldest first."""
    rows = []
    for back in range(lookback_days, 0, -1):
        earlier = (dt.date.fromisoformat(before) - dt.timedelta(days=back)).isoformat()
        entry = latest_materialization(instance, keys.INTERACTION_LOGS, earlier)
        meta = entry.asset_materialization.metadata if entry else {}
        if ROWS_BY_DAY_METADATA in meta and earlier in meta[ROWS_BY_DAY_METADATA].value:
            rows.append(int(meta[ROWS_BY_DAY_METADATA].value[earlier]))
    return rows


def volume_problems(
    instance: dg.DagsterInstance, rows_by_day: Mapping[str, int], days: list[str], factor: int, lookback: int
) -> dict[str, str]:
    """Each day of the run whose row count is out of line with the days before it (the run's own
    earlier days first, then what was materialized before the run)."""
    history = recent_rows(instance, min(days), lookback)
    problems = {}
    for day in sorted(days):
        problem = volume_problem(rows_by_day[day], history[-lookback:], factor)
        if problem:
            problems[day] = problem
        history.append(rows_by_day[day])
    return problems


class InteractionLogsConfig(dg.Config):
    accept_unusual_volume: bool = False  # a day whose volume is right after all (a launch, an outage)


def build_log_assets(
    partitions: PlatformPartitions, contracts: ContractSettings | None = None
) -> list[dg.AssetsDefinition]:
    contracts = contracts or ContractSettings()
    max_fraction = contracts.max_quarantine_percent / 100
    factor, lookback = contracts.volume_factor, contracts.volume_lookback_days

    @dg.asset(
        key=keys.INTERACTION_LOGS,
        group_name="raw",
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_column": "event_date", **INTERACTION_LOGS.definition_metadata()},
        kinds={"duckdb", "parquet"},
        retry_policy=EXTERNAL_CALL_RETRY,
        check_specs=[
            dg.AssetCheckSpec(
                "contract",
                asset=keys.INTERACTION_LOGS,
                blocking=True,
                partitions_def=partitions.daily,
                description="The rows written keep the contract (types, required fields, declared event "
                "types, amounts in range, timestamps in the day); a warning when rows were quarantined.",
            ),
            dg.AssetCheckSpec(
                "row_volume",
                asset=keys.INTERACTION_LOGS,
                partitions_def=partitions.daily,
                description=f"Each day's rows against the median of the {lookback} days before: none, or more "
                f"than {factor}x above or below, fails the day before anything is written (nothing "
                "downstream reads it) unless the run accepts it; an accepted day is reported here.",
            ),
        ],
    )
    def interaction_logs(
        context: dg.AssetExecutionContext,
        config: InteractionLogsConfig,
        landing_zone: LandingZone,
        quarantine: QuarantineStore,
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        """The day's product events (customer_id, event_type, timestamp, properties), typed and
        checked against their contract (contracts/interaction_logs.py) by one multi-threaded DuckDB
        query over every file of the run's days. Rows that break a row rule are kept out, in the
        quarantine table (file, line, rule, column, value), unless they are more than
        CHURN_MAX_QUARANTINE_PERCENT of a day: then the run fails naming them. A file landed twice
        under two names is read once."""
        days = context.partition_keys
        files_by_day, fingerprints, duplicates = {}, {}, {}
        try:
            for date in days:
                # Fingerprint before reading: a file re-written meanwhile changes the fingerprint again
                # and the sensor requests another run, never the reverse.
                fingerprints[date] = fingerprint(landing_zone.list_day(date))
                files_by_day[date], copies = without_duplicates(landed_files(landing_zone, date))
                duplicates.update(copies)
            parsed = read_landing_files(files_by_day, max_fraction, contracts.max_event_amount)
            refuse_emptying(context.instance, parsed.rows_by_day, days)
        except LandingFileError as exc:
            # Bad or missing files do not get better by retrying: fail now, with the reason.
            raise dg.Failure(str(exc), allow_retries=False) from None
        rows_by_day = {day: parsed.rows_by_day.get(day, 0) for day in days}
        # An unusual volume stops here, before anything is written: nothing downstream (in this run
        # or through automation) can read the day until someone confirms it.
        unusual = volume_problems(context.instance, rows_by_day, days, factor, lookback)
        if unusual and not config.accept_unusual_volume:
            raise dg.Failure(
                "unusual volume: "
                + "; ".join(f"{day}: {problem}" for day, problem in unusual.items())
                + ". The previous partitions stay. If the volume is right, re-run with run config "
                "`ops: {raw__interaction_logs: {config: {accept_unusual_volume: true}}}`",
                allow_retries=False,
            )
        written = quarantine.replace(keys.INTERACTION_LOGS, days, parsed.quarantine)
        yield dg.Output(
            parsed.table,
            metadata={
                "landing_files": sum(len(files) for files in files_by_day.values()),
                FINGERPRINTS_METADATA: fingerprints,
                ROWS_BY_DAY_METADATA: to_json_metadata(rows_by_day),
                "duplicate_files_skipped": to_json_metadata(duplicates),
                **quarantine_metadata(parsed.quarantine, written),
            },
        )
        # The contract on what is written (one more engine pass over the Arrow table, no copy).
        verified = verify(parsed.table, INTERACTION_LOGS)
        quarantined = parsed.quarantine.num_rows
        yield dg.AssetCheckResult(
            check_name="contract",
            passed=verified.passed and not quarantined,
            severity=dg.AssetCheckSeverity.ERROR if not verified.passed else dg.AssetCheckSeverity.WARN,
            description="; ".join(verified.problems)
            or (
                f"{quarantined} row(s) quarantined, the rest keep the contract"
                if quarantined
                else "every row keeps the contract"
            ),
            metadata={
                "rows": verified.rows,
                "quarantined_rows": quarantined,
                "broken": dg.MetadataValue.json(verified.counts),
            },
        )
        yield dg.AssetCheckResult(
            check_name="row_volume",
            passed=not unusual,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(
                f"{day}: {problem} (accepted by run config)" for day, problem in unusual.items()
            )
            or "every day's row count is in line with the days before",
            metadata={
                "rows_by_day": to_json_metadata(rows_by_day),
                "accepted_days": to_json_metadata(unusual),
            },
        )

    return [interaction_logs]
