"""The landing contract, case by case (one row per bad input): rows that break a row rule are
quarantined with the rule, column, value, file and line, and the day keeps every good row; files
that cannot be read, or that are not logs, fail the day naming them; too many broken rows fail the
day; an emptied day never replaces a good partition; a fixed file is re-admitted."""

import datetime as dt
import gzip
import json

import dagster as dg
import pyarrow.parquet as pq
import pytest
from upath import UPath

from churn_platform.contracts.interaction_logs import EVENT_TYPES, INTERACTION_LOGS
from churn_platform.contracts.quarantine import QuarantineStore
from churn_platform.features.activity import EVENT_COUNTS
from churn_platform.logs.assets import build_log_assets, landed_files, volume_problem, without_duplicates
from churn_platform.logs.landing_zone import LandingZone
from churn_platform.logs.parsing import LandingFileError, read_landing_files
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.automation import on_upstream_change
from churn_platform.orchestration.partitions import build_partitions
from churn_platform.settings import ContractSettings, load_settings
from churn_platform.storage.parquet_io_manager import ParquetIOManager

DAY = "2026-01-05"
GOOD_LINES = 200  # one bad line among them is 0.5 %: under the default 1 % it is quarantined


def event(**overrides) -> dict:
    base = {
        "customer_id": 7,
        "event_type": "purchase",
        "timestamp": f"{DAY}T10:11:12.5Z",
        "properties": {"session_id": "s1", "plan": "pro", "amount": 12.5},
    }
    base.update(overrides)
    return base


def props(**overrides) -> dict:
    return {"session_id": "s1", "plan": "pro", "amount": 12.5, **overrides}


def without(field: str) -> dict:
    bad = event()
    del bad[field]
    return bad


def day_with(zone: LandingZone, bad_line: str, name: str = "events.jsonl") -> None:
    lines = [json.dumps(event(customer_id=n)) for n in range(GOOD_LINES)]
    lines.insert(100, "")  # a blank line: line numbers count it
    lines.insert(150, bad_line)
    zone.write_file(DAY, name, "\n".join(lines) + "\n")


# case -> (the bad line, rule, column, value as stored)
QUARANTINED = {
    "id with decimals is not rounded": (
        event(customer_id=12.7),
        "customer_id_integer",
        "customer_id",
        "12.7",
    ),
    "id as text is not parsed": (event(customer_id="12"), "customer_id_integer", "customer_id", '"12"'),
    "id null": (event(customer_id=None), "customer_id_required", "customer_id", None),
    "id missing": (without("customer_id"), "customer_id_required", "customer_id", None),
    "amount as text is not NULL-as-zero": (
        event(properties=props(amount="abc")),
        "amount_number",
        "amount",
        '"abc"',
    ),
    "negative amount": (event(properties=props(amount=-5)), "amount_range", "amount", "-5"),
    "amount beyond the ceiling": (
        event(properties=props(amount=1e20)),
        "amount_range",
        "amount",
        "100000000000000000000.0",
    ),
    "purchase without amount": (
        event(properties={"session_id": "s1"}),
        "purchase_amount_required",
        "amount",
        None,
    ),
    "purchase with null amount": (
        event(properties=props(amount=None)),
        "purchase_amount_required",
        "amount",
        "null",
    ),
    "unknown event type (a rename upstream)": (
        event(event_type="cancel_subscription_v2"),
        "event_type_known",
        "event_type",
        "cancel_subscription_v2",
    ),
    "empty event type": (event(event_type=""), "event_type_known", "event_type", ""),
    "event type null": (event(event_type=None), "event_type_required", "event_type", None),
    "timestamp on another day": (
        event(timestamp="2026-01-06T00:00:01Z"),
        "timestamp_in_day",
        "timestamp",
        "2026-01-06T00:00:01Z",
    ),
    "timestamp not a time": (event(timestamp="yesterday"), "timestamp_iso8601", "timestamp", "yesterday"),
    "timestamp missing": (without("timestamp"), "timestamp_required", "timestamp", None),
    "properties not an object": (event(properties=[1, 2]), "properties_object", "properties", "[1,2]"),
    "properties missing": (without("properties"), "properties_required", "properties", None),
}


