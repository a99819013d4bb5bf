"""The inference log's format: what the service writes reads back exactly, a failed write loses
nothing, and every malformed line is refused naming the file, the line and what is wrong."""

import datetime as dt
import json
import os

import pytest
from upath import UPath

from churn_platform.inference.log import (
    InferenceLog,
    InferenceLogError,
    list_day_files,
    read_inference_files,
)

DAY = "2026-03-02"
NOON = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
GOOD = {
    "request_id": "r1",
    "answered_at": "2026-03-02T12:00:00.000001+00:00",
    "model_version": "3",
    "model_sha256": "a" * 64,
    "features_as_of": "2026-03-01",
    "latency_ms": 2.5,
    "endpoint": "batch",
    "caller": "crm",
    "customer_ids": [42, 43],
    "churn_probabilities": [0.25, 1],
}


def record(**fields):
    return {k: v for k, v in GOOD.items() if k != "answered_at"} | fields


def test_what_the_service_logs_reads_back_exactly(tmp_path):
    clock = iter([NOON, NOON, NOON + dt.timedelta(hours=13)])  # the third record is the next day
    log = InferenceLog(UPath(tmp_path), 60, clock=lambda: next(clock))
    log.record(**record(request_id="a", customer_ids=[1, 2], churn_probabilities=[0.1, 0.9]))
    log.record(
        **record(
            request_id="b",
            customer_ids=[None],
            churn_probabilities=[0.5],
            features_as_of=None,
            endpoint="features",
        )
    )
    log.record(**record(request_id="c"))
    written = log.flush()
    assert len(written) == 2 and log.flush() == []  # one file per day; nothing twice
    table, read = read_inference_files(DAY, list_day_files(UPath(tmp_path), DAY))
    # One row per prediction, the request's fields on each.
    assert table.column("request_id").to_pylist() == ["a", "a", "b"]
    assert table.column("customer_id").to_pylist() == [1, 2, None]
    assert table.column("churn_probability").to_pylist() == [0.1, 0.9, 0.5]
    assert table.column("features_as_of").to_pylist() == [dt.date(2026, 3, 1)] * 2 + [None]
    assert [r["uri"] for r in read] == [written[0]] and len(read[0]["sha256"]) == 64
    next_day, _ = read_inference_files("2026-03-03", list_day_files(UPath(tmp_path), "2026-03-03"))
    assert next_day.column("request_id").to_pylist() == ["c", "c"]


def test_a_write_that_fails_keeps_the_records_for_the_next_flush(tmp_path):
    blocked = tmp_path / "landing"
    blocked.write_text("a file where the landing folder should be")
    log = InferenceLog(UPath(blocked), 60, clock=lambda: NOON)
    log.record(**record())
    assert log.flush() == [] and log.last_error and "Error" in log.last_error
    os.remove(blocked)
    assert len(log.flush()) == 1 and log.last_error is None
    table, _ = read_inference_files(DAY, list_day_files(UPath(blocked), DAY))
    assert table.num_rows == 2


def test_stop_writes_what_is_buffered(tmp_path):
    log = InferenceLog(UPath(tmp_path), 3600, clock=lambda: NOON)
    log.start()
    log.record(**record())
    log.stop()
    assert len(list_day_files(UPath(tmp_path), DAY)) == 1


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({**GOOD, "customer_ids": [42, 12.7]}), "customer_ids[1] 12.7 is not an integer"),
        (json.dumps({**GOOD, "customer_ids": ["12", 3]}), "customer_ids[0] '12' is not an integer"),
        (
            json.dumps({**GOOD, "churn_probabilities": [0.1, 1.5]}),
            "churn_probabilities[1] 1.5 is not a number in [0, 1]",
        ),
        (json.dumps({**GOOD, "churn_probabilities": ["0.2", 0.1]}), "is not a number in [0, 1]"),
        (json.dumps({**GOOD, "churn_probabilities": [0.2]}), "2 customer_ids but 1 churn_probabilities"),
        (json.dumps({**GOOD, "customer_ids": [], "churn_probabilities": []}), "must be non-empty lists"),
        (json.dumps({**GOOD, "customer_ids": 42}), "must be non-empty lists"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "model_version"}), "missing: ['model_version']"),
        (json.dumps({**GOOD, "model_version": None}), "missing: ['model_version']"),
        (json.dumps({**GOOD, "surprise": 1}), "unknown field(s) ['surprise']"),
        (json.dumps({**GOOD, "answered_at": "2026-03-02T12:00:00"}), "no time zone"),
        (json.dumps({**GOOD, "answered_at": "2026-03-03T00:00:01+00:00"}), "not on 2026-03-02"),
        (json.dumps({**GOOD, "features_as_of": "yesterday"}), "malformed"),
    ],
)
def test_a_malformed_line_is_refused_by_file_and_line(tmp_path, line, says):
    folder = tmp_path / "inference_logs" / f"date={DAY}"
    folder.mkdir(parents=True)
    (folder / "part-1.jsonl").write_text(json.dumps(GOOD) + "\n\n" + line + "\n")
    with pytest.raises(InferenceLogError) as error:
        read_inference_files(DAY, list_day_files(UPath(tmp_path), DAY))
    assert "part-1.jsonl line 3" in str(error.value) and says in str(error.value)


def test_files_that_are_not_inference_logs_are_refused_by_name(tmp_path):
    folder = tmp_path / "inference_logs" / f"date={DAY}"
    folder.mkdir(parents=True)
    (folder / "part-1.jsonl").write_text(json.dumps(GOOD) + "\n")
    (folder / ".tmp-123.part").write_text("a write in progress is not read")
    assert [p.name for p in list_day_files(UPath(tmp_path), DAY)] == ["part-1.jsonl"]
    (folder / "part-2.jsonl.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(InferenceLogError, match=r"not inference logs: \['part-2.jsonl.gz'\]"):
        list_day_files(UPath(tmp_path), DAY)
    (folder / "part-3.jsonl").write_bytes(b"\xff\xfe")
    (folder / "part-2.jsonl.gz").unlink()
    with pytest.raises(InferenceLogError, match="part-3.jsonl: not UTF-8"):
        read_inference_files(DAY, list_day_files(UPath(tmp_path), DAY))


def test_a_day_without_files_is_an_empty_table(tmp_path):
    table, read = read_inference_files(DAY, list_day_files(UPath(tmp_path), DAY))
    assert table.num_rows == 0 and read == [] and "churn_probability" in table.column_names
