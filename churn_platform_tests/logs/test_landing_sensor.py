"""The landing sensor: one run per changed day, exactly once per state of the day's files, on a
local folder and on moto's S3 server over HTTP."""

import dataclasses
import datetime as dt
import json
import os
import time

import dagster as dg
import pytest

from churn_platform.definitions import build_definitions
from churn_platform.logs import sensors
from churn_platform.logs.landing_zone import LandingZone, fingerprint
from churn_platform.logs.sensors import days_to_watch, detect_changes
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import build_partitions
from churn_platform.resources import build_resources
from churn_platform_tests.support.data import gcs_settings, s3_settings, settings_for

TODAY = dt.datetime.now(dt.UTC)
YESTERDAY = (TODAY - dt.timedelta(days=1)).date().isoformat()
THREE_DAYS_AGO = (TODAY - dt.timedelta(days=3)).date().isoformat()


def event_line(day: str, customer: int = 1) -> str:
    return (
        json.dumps(
            {
                "customer_id": customer,
                "event_type": "login",
                "timestamp": f"{day}T10:00:00Z",
                "properties": {},
            }
        )
        + "\n"
    )


@pytest.fixture(params=["local", "s3", "gcs"])
def platform(request, tmp_path, monkeypatch):
    if request.param == "local":
        settings = settings_for(str(tmp_path / "data"))
    elif request.param == "gcs":
        settings = gcs_settings(request.getfixturevalue("gcs_server"), str(tmp_path / "mlflow"))
    else:
        settings = s3_settings(request.getfixturevalue("s3_server"), monkeypatch, str(tmp_path / "mlflow"))
    return settings, build_resources(settings)["landing_zone"]


def evaluate(sensor, instance, zone, cursor=None):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"landing_zone": zone}
    ) as context:
        return sensor(context)


def test_days_to_watch_are_the_closed_days_of_the_lookback():
    daily = build_partitions(settings_for("unused")).daily
    days = days_to_watch(daily, dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC), lookback_days=3)
    assert days == ["2026-03-07", "2026-03-08", "2026-03-09"]  # 03-10 has not closed yet


def test_changes_are_per_day_and_each_state_counts_once(platform):
    _, zone = platform
    for n in range(3):  # several files for one day: one change for the day
        zone.write_file(YESTERDAY, f"part-{n}.jsonl", event_line(YESTERDAY, n))
    zone.write_file(THREE_DAYS_AGO, "part-0.jsonl", event_line(THREE_DAYS_AGO))
    zone.write_file(YESTERDAY, "notes.txt", "ignored: not a log file")
    days = [THREE_DAYS_AGO, YESTERDAY]

    first = detect_changes(zone, days, {})
    assert set(first.changed) == {THREE_DAYS_AGO, YESTERDAY}
    listed = zone.list_day(YESTERDAY)
    assert len(listed) == 3 and all(abs(f.modified - time.time()) < 300 for f in listed)

    assert detect_changes(zone, days, first.cursor).changed == {}  # nothing new: nothing requested

    # A late file for an older day changes only that day.
    zone.write_file(THREE_DAYS_AGO, "late.jsonl", event_line(THREE_DAYS_AGO, 9))
    second = detect_changes(zone, days, first.cursor)
    assert list(second.changed) == [THREE_DAYS_AGO]

    # A day still receiving files (its newest file younger than the quiet period) waits.
    zone.write_file(YESTERDAY, "part-3.jsonl", event_line(YESTERDAY, 3))
    arriving = detect_changes(zone, days, second.cursor, quiet_seconds=3600)
    assert arriving.changed == {} and arriving.cursor == second.cursor
    assert list(arriving.settling) == [YESTERDAY] and 3500 < arriving.settling[YESTERDAY] <= 3600
    second = detect_changes(zone, days, second.cursor, now=time.time() + 3600, quiet_seconds=3600)
    assert list(second.changed) == [YESTERDAY]

    # A file re-written under the same name (dagster issue #22892), at once, with new content.
    zone.write_file(YESTERDAY, "part-1.jsonl", event_line(YESTERDAY, 42))
    third = detect_changes(zone, days, second.cursor)
    assert list(third.changed) == [YESTERDAY]
    assert third.changed[YESTERDAY] != second.cursor[YESTERDAY]


def test_sensor_requests_one_run_per_day_and_survives_a_lost_cursor(platform):
    settings, zone = platform
    defs = build_definitions(
        dataclasses.replace(
            settings, automation=dataclasses.replace(settings.automation, landing_quiet_seconds=0)
        )
    )
    sensor = defs.resolve_sensor_def("interaction_logs_landing_sensor")
    for n in range(4):
        zone.write_file(YESTERDAY, f"part-{n}.jsonl", event_line(YESTERDAY, n))
    with dg.instance_for_test() as instance:
        result = evaluate(sensor, instance, zone)
        assert [r.partition_key for r in result.run_requests] == [YESTERDAY]
        request = result.run_requests[0]
        assert request.asset_selection == [keys.INTERACTION_LOGS]
        assert request.run_key == f"{YESTERDAY}:{fingerprint(zone.list_day(YESTERDAY))[:16]}"

        again = evaluate(sensor, instance, zone, result.cursor)
        assert again.run_requests == [] and again.skip_reason is not None

        # The run the sensor asked for records the day's fingerprint ...
        materialized = dg.materialize(
            [defs.get_assets_def(keys.INTERACTION_LOGS)],
            instance=instance,
            partition_key=YESTERDAY,
            resources=build_resources(settings),
        )
        assert materialized.success
        # ... so a sensor that lost its cursor does not run the day again,
        fresh = evaluate(sensor, instance, zone)
        assert fresh.run_requests == []
        # but does once a file changes.
        zone.write_file(YESTERDAY, "part-0.jsonl", event_line(YESTERDAY, 77))
        changed = evaluate(sensor, instance, zone, fresh.cursor)
        assert [r.partition_key for r in changed.run_requests] == [YESTERDAY]