@pytest.mark.parametrize("case", list(QUARANTINED))
def test_a_row_that_breaks_a_rule_is_quarantined_with_file_line_rule_and_value(tmp_path, case):
    bad, rule, column, value = QUARANTINED[case]
    zone = LandingZone(base_path=str(tmp_path))
    day_with(zone, json.dumps(bad))
    parsed = read_landing_files({DAY: landed_files(zone, DAY)}, max_quarantine_fraction=0.01)
    assert parsed.table.num_rows == GOOD_LINES and parsed.rows_by_day == {DAY: GOOD_LINES + 1}
    [row] = parsed.quarantine.to_pylist()
    assert (row["rule"], row["column"], row["value"]) == (rule, column, value)
    assert (
        row["file"].endswith(f"date={DAY}/events.jsonl") and row["line"] == 151
    )  # the blank line at 101 counts
    assert row["record"] == json.dumps(bad) and row["partition"] == DAY
    assert rule in {r.name for r in INTERACTION_LOGS.rules}


# case -> (what lands, the error's text)
FAILED = {
    "a line that is not JSON": (
        {"events.jsonl": '{"customer_id": 7, oops}\n'},
        "events.jsonl line 1: not valid JSON",
    ),
    "not UTF-8": ({"events.jsonl": b"\xff\xfe\x00"}, "events.jsonl: not UTF-8 text"),
    "an upper-case .JSONL": ({"EVENTS.JSONL": json.dumps(event()) + "\n"}, "holds ['EVENTS.JSONL']"),
    "a CSV": ({"events.csv": "customer_id\n7\n"}, "holds ['events.csv']: only *.jsonl and *.jsonl.gz"),
    "a broken gzip": ({"events.jsonl.gz": b"\x1f\x8b\x08not gzip"}, "events.jsonl.gz"),
    "an empty day folder": ({}, f"no interaction-log files for {DAY}"),
}


@pytest.mark.parametrize("case", list(FAILED))
def test_files_that_cannot_be_read_or_are_not_logs_fail_the_day_naming_them(tmp_path, case):
    files, text = FAILED[case]
    zone = LandingZone(base_path=str(tmp_path))
    folder = UPath(tmp_path) / "interaction_logs" / f"date={DAY}"
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(LandingFileError, match=text.replace("[", r"\[").replace("*", r"\*")):
        read_landing_files({DAY: landed_files(zone, DAY)}, max_quarantine_fraction=0.01)


def test_gzip_files_are_read_like_plain_ones(tmp_path):
    zone = LandingZone(base_path=str(tmp_path))
    folder = UPath(tmp_path) / "interaction_logs" / f"date={DAY}"
    folder.mkdir(parents=True)
    (folder / "a.jsonl.gz").write_bytes(gzip.compress((json.dumps(event(customer_id=1)) + "\n").encode()))
    (folder / "b.jsonl").write_text(json.dumps(event(customer_id=2)) + "\n")
    bad = gzip.compress(
        (
            "\n".join(
                [json.dumps(event(customer_id=n)) for n in range(300)] + [json.dumps(event(customer_id=1.5))]
            )
            + "\n"
        ).encode()
    )
    (folder / "c.jsonl.gz").write_bytes(bad)
    parsed = read_landing_files({DAY: landed_files(zone, DAY)}, max_quarantine_fraction=0.01)
    assert parsed.table.num_rows == 302
    [row] = parsed.quarantine.to_pylist()
    assert row["file"].endswith("c.jsonl.gz") and row["line"] == 301 and row["rule"] == "customer_id_integer"


def test_the_same_batch_landed_under_two_names_is_read_once(tmp_path):
    zone = LandingZone(base_path=str(tmp_path))
    batch = "\n".join(json.dumps(event(customer_id=n)) for n in range(5)) + "\n"
    zone.write_file(DAY, "batch-1.jsonl", batch)
    zone.write_file(DAY, "batch-1-retry.jsonl", batch)  # the same bytes, landed again
    zone.write_file(DAY, "other.jsonl", batch.replace('"customer_id": 4', '"customer_id": 5'))  # same size
    files, duplicates = without_duplicates(landed_files(zone, DAY))
    assert [f.name for f in files] == ["batch-1-retry.jsonl", "other.jsonl"]
    assert list(duplicates) == [str(UPath(tmp_path) / "interaction_logs" / f"date={DAY}" / "batch-1.jsonl")]
    assert read_landing_files({DAY: files}, 0.01).table.num_rows == 10


