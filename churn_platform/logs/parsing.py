"""Parsing and validating interaction-log files into a typed table.

``parse_landing_files`` reads a day's files with one multi-threaded DuckDB query that parses,
types, validates every rule (the `bad` column) and sorts, and returns Arrow. Only when a row breaks
a rule, or DuckDB cannot read a file, does it go back to ``parse_log_file``, the per-file parser,
which names the file, the line and the rule (and is the reference the fast path is tested against).
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from upath import UPath

from churn_platform.contracts.interaction_logs import (
    EVENT_TYPES,
    INTERACTION_LOGS,
    PURCHASE,
    REQUIRED_FIELDS,
    rule_message,
)
from churn_platform.contracts.quarantine import MAX_RECORD_CHARS, QUARANTINE_SCHEMA
from churn_platform.storage.files import protocol_of, uri_of

# The typed table that raw/interaction_logs stores.
LOG_COLUMNS = {
    "event_date": "object",  # datetime.date; the partition column
    "customer_id": "int64",
    "event_type": "string",
    "timestamp": "datetime64[us, UTC]",
    "session_id": "string",
    "plan": "string",
    "amount": "float64",
    "properties": "string",  # the original properties object, as JSON text
}


LOG_SCHEMA = pa.schema(
    [
        ("event_date", pa.date32()),
        ("customer_id", pa.int64()),
        ("event_type", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("session_id", pa.string()),
        ("plan", pa.string()),
        ("amount", pa.float64()),
        ("properties", pa.string()),
    ]
)


class LandingFileError(ValueError):
    """A landing file that cannot be read; the message names the file and the problem."""


# DuckDB parses JSON lines in C++ and keeps `properties` as its original JSON text. Everything is
# read as text and cast with TRY_CAST, so bad values become NULLs that we report by line.
_JSON_COLUMNS = {
    "customer_id": "VARCHAR",
    "event_type": "VARCHAR",
    "timestamp": "VARCHAR",
    "properties": "JSON",
}
_PARSE_SQL = """
SELECT
    customer_id AS customer_id_raw,
    TRY_CAST(customer_id AS BIGINT) AS customer_id,
    event_type,
    "timestamp" AS timestamp_raw,
    properties,
    json_type(properties) AS properties_type,
    json_extract_string(properties, '$.session_id') AS session_id,
    json_extract_string(properties, '$.plan') AS plan,
    TRY_CAST(json_extract_string(properties, '$.amount') AS DOUBLE) AS amount