def test_s3_listing_pages_through_a_day_with_more_than_a_thousand_files(s3_server, tmp_path, monkeypatch):
    settings = s3_settings(s3_server, monkeypatch, str(tmp_path / "mlflow"))
    zone: LandingZone = build_resources(settings)["landing_zone"]
    bucket, prefix = settings.storage.landing_dir.removeprefix("s3://").split("/", 1)
    client = s3_server.client()
    for n in range(1205):  # ListObjectsV2 returns at most 1,000 keys a page
        client.put_object(
            Bucket=bucket, Key=f"{prefix}/interaction_logs/date={YESTERDAY}/f{n:05d}.jsonl", Body=b"{}\n"
        )
    files = zone.list_day(YESTERDAY)
    assert len(files) == 1205 and len({f.version for f in files}) == 1  # same bytes, same ETag


def test_a_tick_that_catches_files_still_arriving_waits_out_the_quiet_period(platform, monkeypatch):
    settings, zone = platform
    quiet = 3
    defs = build_definitions(
        dataclasses.replace(
            settings, automation=dataclasses.replace(settings.automation, landing_quiet_seconds=quiet)
        )
    )
    sensor = defs.resolve_sensor_def("interaction_logs_landing_sensor")
    # Watch what the tick sees each time it looks at the landing zone (a spy: the real function
    # runs). The file lands just as the tick first looks, so that look always finds it brand new.
    looks = []

    def watched_detect_changes(*args, **kwargs):
        if not looks:
            zone.write_file(YESTERDAY, "part-0.jsonl", event_line(YESTERDAY, 0))
        changes = real_detect_changes(*args, **kwargs)
        looks.append((time.monotonic(), changes))
        return changes

    real_detect_changes = sensors.detect_changes
    monkeypatch.setattr(sensors, "detect_changes", watched_detect_changes)
    with dg.instance_for_test() as instance:
        result = evaluate(sensor, instance, zone)
    # Requested in this very tick, after waiting for the quiet period (not a whole interval later):
    assert [r.partition_key for r in result.run_requests] == [YESTERDAY]
    # the first look found the day still settling, with at most the quiet period left to wait,
    (first_at, first), (second_at, second) = looks
    assert first.changed == {} and list(first.settling) == [YESTERDAY]
    assert 0 < first.settling[YESTERDAY] <= quiet
    # the tick waited that long (a lower bound only: a loaded machine may take longer), and the
    # second look found the day's files settled, and changed.
    assert second_at - first_at >= first.settling[YESTERDAY]
    assert second.settling == {} and list(second.changed) == [YESTERDAY]


def local_sensor(tmp_path, quiet: int):
    settings = settings_for(str(tmp_path / "data"), CHURN_LANDING_QUIET_SECONDS=str(quiet))
    defs = build_definitions(settings)
    return defs.resolve_sensor_def("interaction_logs_landing_sensor"), build_resources(settings)[
        "landing_zone"
    ]


def test_a_file_dated_tomorrow_neither_holds_its_day_back_nor_the_tick(tmp_path):
    quiet = 3
    sensor, zone = local_sensor(tmp_path, quiet)
    uri = zone.write_file(YESTERDAY, "part-0.jsonl", event_line(YESTERDAY))
    tomorrow = time.time() + 86_400
    os.utime(uri, (tomorrow, tomorrow))  # a skewed clock or a touched file
    with dg.instance_for_test() as instance:
        started = time.monotonic()
        result = evaluate(sensor, instance, zone)
        took = time.monotonic() - started
    assert [r.partition_key for r in result.run_requests] == [YESTERDAY]
    assert took < quiet  # not a day, and not even the quiet period: the file is not waited for
    assert detect_changes(zone, [YESTERDAY], {}, quiet_seconds=quiet).future == {YESTERDAY: ["part-0.jsonl"]}


def test_an_unreadable_cursor_is_reset_and_the_tick_still_works(tmp_path):
    sensor, zone = local_sensor(tmp_path, quiet=0)
    zone.write_file(YESTERDAY, "part-0.jsonl", event_line(YESTERDAY))
    with dg.instance_for_test() as instance:
        for broken in ("not json {", "[1, 2]"):
            result = evaluate(sensor, instance, zone, cursor=broken)
            assert [r.partition_key for r in result.run_requests] == [YESTERDAY], broken
            assert YESTERDAY in json.loads(result.cursor)  # a valid cursor is written back
