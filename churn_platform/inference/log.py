"""The inference log: every prediction the scoring service answers, as JSON lines in the landing zone.

Layout: ``<landing zone>/inference_logs/date=YYYY-MM-DD/part-<time>-<host>-<pid>-<n>.jsonl``, the
date being the UTC day the prediction was answered. One line per request: its id, time, model
version and SHA-256, features date, latency, endpoint and caller, and the customers it scored with
their probabilities (``customer_ids`` and ``churn_probabilities``, in the same order): a batch of
100 is one line, so logging costs little per prediction. The service buffers lines and writes a new
file per flush (every ``CHURN_INFERENCE_LOG_FLUSH_SECONDS``, when the buffer is full, and at
shutdown): object stores cannot append, and a file is never rewritten, so a reader or a backup never
sees one change. A crash loses at most one flush interval of records (the answers were given).

``raw/inference_logs`` reads a day's files back with ``read_inference_files`` as one row per
prediction: typed, checked, and any bad line is reported by file and line number.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow as pa
from upath import UPath

from churn_platform.storage.files import sha256_hex, uri_of, validate_partition_key, write_bytes_atomic

log = logging.getLogger(__name__)

INFERENCE_PREFIX = "inference_logs"
FLUSH_AT_RECORDS = 20_000  # requests buffered: the flusher is woken early
MAX_BUFFERED_RECORDS = (
    200_000  # while the store refuses writes, the oldest lines beyond this are dropped (counted)
)

INFERENCE_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("answered_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("customer_id", pa.int64()),  # null: a posted feature row without an id
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
        pa.field("features_as_of", pa.date32()),  # null: posted features
        pa.field("churn_probability", pa.float64(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("endpoint", pa.string(), nullable=False),
        pa.field("caller", pa.string(), nullable=False),
    ]
)
# A line's fields: the request's, and the predictions' as two lists of the same length.
REQUEST_FIELDS = [n for n in INFERENCE_SCHEMA.names if n not in ("customer_id", "churn_probability")]
PREDICTION_LISTS = ("customer_ids", "churn_probabilities")
REQUIRED = [
    *(f.name for f in INFERENCE_SCHEMA if not f.nullable and f.name in REQUEST_FIELDS),
    *PREDICTION_LISTS,
]


class InferenceLogError(ValueError):
    """A line of the inference log that does not follow the format; the message names file and line."""


def day_folder(landing_root: UPath, day: str) -> UPath:
    return landing_root.joinpath(INFERENCE_PREFIX, f"date={validate_partition_key(day)}")


class InferenceLog:
    """Buffers the service's predictions and writes them to the landing zone, one new file per flush."""

    def __init__(
        self,
        landing_root: UPath,
        flush_seconds: float,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.landing_root = landing_root
        self.flush_seconds = flush_seconds
        self.clock = clock
        self._buffer: list[tuple[str, str]] = []  # (UTC day, encoded line)
        self._lock = threading.Lock()  # guards the buffer
        self._flushing = threading.Lock()  # one flush at a time, so file numbers never collide
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.dropped = 0  # lines dropped because the store refused writes for too long
        self._thread: threading.Thread | None = None
        self._files = itertools.count()
        self._origin = f"{socket.gethostname()}-{os.getpid()}"
        self.last_error: str | None = None

    def record(self, customer_ids: list[int | None], churn_probabilities: list[float], **fields: Any) -> None:
        """One request's predictions (``fields``: the request's, REQUEST_FIELDS but ``answered_at``,
        which is now). The line is encoded here, a few microseconds per request, so that a flush
        only joins and writes bytes and never holds the interpreter for long."""
        answered_at = self.clock().isoformat(timespec="microseconds")
        fields["answered_at"] = answered_at
        fields["customer_ids"], fields["churn_probabilities"] = customer_ids, churn_probabilities
        line = json.dumps(fields, separators=(",", ":")) + "\n"
        with self._lock:
            self._buffer.append((answered_at[:10], line))
            full = len(self._buffer) >= FLUSH_AT_RECORDS
        if full:
            self._wake.set()  # the flusher writes; the request never waits for storage

    def flush(self) -> list[str]:
        """Write what is buffered (a file per UTC day it covers); returns the files' URIs. Lines
        that could not be written go back to the buffer for the next flush."""
        with self._flushing:
            with self._lock:
                buffered, self._buffer = self._buffer, []
            if not buffered:
                return []
            by_day: dict[str, list[str]] = defaultdict(list)
            for day, line in buffered:
                by_day[day].append(line)
            written, errors = [], []
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
            for day, lines in sorted(by_day.items()):
                name = f"part-{stamp}-{self._origin}-{next(self._files)}.jsonl"
                path = day_folder(self.landing_root, day) / name
                try:
                    write_bytes_atomic(path, "".join(lines).encode())
                except Exception as exc:  # keep the lines; the next flush tries again
                    errors.append(f"{type(exc).__name__} writing {uri_of(path)}")
                    log.warning("inference log not written (%s); %d requests kept", errors[-1], len(lines))
                    with self._lock:
                        self._buffer[:0] = [(day, line) for line in lines]
                        excess = len(self._buffer) - MAX_BUFFERED_RECORDS
                        if excess > 0:  # bounded memory: the oldest lines go, and are counted
                            del self._buffer[:excess]
                            self.dropped += excess
                    continue
                written.append(uri_of(path))
            self.last_error = "; ".join(errors) or None
            return written

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.flush()

    def stop(self) -> None:
        """Stop the flusher and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.flush_seconds + 30)
        self.flush()


def _predictions(record: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """A line's predictions as rows of INFERENCE_SCHEMA; nothing is coerced (a customer id of 12.7
    or "12" is an error, not customer 13)."""
    missing = [name for name in REQUIRED if record.get(name) is None]
    if missing:
        raise InferenceLogError(f"{where}: required field(s) missing: {missing}")
    unknown = sorted(set(record) - set(REQUEST_FIELDS) - set(PREDICTION_LISTS))
    if unknown:
        raise InferenceLogError(f"{where}: unknown field(s) {unknown}")
    request = {name: record.get(name) for name in REQUEST_FIELDS}
    try:
        request["answered_at"] = dt.datetime.fromisoformat(str(record["answered_at"]))
        if request["answered_at"].tzinfo is None:
            raise ValueError("no time zone")
        if record.get("features_as_of") is not None:
            request["features_as_of"] = dt.date.fromisoformat(str(record["features_as_of"]))
    except ValueError as exc:
        raise InferenceLogError(f"{where}: a time or date is malformed ({exc})") from None
    customers, probabilities = record["customer_ids"], record["churn_probabilities"]
    if not isinstance(customers, list) or not isinstance(probabilities, list) or not customers:
        raise InferenceLogError(f"{where}: customer_ids and churn_probabilities must be non-empty lists")
    if len(customers) != len(probabilities):
        raise InferenceLogError(
            f"{where}: {len(customers)} customer_ids but {len(probabilities)} churn_probabilities"
        )
    rows = []
    for index, (customer, probability) in enumerate(zip(customers, probabilities, strict=True)):
        if customer is not None and type(customer) is not int:
            raise InferenceLogError(f"{where}: customer_ids[{index}] {customer!r} is not an integer")
        if type(probability) not in (int, float) or not 0.0 <= probability <= 1.0:
            raise InferenceLogError(
                f"{where}: churn_probabilities[{index}] {probability!r} is not a number in [0, 1]"
            )
        rows.append({**request, "customer_id": customer, "churn_probability": float(probability)})
    return rows


def read_inference_files(day: str, files: Iterable[UPath]) -> tuple[pa.Table, list[dict[str, Any]]]:
    """A day's inference-log files as one typed table (files in name order, lines in file order)
    and each file's URI, size and SHA-256 as read; a record answered on another day, or any
    malformed line, fails naming the file and line."""
    rows, read = [], []
    for path in sorted(files, key=lambda p: p.name):
        data = path.read_bytes()
        read.append({"uri": uri_of(path), "bytes": len(data), "sha256": sha256_hex(data)})
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InferenceLogError(f"{uri_of(path)}: not UTF-8 (byte {exc.start})") from None
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{uri_of(path)} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InferenceLogError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise InferenceLogError(f"{where}: not a JSON object")
            predictions = _predictions(record, where)
            if predictions[0]["answered_at"].astimezone(dt.UTC).date().isoformat() != day:
                raise InferenceLogError(
                    f"{where}: answered at {record['answered_at']}, not on {day} (the folder's day)"
                )
            rows.extend(predictions)
    return pa.Table.from_pylist(rows, schema=INFERENCE_SCHEMA), read


def list_day_files(landing_root: UPath, day: str) -> list[UPath]:
    """The day's inference-log files; anything else in the folder is refused by name."""
    folder = day_folder(landing_root, day)
    folder.fs.invalidate_cache(folder.path)
    if not folder.exists():
        return []
    # Hidden names are writes in progress (write_bytes_atomic's temporary files).
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    unexpected = sorted(p.name for p in entries if not p.name.endswith(".jsonl"))
    if unexpected:
        raise InferenceLogError(f"{uri_of(folder)} holds file(s) that are not inference logs: {unexpected}")
    return sorted(entries, key=lambda p: p.name)
