"""Parsing and validating interaction-log files into a typed table."""

from __future__ import annotations

import datetime as dt
import io
import json

import duckdb
import numpy as np
import pandas as pd

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