def test_too_many_broken_rows_fail_the_day_naming_rule_counts_and_the_first_line(tmp_path):
    zone = LandingZone(base_path=str(tmp_path))
    lines = [json.dumps(event(customer_id=n)) for n in range(20)] + [
        json.dumps(event(event_type="signup"))
    ] * 3
    zone.write_file(DAY, "events.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(LandingFileError) as error:
        read_landing_files({DAY: landed_files(zone, DAY)}, max_quarantine_fraction=0.05)
    message = str(error.value)
    assert "events.jsonl line 21: event_type 'signup' is not a declared event type" in message
    assert "3 of 23 rows of 2026-01-05 break the contract ({'event_type_known': 3})" in message
    assert "more than the 5% that may be quarantined" in message


def test_the_declared_event_types_are_the_ones_features_and_labels_count():
    assert set(EVENT_COUNTS.values()) == set(EVENT_TYPES)


# -- the asset: quarantine table, metadata, re-admission, an emptied day -----------------------------
@pytest.fixture
def landing(tmp_path):
    settings = load_settings({"CHURN_DATA_DIR": str(tmp_path / "data"), "CHURN_START_DATE": "2026-01-01"})
    [asset] = build_log_assets(build_partitions(settings), ContractSettings())
    zone = LandingZone(base_path=str(tmp_path / "landing"))
    resources = {
        "landing_zone": zone,
        "quarantine": QuarantineStore(base_path=str(tmp_path / "quarantine")),
        "io_manager": ParquetIOManager(base_path=str(tmp_path / "warehouse")),
    }
    with dg.instance_for_test() as instance:
        yield asset, zone, resources, instance


def materialize(landing):
    asset, _, resources, instance = landing
    return dg.materialize(
        [asset], resources=resources, partition_key=DAY, instance=instance, raise_on_error=False
    )


def test_quarantined_rows_are_kept_counted_shown_and_readmitted_after_a_fix(landing):
    asset, zone, resources, _ = landing
    day_with(zone, json.dumps(event(customer_id=12.7)))
    result = materialize(landing)
    assert result.success
    meta = result.asset_materializations_for_node("raw__interaction_logs")[0].metadata
    assert meta["quarantined_rows"].value == 1 and meta["quarantined_by_rule"].value == {
        "customer_id_integer": 1
    }
    assert meta["dagster/row_count"].value == GOOD_LINES and "line" in meta["quarantine_preview"].value
    path = resources["quarantine"].path_for(keys.INTERACTION_LOGS, DAY)
    assert pq.read_table(path.path).column("value").to_pylist() == ["12.7"]
    # The column schema the UI shows carries the contract: descriptions and rules per column.
    schema = asset.specs_by_key[keys.INTERACTION_LOGS].metadata["dagster/column_schema"]
    customer = next(c for c in schema.columns if c.name == "customer_id")
    assert customer.description and any("customer_id_integer" in o for o in customer.constraints.other)

    # The upstream fixes the line; re-materializing admits the row and clears the quarantine.
    day_with(zone, json.dumps(event(customer_id=13)))
    again = materialize(landing)
    assert again.success and not path.exists()
    meta = again.asset_materializations_for_node("raw__interaction_logs")[0].metadata
    assert meta["quarantined_rows"].value == 0 and meta["dagster/row_count"].value == GOOD_LINES + 1


def test_an_emptied_day_never_replaces_a_good_partition(landing):
    _, zone, resources, _ = landing
    day_with(zone, json.dumps(event()))
    assert materialize(landing).success
    written = resources["io_manager"].path_for(keys.INTERACTION_LOGS, DAY)
    before = written.read_bytes()
    zone.write_file(DAY, "events.jsonl", "")  # the files were emptied by mistake
    result = materialize(landing)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data
    assert "hold no events now, but the partition holds 201" in error.error.message
    assert written.read_bytes() == before  # the previous partition is intact
    # Not retried: retrying cannot fill the files.
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


# -- volume: a day out of line with the days before blocks what reads it -------------------------------
@pytest.mark.parametrize(
    ("rows", "previous", "problem"),
    [
        (0, [100, 100], "no rows"),
        (0, [], "no rows"),
        (501, [100, 90, 110], "more than 5x the median 100 of the 3 days before"),
        (19, [100, 90, 110], "less than 1/5 of the median 100"),
        (500, [100, 90, 110], None),
        (20, [100, 90, 110], None),
        (10_000, [], None),  # nothing to compare with yet
    ],
)
def test_volume_problem(rows, previous, problem):
    found = volume_problem(rows, previous, factor=5)
    assert (found is None) if problem is None else (problem in found)


def test_an_unusual_volume_stops_the_day_before_anything_downstream_reads_it(landing):
    asset, zone, resources, instance = landing
    daily = build_partitions(load_settings({"CHURN_START_DATE": "2026-01-01"})).daily
    reached = []

    @dg.asset(deps=[keys.INTERACTION_LOGS], partitions_def=daily)
    def reads_the_logs(context: dg.AssetExecutionContext) -> None:
        reached.append(context.partition_key)

    # Downstream under the platform's automation condition, evaluated before and after the days land.
    @dg.asset(
        deps=[keys.INTERACTION_LOGS],
        partitions_def=daily,
        automation_condition=on_upstream_change(dt.timedelta(days=10)),
    )
    def automated() -> None: ...

    automation = dg.Definitions(assets=[asset, automated], resources=resources)
    now = dt.datetime(2026, 1, 6, 1, tzinfo=dt.UTC)
    before = dg.evaluate_automation_conditions(defs=automation, instance=instance, evaluation_time=now)

    def land_and_run(day: str, count: int, config: dict | None = None) -> dg.ExecuteInProcessResult:
        lines = [json.dumps(event(customer_id=n, timestamp=f"{day}T10:00:00Z")) for n in range(count)]
        zone.write_file(day, "events.jsonl", "\n".join(lines) + "\n")
        return dg.materialize(
            [asset, reads_the_logs],
            resources=resources,
            partition_key=day,
            instance=instance,
            raise_on_error=False,
            run_config=config,
        )

    for day in ["2026-01-02", "2026-01-03", "2026-01-04"]:
        assert land_and_run(day, 40).success
    spike = land_and_run(DAY, 400)  # ten times the usual volume
    assert not spike.success
    [failure] = [e for e in spike.all_events if e.is_step_failure]
    assert (
        "2026-01-05: 400 rows, more than 5x the median 40 of the 3 days before"
        in failure.step_failure_data.error.message
    )
    assert not [e for e in spike.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert reached == ["2026-01-02", "2026-01-03", "2026-01-04"]  # the day went no further in the run
    assert not resources["io_manager"].path_for(keys.INTERACTION_LOGS, DAY).exists()

    after = dg.evaluate_automation_conditions(
        defs=automation, instance=instance, evaluation_time=now, cursor=before.cursor
    )
    requested = after.get_requested_partitions(automated.key)
    assert "2026-01-04" in requested and DAY not in requested  # nor through automation

    # Someone confirms the volume: the day goes through, and the check says it was accepted.
    accepted = land_and_run(
        DAY, 400, {"ops": {"raw__interaction_logs": {"config": {"accept_unusual_volume": True}}}}
    )
    assert accepted.success and reached[-1] == DAY
    [volume] = [c for c in accepted.get_asset_check_evaluations() if c.check_name == "row_volume"]
    assert not volume.passed and "accepted by run config" in volume.description


def test_table_rules_name_what_breaks_them():
    import pyarrow as pa

    from churn_platform.contracts.features import CUSTOMER_FEATURES
    from churn_platform.contracts.verify import verify

    columns = {c.name: [] for c in CUSTOMER_FEATURES.columns}
    good = {
        c.name: (0 if c.type == "int64" else 0.0 if c.type == "float64" else None)
        for c in CUSTOMER_FEATURES.columns
    }
    rows = [
        {**good, "customer_id": 1, "as_of_date": "2026-01-05", "plan": "pro", "is_active": True},
        {
            **good,
            "customer_id": 1,
            "as_of_date": "2026-01-05",
            "plan": None,
            "is_active": True,
        },  # duplicate key
        {**good, "customer_id": None, "as_of_date": "2026-01-05", "plan": None, "is_active": False},
        {
            **good,
            "customer_id": 3,
            "as_of_date": "2026-01-05",
            "spend_30d": -4.0,
            "plan": None,
            "is_active": True,
        },
    ]
    for row in rows:
        for name in columns:
            columns[name].append(row[name])
    result = verify(pa.table(columns), CUSTOMER_FEATURES)
    assert not result.passed
    assert "1 key(s) (customer_id, as_of_date) appear more than once" in result.problems
    assert "customer_id: 1 row(s) null" in result.problems
    assert "spend_30d: 1 row(s) below 0" in result.problems
    assert "plan: 3 of 4 rows null, above the 50% ceiling" in result.problems