FROM raw
"""


def parse_log_file(uri: str, content: bytes, expected_date: str) -> pd.DataFrame:
    """Parse one JSON-lines file; every event must fall on ``expected_date`` (UTC)."""
    if not content.strip():
        return empty_logs()
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LandingFileError(f"{uri}: not UTF-8 text ({exc})") from None
    con = duckdb.connect(config={"threads": 1})
    try:
        relation = con.read_json(io.BytesIO(content), format="newline_delimited", columns=_JSON_COLUMNS)
        raw = relation.query("raw", _PARSE_SQL).to_arrow_table().to_pandas()
    except duckdb.Error as exc:
        problem = _first_bad_line(content.decode("utf-8")) or ": " + str(exc).split("\n")[0]
        raise LandingFileError(f"{uri} {problem}") from None
    finally:
        con.close()

    def fail_at(mask: pd.Series, problem: str) -> None:
        if mask.any():
            row = int(np.argmax(mask.to_numpy()))
            raise LandingFileError(
                f"{uri} line {_line_number(content, row)}: {problem(row) if callable(problem) else problem}"
            )

    for field, column in (
        ("customer_id", "customer_id_raw"),
        ("event_type", "event_type"),
        ("timestamp", "timestamp_raw"),
        ("properties", "properties"),
    ):
        fail_at(
            raw[column].isna(),
            f"required field {field!r} is missing or null (every line needs {list(REQUIRED_FIELDS)})",
        )
    fail_at(raw["properties_type"] != "OBJECT", "'properties' must be a JSON object")
    fail_at(
        raw["customer_id"].isna(),
        lambda r: f"customer_id {raw['customer_id_raw'].iloc[r]!r} is not an integer",
    )
    timestamps = pd.to_datetime(raw["timestamp_raw"], utc=True, errors="coerce", format="ISO8601")
    fail_at(timestamps.isna(), lambda r: f"timestamp {raw['timestamp_raw'].iloc[r]!r} is not ISO 8601")
    day_start = pd.Timestamp(expected_date, tz="UTC")
    off_day = (timestamps < day_start) | (timestamps >= day_start + pd.Timedelta(days=1))
    fail_at(
        off_day,
        lambda r: (
            f"timestamp {raw['timestamp_raw'].iloc[r]} is not on {expected_date} (UTC); "
            "files must land in the folder of the day their events happened"
        ),
    )

    frame = pd.DataFrame(
        {
            "event_date": np.full(len(raw), dt.date.fromisoformat(expected_date), dtype=object),
            "customer_id": raw["customer_id"],
            "event_type": raw["event_type"],
            "timestamp": timestamps,
            "session_id": raw["session_id"],
            "plan": raw["plan"],
            "amount": raw["amount"],
            "properties": raw["properties"],
        }
    )
    return frame.astype(LOG_COLUMNS)


# Every file of a range in one query. Each row's day comes from its file's folder (date=YYYY-MM-DD,
# read once per file as a hive partition), the three properties the tables use are extracted in
# one JSON pass, and rows keep the files' order and each file's line order (DuckDB preserves
# insertion order), so the same files always give the same table without a sort. (Which is why the
# event-type rule is a CASE: DuckDB turns `IN (...)` and list_contains of constants into a join,
# which reorders rows.)
# `customer_id` is
# read as JSON so that its JSON type can be checked: 12.7 or "12" is not an id.
_RANGE_SQL = """
SELECT
    event_date, customer_id, event_type, "timestamp", extracted[1] ->> '$' AS session_id,
    extracted[2] ->> '$' AS plan, amount, properties,
    CASE
        WHEN customer_id_type IS NULL OR customer_id_type = 'NULL' THEN 'customer_id_required'
        WHEN event_type IS NULL THEN 'event_type_required'
        WHEN timestamp_raw IS NULL THEN 'timestamp_required'
        WHEN properties_type IS NULL OR properties_type = 'NULL' THEN 'properties_required'
        WHEN properties_type <> 'OBJECT' THEN 'properties_object'
        WHEN customer_id IS NULL THEN 'customer_id_integer'
        WHEN "timestamp" IS NULL THEN 'timestamp_iso8601'
        WHEN "timestamp" < event_date::TIMESTAMPTZ OR "timestamp" >= (event_date + 1)::TIMESTAMPTZ
            THEN 'timestamp_in_day'
        WHEN (CASE event_type {event_type_cases} ELSE FALSE END) = FALSE THEN 'event_type_known'
        WHEN amount_type NOT IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'NULL') THEN 'amount_number'
        WHEN amount < 0 OR amount > {amount_ceiling} THEN 'amount_range'
        WHEN amount IS NULL AND event_type = '{purchase}' THEN 'purchase_amount_required'
    END AS rule,
    customer_id_json, timestamp_raw, amount_json{filename}
