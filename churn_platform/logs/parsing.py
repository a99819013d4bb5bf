"""Parsing and validating interaction-log files into a typed table.

``parse_landing_files`` reads a day's files with one multi-threaded DuckDB query that parses,
types, validates every rule (the `bad` column) and sorts, and returns Arrow. Only when a row breaks
a rule, or DuckDB cannot read a file, does it go back to ``parse_log_file``, the per-file parser,
which names the file, the line and the rule (and is the reference the fast path is tested against).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from upath import UPath

from churn_platform.storage.files import protocol_of, uri_of

REQUIRED_FIELDS = ("customer_id", "event_type", "timestamp", "properties")

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


_COLUMNS_SQL = "{" + ", ".join(f"{name}: '{kind}'" for name, kind in _JSON_COLUMNS.items()) + "}"
# Every file of a range in one query. Each row's day comes from its file's folder (date=YYYY-MM-DD,
# read once per file as a hive partition), the three properties the tables use are extracted in
# one JSON pass, and rows keep the files' order and each file's line order (DuckDB preserves
# insertion order), so the same files always give the same table without a sort.
_RANGE_SQL = """
SELECT
    event_date, customer_id, event_type, "timestamp",
    extracted[1] AS session_id, extracted[2] AS plan, TRY_CAST(extracted[3] AS DOUBLE) AS amount,
    properties
FROM (
    SELECT
        "date" AS event_date,
        TRY_CAST(customer_id AS BIGINT) AS customer_id,
        event_type,
        TRY_CAST("timestamp" AS TIMESTAMPTZ) AS "timestamp",
        json_extract_string(properties, ['$.session_id', '$.plan', '$.amount']) AS extracted,
        CAST(properties AS VARCHAR) AS properties{filename}
    FROM read_json(
        $files, format = 'newline_delimited', columns = {columns},
        hive_partitioning = true, hive_types = {{'date': DATE}}{with_filename}
    )
)
"""
# A row breaks a rule: a required field missing or of the wrong type, `properties` not an object
# (read_json has already checked it is JSON), or a timestamp outside its file's day.
_BAD_ROW = """(customer_id IS NULL OR event_type IS NULL OR "timestamp" IS NULL OR properties IS NULL
    OR NOT starts_with(ltrim(properties), '{')
    OR "timestamp" < event_date::TIMESTAMPTZ OR "timestamp" >= (event_date + 1)::TIMESTAMPTZ)"""


def _range_sql(with_filename: bool = False) -> str:
    return _RANGE_SQL.format(
        columns=_COLUMNS_SQL,
        filename=", filename" if with_filename else "",
        with_filename=", filename = true" if with_filename else "",
    )


def parse_landing_files(files_by_day: Mapping[str, Sequence[UPath]]) -> pa.Table:
    """Every file of these days (``{"YYYY-MM-DD": files in that day's folder}``) as one typed,
    validated Arrow table, in one multi-threaded engine query. A file or line that breaks a rule
    raises LandingFileError naming the file, the line and the rule (found by the per-file parser)."""
    files = [f for day in sorted(files_by_day) for f in files_by_day[day]]
    if not files:
        return pa.Table.from_pandas(empty_logs(), schema=LOG_SCHEMA, preserve_index=False)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = true")
        if protocol_of(files[0]):  # s3:// or gs://: DuckDB reads through our configured fsspec client
            con.register_filesystem(files[0].fs)
        params = {"files": [uri_of(f) for f in files]}
        table = con.sql(f"SELECT *, {_BAD_ROW} AS bad FROM ({_range_sql()})", params=params).to_arrow_table()
        bad_files = None
        if pc.any(table["bad"]).as_py():  # only now: which files hold the bad rows
            query = f"SELECT DISTINCT filename FROM ({_range_sql(with_filename=True)}) WHERE {_BAD_ROW} ORDER BY 1"
            bad_files = [row[0] for row in con.sql(query, params=params).fetchall()]
        problem = None
    except duckdb.Error as exc:
        table, problem, bad_files = None, str(exc).split("\n")[0], None
    finally:
        con.close()
    if table is None or bad_files:
        suspects = [f for f in files if bad_files is None or uri_of(f) in bad_files]
        for file in suspects:  # the per-file parser finds the file, the line and the rule, and raises
            day = next(d for d, day_files in files_by_day.items() if file in day_files)
            parse_log_file(uri_of(file), file.read_bytes(), day)
        # Every file parses on its own: the engine's failure was not the data's (a storage error,
        # say), so it is not a LandingFileError and the asset's retry policy applies.
        raise RuntimeError(
            f"the interaction-log files could not be read: {problem or 'engine and parser disagree'}"
        )
    return table.drop_columns(["bad"]).cast(LOG_SCHEMA)


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
