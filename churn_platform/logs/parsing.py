"""Parsing and validating interaction-log files into a typed table."""

from __future__ import annotations

import datetime as dt
import io
import json

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
    "properties": "string",  # the original properties object, as JSON
}


class LandingFileError(ValueError):
    """A landing file that cannot be read; the message names the file and the problem."""


def parse_log_file(uri: str, content: bytes, expected_date: str) -> pd.DataFrame:
    """Parse one JSON-lines file; every event must fall on ``expected_date`` (UTC)."""
    text = content.decode("utf-8", errors="strict") if content else ""
    if not text.strip():
        return empty_logs()
    try:
        raw = pd.read_json(io.StringIO(text), lines=True, dtype=False, convert_dates=False)
    except ValueError:
        raise LandingFileError(f"{uri}: {_first_bad_line(text)}") from None

    missing = [f for f in REQUIRED_FIELDS if f not in raw.columns]
    if missing:
        raise LandingFileError(
            f"{uri}: missing required field(s) {missing}; every line needs {list(REQUIRED_FIELDS)}"
        )
    for field in REQUIRED_FIELDS:
        nulls = raw[field].isna()
        if nulls.any():
            line = int(np.argmax(nulls.to_numpy())) + 1
            raise LandingFileError(f"{uri} line {line}: field {field!r} is null or missing")

    props = raw["properties"]
    not_object = ~props.map(lambda v: isinstance(v, dict))
    if not_object.any():
        line = int(np.argmax(not_object.to_numpy())) + 1
        raise LandingFileError(f"{uri} line {line}: 'properties' must be a JSON object")

    customer_id = pd.to_numeric(raw["customer_id"], errors="coerce")
    bad_id = customer_id.isna() | (customer_id != np.floor(customer_id))
    if bad_id.any():
        line = int(np.argmax(bad_id.to_numpy())) + 1
        raise LandingFileError(f"{uri} line {line}: customer_id {raw['customer_id'].iloc[line - 1]!r} is not an integer")

    timestamps = pd.to_datetime(raw["timestamp"], utc=True, errors="coerce", format="ISO8601")
    if timestamps.isna().any():
        line = int(np.argmax(timestamps.isna().to_numpy())) + 1
        raise LandingFileError(f"{uri} line {line}: timestamp {raw['timestamp'].iloc[line - 1]!r} is not ISO 8601")
    day = dt.date.fromisoformat(expected_date)
    dates = timestamps.dt.date
    off_day = dates != day
    if off_day.any():
        line = int(np.argmax(off_day.to_numpy())) + 1
        raise LandingFileError(
            f"{uri} line {line}: timestamp {raw['timestamp'].iloc[line - 1]} is not on {expected_date} "
            "(UTC); files must land in the folder of the day their events happened"
        )

    frame = pd.DataFrame(
        {
            "event_date": dates,
            "customer_id": customer_id.astype("int64"),
            "event_type": raw["event_type"].astype(str),
            "timestamp": timestamps.astype("datetime64[us, UTC]"),
            "session_id": props.map(lambda p: p.get("session_id")),
            "plan": props.map(lambda p: p.get("plan")),
            "amount": pd.to_numeric(props.map(lambda p: p.get("amount")), errors="coerce"),
            "properties": props.map(lambda p: json.dumps(p, sort_keys=True, separators=(",", ":"))),
        }
    )
    return frame.astype(LOG_COLUMNS)


def empty_logs() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in LOG_COLUMNS.items()})


def combine_logs(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One table for a set of files, in a stable order so that re-runs write identical files."""
    if not frames:
        return empty_logs()
    logs = pd.concat(frames, ignore_index=True)
    return logs.sort_values(["timestamp", "customer_id", "event_type", "properties"], kind="stable").reset_index(drop=True)


def _first_bad_line(text: str) -> str:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"line {number} is not valid JSON ({exc.msg})"
        if not isinstance(value, dict):
            return f"line {number} is not a JSON object"
    return "file is not valid JSON lines"