FROM (
    SELECT
        *,
        CASE WHEN customer_id_type IN ('BIGINT', 'UBIGINT') THEN TRY_CAST(customer_id_json AS BIGINT) END
            AS customer_id,
        TRY_CAST(timestamp_raw AS TIMESTAMPTZ) AS "timestamp",
        extracted[3] AS amount_json,
        json_type(extracted[3]) AS amount_type,
        TRY_CAST(extracted[3] AS DOUBLE) AS amount
    FROM (
        SELECT
            "date" AS event_date,
            customer_id AS customer_id_json,
            json_type(customer_id) AS customer_id_type,
            event_type,
            "timestamp" AS timestamp_raw,
            json_type(properties) AS properties_type,
            json_extract(properties, ['$.session_id', '$.plan', '$.amount']) AS extracted,
            CAST(properties AS VARCHAR) AS properties{filename}
        FROM read_json(
            $files, format = 'newline_delimited', columns = {columns},
            hive_partitioning = true, hive_types = {{'date': DATE}}{with_filename}
        )
    )
)
"""
_JSON_TYPES = {"customer_id": "JSON", "event_type": "VARCHAR", "timestamp": "VARCHAR", "properties": "JSON"}
_COLUMNS_SQL = "{" + ", ".join(f"{name}: '{kind}'" for name, kind in _JSON_TYPES.items()) + "}"
_OUTPUT_COLUMNS = LOG_SCHEMA.names
# Each rule's offending value, by the column the rule checks.
_VALUE_COLUMNS = {
    "customer_id": "customer_id_json",
    "event_type": "event_type",
    "timestamp": "timestamp_raw",
    "properties": "properties",
    "amount": "amount_json",
}


def _range_sql(amount_ceiling: float, with_filename: bool = False) -> str:
    # The ceiling is a literal, not a bound parameter: with a parameter in the CASE, DuckDB's plan
    # no longer kept the rows in file order (seen on DuckDB 2.0).
    return _RANGE_SQL.format(
        amount_ceiling=float(amount_ceiling),
        columns=_COLUMNS_SQL,
        event_type_cases=" ".join(f"WHEN '{t}' THEN TRUE" for t in EVENT_TYPES),
        purchase=PURCHASE,
        filename=", filename" if with_filename else "",
        with_filename=", filename = true" if with_filename else "",
    )


@dataclass(frozen=True)
class ParsedLogs:
    """The rows that keep the contract (typed, LOG_SCHEMA) and those quarantined (QUARANTINE_SCHEMA)."""

    table: pa.Table
    quarantine: pa.Table
    rows_by_day: dict[str, int]  # rows read per day, kept and quarantined


def parse_landing_files(files_by_day: Mapping[str, Sequence[UPath]]) -> pa.Table:
    """Every file of these days as one typed, validated Arrow table; any row that breaks a rule
    raises LandingFileError naming the file, the line and the rule (no quarantine)."""
    return read_landing_files(files_by_day, max_quarantine_fraction=0.0).table


def read_landing_files(
    files_by_day: Mapping[str, Sequence[UPath]],
    max_quarantine_fraction: float,
    amount_ceiling: float = 100_000,
) -> ParsedLogs:
    """Every file of these days (``{"YYYY-MM-DD": files in that day's folder}``), read in one
    multi-threaded engine query that types the rows and checks the contract's row rules
    (contracts/interaction_logs.py). Rows that break a rule are returned as quarantine rows naming
    file, line, rule, column and value, unless a day's share of them exceeds
    ``max_quarantine_fraction``: then LandingFileError names the day, the counts and the first
    row. A file the engine cannot read at all (not JSON, not UTF-8) raises LandingFileError naming
    the file and line (found by the per-file parser)."""
    files = [f for day in sorted(files_by_day) for f in files_by_day[day]]
    if not files:
        return ParsedLogs(_empty_table(), _empty_quarantine(), {})
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = true")
        if protocol_of(files[0]):  # s3:// or gs://: DuckDB reads through our configured fsspec client
            con.register_filesystem(files[0].fs)
        params = {"files": [uri_of(f) for f in files]}
        table = con.sql(_range_sql(amount_ceiling), params=params).to_arrow_table()
        problem = None
    except duckdb.Error as exc:
        table, problem = None, str(exc).split("\n")[0]
    finally:
        con.close()
    if table is None:
        for file in files:  # the per-file parser finds the file and line that cannot be read, and raises
            _readable_or_raise(file)
        # Every file reads on its own: the engine's failure was not the data's (a storage error,
        # say), so it is not a LandingFileError and the asset's retry policy applies.
        raise RuntimeError(f"the interaction-log files could not be read: {problem}")
    broken = pc.is_valid(table["rule"])
    rows_by_day = _count_by_day(table["event_date"])
    quarantine = _empty_quarantine()
    if pc.any(broken).as_py():
        quarantine = _locate(files_by_day, amount_ceiling, params)
        _fail_past_limit(quarantine, rows_by_day, max_quarantine_fraction)
        table = table.filter(pc.invert(broken))
    return ParsedLogs(table.select(_OUTPUT_COLUMNS).cast(LOG_SCHEMA), quarantine, rows_by_day)


def _count_by_day(dates: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(dates)
    return {v["values"].as_py().isoformat(): v["counts"].as_py() for v in counts}


def _locate(files_by_day: Mapping[str, Sequence[UPath]], amount_ceiling: float, params: dict) -> pa.Table:
    """The quarantine rows with their files and line numbers: each file holding a broken row is
    read again alone, in order, so the n-th record is the n-th non-blank line."""
    con = duckdb.connect(config={"threads": 1})
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = true")
        first = next(f for day_files in files_by_day.values() for f in day_files)
        if protocol_of(first):  # s3:// or gs://: through the same fsspec client as the main query
            con.register_filesystem(first.fs)
        flagged = con.sql(
            f"SELECT DISTINCT filename FROM ({_range_sql(amount_ceiling, with_filename=True)}) "
            "WHERE rule IS NOT NULL ORDER BY 1",
            params=params,
        ).fetchall()
        rows = []
        for (uri,) in flagged:
            file = next(f for day_files in files_by_day.values() for f in day_files if uri_of(f) == uri)
            day = next(d for d, day_files in files_by_day.items() if file in day_files)
            text = file_bytes(file).decode("utf-8")
            # Split on newlines only, as the engine does (str.splitlines would also split on U+2028
            # inside a JSON string and shift every later line number).
            lines = [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
            found = con.sql(
                f"SELECT row_number() OVER () - 1 AS record, * FROM ({_range_sql(amount_ceiling, with_filename=True)})",
                params={"files": [uri]},
            ).to_arrow_table()
            for record in found.filter(pc.is_valid(found["rule"])).to_pylist():
                rule = record["rule"]
                column = INTERACTION_LOGS.rule(rule).column
                raw = record[_VALUE_COLUMNS[column]]
                value = _readable(raw) if column in ("customer_id", "amount") else raw
                number, text = lines[record["record"]]
                rows.append(
                    {
                        "partition": day,
                        "file": uri,
                        "line": number,
                        "rule": rule,
                        "column": column,
                        "value": None if raw is None else str(raw),
                        "message": rule_message(rule, value, day, amount_ceiling),
                        "record": text[:MAX_RECORD_CHARS],
                    }
                )
    finally:
        con.close()
    return pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)


def _readable(json_text: str | None) -> object:
    """A JSON value as the message shows it: "abc" as 'abc', 12.7 as 12.7."""
    try:
        return json.loads(json_text) if json_text is not None else None
    except ValueError:
        return json_text


def _fail_past_limit(quarantine: pa.Table, rows_by_day: Mapping[str, int], max_fraction: float) -> None:
    for day, total in sorted(rows_by_day.items()):
        mine = quarantine.filter(pc.equal(quarantine["partition"], day))
        if mine.num_rows and mine.num_rows > max_fraction * total:
            first = mine.slice(0, 1).to_pylist()[0]
            counts: dict[str, int] = {}
            for rule in mine["rule"].to_pylist():
                counts[rule] = counts.get(rule, 0) + 1
            share = f"{mine.num_rows} of {total} rows of {day} break the contract ({counts})"
            limit = (
                f"more than the {max_fraction:.0%} that may be quarantined" if max_fraction else "none may"
            )
            raise LandingFileError(
                f"{first['file']} line {first['line']}: {first['message']}. {share}: {limit}"
            )


def file_bytes(file: UPath) -> bytes:
    """A landing file's content, decompressed when it is gzip (``*.jsonl.gz``)."""
    content = file.read_bytes()
    if file.name.endswith(".gz"):
        try:
            return gzip.decompress(content)
        except (OSError, EOFError) as exc:
            raise LandingFileError(f"{uri_of(file)}: not a readable gzip file ({exc})") from None
    return content


def _readable_or_raise(file: UPath) -> None:
    content = file_bytes(file)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LandingFileError(f"{uri_of(file)}: not UTF-8 text ({exc})") from None
    problem = _first_bad_line(text)
    if problem is not None:
        raise LandingFileError(f"{uri_of(file)} {problem}")


def _empty_table() -> pa.Table:
    return pa.Table.from_pandas(empty_logs(), schema=LOG_SCHEMA, preserve_index=False)


def _empty_quarantine() -> pa.Table:
    return QUARANTINE_SCHEMA.empty_table()


def _line_number(content: bytes, row: int) -> int:
    """1-based line of the row-th JSON record (blank lines hold no record)."""
    seen = -1
    for number, line in enumerate(content.splitlines(), start=1):
        if line.strip():
            seen += 1
            if seen == row:
                return number
    return row + 1


def empty_logs() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in LOG_COLUMNS.items()})


def combine_logs(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One table for a set of files, in a stable order so that re-runs write identical files."""
    if not frames:
        return empty_logs()
    logs = pd.concat(frames, ignore_index=True)
    return logs.sort_values(
        ["timestamp", "customer_id", "event_type", "properties"], kind="stable"
    ).reset_index(drop=True)


def _first_bad_line(text: str) -> str | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"line {number}: not valid JSON ({exc.msg})"
        if not isinstance(value, dict):
            return f"line {number}: not a JSON object"
    return None
