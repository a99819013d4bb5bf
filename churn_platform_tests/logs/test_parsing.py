import datetime as dt
import json

import pytest

from churn_platform.logs.assets import read_landing_day
from churn_platform.logs.landing_zone import LandingZone
from churn_platform.logs.parsing import LOG_COLUMNS, LandingFileError, parse_log_file


def line(**overrides) -> str:
    event = {
        "customer_id": 7,
        "event_type": "purchase",
        "timestamp": "2026-01-05T10:11:12.5Z",
        "properties": {"session_id": "s1", "plan": "pro", "amount": 12.5, "coupon": "X"},
    }
    event.update(overrides)
    return json.dumps(event)


def parse(*lines: str):
    return parse_log_file("mem://day.jsonl", ("\n".join(lines) + "\n").encode(), "2026-01-05")


def test_valid_lines_become_a_typed_table_keeping_unknown_properties():
    frame = parse(
        line(), line(customer_id=8, event_type="login", properties={"session_id": "s2", "plan": "basic"})
    )
    assert list(frame.columns) == list(LOG_COLUMNS)
    assert frame["customer_id"].tolist() == [7, 8]
    assert frame["event_date"].tolist() == [dt.date(2026, 1, 5)] * 2
    assert frame["amount"].iloc[0] == 12.5 and frame["amount"].isna().iloc[1]
    assert frame["session_id"].tolist() == ["s1", "s2"]
    assert json.loads(frame["properties"].iloc[0])["coupon"] == "X"
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"


def test_malformed_json_names_file_and_line():
    with pytest.raises(LandingFileError, match=r"mem://day.jsonl line 2: not valid JSON"):
        parse(line(), '{"customer_id": 3, "event_type": oops}', line())


def test_missing_field_names_the_field_and_line():
    bad = json.loads(line())
    del bad["event_type"]
    with pytest.raises(LandingFileError, match=r"line 2: required field 'event_type' is missing"):
        parse(line(), json.dumps(bad))


@pytest.mark.parametrize(
    "bad, problem",
    [
        (line(customer_id="abc"), "customer_id 'abc' is not an integer"),
        (line(timestamp="yesterday"), "timestamp 'yesterday' is not ISO 8601"),
        (line(timestamp="2026-01-06T00:00:01Z"), "timestamp 2026-01-06T00:00:01Z is not on 2026-01-05"),
        (line(properties=[1, 2]), "'properties' must be a JSON object"),
    ],
)
def test_bad_values_name_line_and_problem(bad, problem):
    with pytest.raises(LandingFileError, match="line 3: " + problem.replace("(", r"\(")):
        parse(line(), line(), bad)


def test_empty_file_gives_an_empty_typed_table():
    frame = parse_log_file("mem://empty.jsonl", b"", "2026-01-05")
    assert len(frame) == 0 and list(frame.columns) == list(LOG_COLUMNS)


def test_a_day_without_files_fails_naming_the_folder(tmp_path):
    zone = LandingZone(base_path=str(tmp_path))
    with pytest.raises(
        LandingFileError, match=r"no interaction-log files for 2026-01-05 under .*date=2026-01-05"
    ):
        read_landing_day(zone, "2026-01-05")


def test_all_files_of_a_day_are_read(tmp_path):
    zone = LandingZone(base_path=str(tmp_path))
    zone.write_file("2026-01-05", "a.jsonl", line() + "\n")
    zone.write_file("2026-01-05", "b.jsonl", line(customer_id=9) + "\n")
    zone.write_file("2026-01-05", ".tmp-123.part", "a write in progress is not read")
    frame, files = read_landing_day(zone, "2026-01-05")
    assert sorted(frame["customer_id"].to_pylist()) == [7, 9]
    assert [f.rsplit("/", 1)[1] for f in files] == ["a.jsonl", "b.jsonl"]


def test_the_engine_path_equals_the_per_file_parser_on_a_generated_day(tmp_path):
    """parse_landing_files (one DuckDB query, Arrow) against the reference per-file parser, on a
    day of generated files plus an empty file, blank lines and timestamps with offsets."""
    from churn_platform.logs.parsing import combine_logs, parse_landing_files
    from churn_platform.synthetic.generator import generate
    from churn_platform.synthetic.writer import write_generated

    zone = LandingZone(base_path=str(tmp_path))
    write_generated(
        generate(dt.date(2026, 1, 1), days=5, customers=300, seed=4), zone, str(tmp_path / "t.jsonl"), None
    )
    zone.write_file("2026-01-05", "empty.jsonl", "")
    zone.write_file(
        "2026-01-05",
        "offsets.jsonl",
        "\n".join(
            ["", line(timestamp="2026-01-05T23:30:00-00:15"), "", line(timestamp="2026-01-05T01:00:00+01:00")]
        ),
    )
    days = {day: zone.files_for(day) for day in ("2026-01-04", "2026-01-05")}
    fast = parse_landing_files(days).to_pandas()
    slow = combine_logs(
        [parse_log_file(str(f), f.read_bytes(), day) for day, files in days.items() for f in files]
    )
    assert len(fast) == len(slow) > 1000
    key = ["timestamp", "customer_id", "event_type", "properties"]  # the reference parser's order
    fast = fast.sort_values(key, kind="stable").reset_index(drop=True)
    for column in LOG_COLUMNS:
        assert fast[column].astype(str).tolist() == slow[column].astype(str).tolist(), column
    # Rows keep the files' order and each file's line order: the same files, the same table.
    again = parse_landing_files(days)
    assert again.equals(parse_landing_files(days))
    first = json.loads(days["2026-01-04"][0].read_text().splitlines()[0])
    assert again["customer_id"][0].as_py() == first["customer_id"]


@pytest.mark.parametrize(
    "bad, problem",
    [
        ('{"customer_id": 3, "event_type": oops}', "line 2: not valid JSON"),
        (line(customer_id="abc"), "line 2: customer_id 'abc' is not an integer"),
        (
            line(timestamp="2026-01-06T00:00:01Z"),
            "line 2: timestamp 2026-01-06T00:00:01Z is not on 2026-01-05",
        ),
        (line(properties=[1, 2]), "line 2: 'properties' must be a JSON object"),
        (line(customer_id=None), "line 2: required field 'customer_id' is missing or null"),
    ],
)
def test_a_bad_line_in_any_file_of_the_day_is_named_by_file_and_line(tmp_path, bad, problem):
    from churn_platform.logs.parsing import parse_landing_files

    zone = LandingZone(base_path=str(tmp_path))
    zone.write_file("2026-01-05", "a.jsonl", line() + "\n")
    zone.write_file("2026-01-05", "b.jsonl", line() + "\n" + bad + "\n")
    with pytest.raises(LandingFileError, match=r"date=2026-01-05/b\.jsonl " + problem.replace("(", r"\(")):
        parse_landing_files({"2026-01-05": zone.files_for("2026-01-05")})
