"""Freshness SLAs per partition: which partitions are late (a table of cases), what the definitions
carry (a FreshnessPolicy, the deadline, the `partitions_on_time` check, kept out of the jobs), and
the partition_freshness sensor end to end on a real instance: a missing partition past its deadline
reaches a real Slack-style receiver and the CRM simulator exactly once, across refused deliveries
and many ticks, and the check's result in the UI's GraphQL API turns from failed to passed when the
partition arrives."""

import datetime as dt
import json
import time

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster_graphql.test.utils import execute_dagster_graphql

from churn_platform.alerts.freshness import build_partition_freshness_sensor
from churn_platform.alerts.outbox import AlertOutbox
from churn_platform.alerts.resources import SlackWebhook
from churn_platform.alerts.sensors import outbox_for
from churn_platform.crm.resources import ZendeskCRMResource
from churn_platform.crm.simulator import ZendeskSimulator
from churn_platform.definitions import build_definitions
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.freshness import (
    DEADLINE_CHECK_KEYS,
    PARTITIONS_ON_TIME,
    Deadline,
    build_deadlines,
    deadlines_from_graph,
    held_by_upstream,
    late_partitions,
)
from churn_platform.settings import AlertSettings, SettingsError, load_settings
from churn_platform_tests.support.data import settings_for
from churn_platform_tests.support.sensors import sensor_ticker
from churn_platform_tests.support.servers import WebhookReceiver, free_port

UTC = dt.UTC
DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")
LABELLED = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=-30)
RAW = dg.AssetKey(["raw", "crm_tickets"])
CHILD = dg.AssetKey(["enriched", "ticket_sentiment"])


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def days(first: str, last: str) -> set[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return {(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)}


TWO_AM = Deadline(dt.timedelta(hours=2), DAILY, lookback_days=7)

# case -> (deadline, now, materialized, expected late partitions)
CASES = {
    "every partition due exists: on time": (TWO_AM, "2026-03-10T12:00", days("2026-03-01", "2026-03-09"), []),
    "yesterday missing past 02:00: late": (
        TWO_AM,
        "2026-03-10T02:01",
        days("2026-03-01", "2026-03-08"),
        ["2026-03-09"],
    ),
    "yesterday missing before 02:00: not due yet": (
        TWO_AM,
        "2026-03-10T01:59",
        days("2026-03-01", "2026-03-08"),
        [],
    ),
    "an old day backfilled today does not hide a missing recent day": (
        TWO_AM,
        "2026-03-10T12:00",
        days("2026-01-01", "2026-03-06") | {"2026-03-08", "2026-03-09"},
        ["2026-03-07"],
    ),
    "only the look-back: a gap whose deadline passed 8 days ago is a backfill matter": (
        TWO_AM,
        "2026-03-10T12:00",
        days("2026-03-03", "2026-03-09"),
        [],
    ),
    "a week of nothing: each day listed": (
        TWO_AM,
        "2026-03-10T12:00",
        set(),
        sorted(days("2026-03-03", "2026-03-09")),
    ),
    "never before the start date": (
        Deadline(
            dt.timedelta(hours=2), dg.DailyPartitionsDefinition(start_date="2026-03-08", timezone="UTC")
        ),
        "2026-03-10T12:00",
        set(),
        ["2026-03-08", "2026-03-09"],
    ),
    "a deadline past 24:00 falls on the next day": (
        Deadline(dt.timedelta(hours=30), DAILY),
        "2026-03-10T12:00",
        days("2026-03-01", "2026-03-07"),
        ["2026-03-08"],  # 2026-03-09 is due at 2026-03-11 06:00
    ),
    "labelled dates are due once their outcome window has elapsed": (
        Deadline(dt.timedelta(hours=6), LABELLED),
        "2026-03-10T12:00",
        days("2026-02-01", "2026-02-06"),
        ["2026-02-07"],  # closes 2026-03-10 00:00 (30 days after its day ends), due 06:00
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_late_partitions(case):
    deadline, now, materialized, expected = CASES[case]
    late = late_partitions({RAW: deadline}, {RAW: materialized}, at(now))
    assert [item.partition for item in late] == expected
    for item in late:
        assert item.deadline == deadline.due(item.partition) and item.late_by == at(now) - item.deadline
        assert item.alert_id == f"late:raw/crm_tickets:{item.partition}"


def test_late_by_is_measured_from_the_partitions_own_deadline():
    [late] = late_partitions({RAW: TWO_AM}, {RAW: days("2026-03-01", "2026-03-08")}, at("2026-03-10T05:30"))
    assert late.deadline == at("2026-03-10T02:00") and late.late_by == dt.timedelta(hours=3, minutes=30)


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, {"raw/crm_tickets": 120, "ml/churn_scores": 360}),
        ({"CHURN_FRESHNESS_DEADLINES": "raw/crm_tickets=02:45"}, {"raw/crm_tickets": 165}),
        ({"CHURN_FRESHNESS_DEADLINES": "raw/crm_tickets=off"}, {"raw/crm_tickets": None}),
        ({"CHURN_FRESHNESS_ENABLED": "0"}, {"raw/crm_tickets": None, "ml/churn_scores": None}),
    ],
)
def test_deadlines_come_from_the_settings_and_can_be_switched_off(environ, expected):
    settings = load_settings(environ)
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    deadlines = deadlines_from_graph(graph)
    # What the sensor and the exporter read back is what the settings asked for.
    assert deadlines == build_deadlines(settings.freshness, [defs.get_assets_def(k) for k in deadlines])
    for asset, minutes in expected.items():
        key = dg.AssetKey.from_user_string(asset)
        if minutes is None:
            assert key not in deadlines and graph.get(key).freshness_policy is None
            # A switched-off asset has nothing late, whatever is missing.
            assert all(item.asset != key for item in late_partitions(deadlines, {}, at("2026-03-10T12:00")))
        else:
            assert deadlines[key].after_close == dt.timedelta(minutes=minutes)
            policy = graph.get(key).freshness_policy
            assert policy.deadline_cron == f"{minutes % 60} {minutes // 60} * * *"
            assert policy.lower_bound_delta == dt.timedelta(minutes=minutes)
    if not settings.freshness.enabled:
        assert deadlines == {} and late_partitions(deadlines, {}, at("2026-03-10T12:00")) == []


@pytest.mark.parametrize(
    "value, message",
    [
        ("raw/crm_tickets=2am", "'2am' is not a deadline HH:MM"),
        ("raw/crm_tickets=48:00", "'48:00' is not a deadline HH:MM"),
        ("raw/crm_tickets", "is not `asset/key=HH:MM`"),
        ("ml/churn_model=06:00", "'ml/churn_model' has no partition deadline"),
    ],
)
def test_malformed_deadlines_are_refused_naming_the_variable(value, message):
    with pytest.raises(SettingsError, match=f"CHURN_FRESHNESS_DEADLINES: .*{message}"):
        load_settings({"CHURN_FRESHNESS_DEADLINES": value})


def test_the_checks_are_declared_on_every_deadline_asset_and_left_out_of_the_jobs():
    defs = build_definitions(load_settings({}))
    assert set(DEADLINE_CHECK_KEYS) <= set(defs.resolve_asset_graph().asset_check_keys)
    for job in (
        "daily_ingestion_job",
        "labels_job",
        "scoring_job",
        "online_features_job",
        "inference_log_job",
    ):
        nodes = {node.name for node in defs.resolve_job_def(job).nodes}
        assert "partition_deadlines" not in nodes, job
    # Executed by hand (the UI's Execute), the check evaluates now: nothing is materialized here.
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [defs.get_asset_checks_def(DEADLINE_CHECK_KEYS[0])],
            instance=instance,
            selection=dg.AssetSelection.checks(dg.AssetCheckKey(RAW, PARTITIONS_ON_TIME)),
        )
        [evaluation] = result.get_asset_check_evaluations()
        assert evaluation.asset_key == RAW and not evaluation.passed
        assert evaluation.metadata["late_count"].value == 7  # the last week, all missing


# case -> (late partitions (asset, partition), arrivals (asset, partition) -> hours before now, alerted)
UPSTREAM = {
    "the raw day is late: only it is alerted": ({(RAW, "2026-03-08"), (CHILD, "2026-03-08")}, {}, {RAW}),
    "the raw day arrived on time: the child is late on its own": (
        {(CHILD, "2026-03-08")},
        {(RAW, "2026-03-08"): 35},  # 2026-03-09 01:00, before its deadline
        {CHILD},
    ),
    "the raw day arrived late 20 minutes ago: the child still has its hour": (
        {(CHILD, "2026-03-08")},
        {(RAW, "2026-03-08"): 1 / 3},
        set(),
    ),
    "the raw day arrived late 2 hours ago: the child is late on its own": (
        {(CHILD, "2026-03-08")},
        {(RAW, "2026-03-08"): 2},
        {CHILD},
    ),
}


@pytest.mark.parametrize("case", UPSTREAM)
def test_one_missing_raw_day_is_one_alert_not_one_per_asset_downstream(case):
    missing, arrivals, alerted = UPSTREAM[case]
    now = at("2026-03-10T12:00")
    deadlines = {RAW: TWO_AM, CHILD: Deadline(dt.timedelta(hours=3), DAILY)}
    present = days("2026-03-01", "2026-03-09")
    materialized = {key: present - {p for k, p in missing if k == key} for key in deadlines}
    late = late_partitions(deadlines, materialized, now)
    assert {(item.asset, item.partition) for item in late} == missing

    def arrived_at(key, partition):
        hours = arrivals.get((key, partition))
        return None if hours is None else (now - dt.timedelta(hours=hours)).timestamp()

    held = held_by_upstream(late, deadlines, {CHILD: {RAW}, RAW: set()}, arrived_at, now)
    assert {item.asset for item in late if item.alert_id not in held} == alerted


# -- the sensor, end to end ------------------------------------------------------------------------------
UI = "http://dagster.example:3000"
MISSING_DAY_BACK = 3  # days before today: past every deadline, inside the look-back, whatever the hour


@pytest.fixture
def platform(tmp_path):
    """Real definitions whose partitions start 12 days ago (no labelled date exists yet), a real
    instance in which every daily asset with a deadline has every partition due in the look-back
    (or within the next 10 minutes, while the test runs) except raw/crm_tickets and
    enriched/ticket_sentiment of one day."""
    now = dt.datetime.now(UTC)
    settings = settings_for(
        str(tmp_path / "data"),
        CHURN_START_DATE=(now.date() - dt.timedelta(days=12)).isoformat(),
        CHURN_ALERT_CRM_TICKETS="1",
    )
    defs = build_definitions(settings)
    missing = (now.date() - dt.timedelta(days=MISSING_DAY_BACK)).isoformat()
    deadlines = deadlines_from_graph(defs.resolve_asset_graph())
    with dg.instance_for_test() as instance:
        for key, deadline in deadlines.items():
            for partition, _ in deadline.due_partitions(now + dt.timedelta(minutes=10)):
                if not (key in (RAW, CHILD) and partition == missing):
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(asset_key=key, partition=partition)
                    )
        yield settings, defs, instance, missing


def latest_check(instance, key):
    [record] = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, PARTITIONS_ON_TIME), limit=1
    )
    return record.event.dagster_event.asset_check_evaluation_data


CHECK_STATE = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  internalFreshnessPolicy { ... on CronFreshnessPolicy { deadlineCron lowerBoundDeltaSeconds timezone } }
  assetChecksOrError { ... on AssetChecks { checks { name
    executionForLatestMaterialization { status evaluation { success description } } } } } } } }"""


def ui_check_state(instance, key) -> tuple[dict, dict]:
    """The Checks tab's state of the asset's `partitions_on_time` check and its freshness policy, as
    the UI asks the webserver for them (GraphQL, over the module-level definitions)."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="churn_platform.definitions", attribute="defs"),
        location_name="churn_platform",
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as workspace:
        result = execute_dagster_graphql(
            workspace.create_request_context(), CHECK_STATE, {"key": {"path": list(key.path)}}
        )
    assert not result.errors, result.errors
    node = result.data["assetNodeOrError"]
    [check] = [c for c in node["assetChecksOrError"]["checks"] if c["name"] == PARTITIONS_ON_TIME]
    return check["executionForLatestMaterialization"], node["internalFreshnessPolicy"]


def test_a_late_partition_is_alerted_once_across_refusals_and_ticks(platform):
    settings, defs, instance, missing = platform
    alerts = AlertSettings(dagster_ui_url=UI, crm_tickets=True, retry_seconds=2, max_age_hours=1)
    sensor = build_partition_freshness_sensor(settings.freshness, alerts, running=False)
    slack_receiver = WebhookReceiver(status=503, body=b"service_unavailable")
    crm_port = free_port()  # nothing listens yet: connection refused
    crm = ZendeskCRMResource(
        base_url=f"http://127.0.0.1:{crm_port}", email="ops@example.com", api_token="s3cret", max_attempts=1
    )
    resources = {"slack": SlackWebhook(webhook_url=slack_receiver.url), "crm": crm}
    tick = sensor_ticker(sensor, instance, resources, defs)

    simulator = None
    try:
        with pytest.raises(RuntimeError, match="not delivered: Slack: Slack webhook answered 503.*; CRM"):
            tick()
        late_id = f"late:raw/crm_tickets:{missing}"
        assert [(a, d) for a, d, _, _ in outbox_for(instance, alerts).pending()] == [
            (late_id, "slack"),
            (late_id, "crm"),
        ]  # ticket_sentiment's day waits on raw/crm_tickets: its alert names the cause
        failed_at = time.monotonic()
        refused = len(slack_receiver.bodies)
        assert refused == 1

        # Within the backoff (2 s): nothing is sent again, nothing is enqueued twice.
        assert "1 alerted, 1 waiting on upstream; delivered 0" in tick()
        assert len(slack_receiver.bodies) == refused

        # The UI: the check failed, listing the day; the cron policy says when the asset is due.
        evaluation = latest_check(instance, RAW)
        assert not evaluation.passed and missing in evaluation.description
        assert [p["partition"] for p in evaluation.metadata["late_partitions"].value] == [missing]
        assert not latest_check(instance, CHILD).passed and latest_check(instance, keys.CHURN_SCORES).passed
        execution, policy = ui_check_state(instance, RAW)
        assert execution["status"] == "FAILED" and missing in execution["evaluation"]["description"]
        assert policy == {"deadlineCron": "0 2 * * *", "lowerBoundDeltaSeconds": 7200, "timezone": "UTC"}

        # Both destinations come back.
        slack_receiver.status = 200
        simulator = ZendeskSimulator([], email="ops@example.com", api_token="s3cret", port=crm_port).start()
        time.sleep(max(0.0, failed_at + 2.1 - time.monotonic()))  # past the first backoff
        assert "delivered 2" in tick()
        accepted = slack_receiver.bodies[refused:]
        assert (
            len(accepted) == 1 and missing in accepted[0]["text"] and "raw/crm_tickets" in accepted[0]["text"]
        )
        assert len(simulator.created) == 1
        ticket = simulator.created[0]
        assert missing in ticket["subject"] and "partition_late" in ticket["tags"]
        assert "raw/crm_tickets" in ticket["description"] and "Deadline:" in ticket["description"]

        for _ in range(3):  # later ticks: still late, never alerted again
            assert "delivered 0" in tick()
        assert len(slack_receiver.bodies) == refused + 1 and len(simulator.created) == 1

        # The day arrives (late): the check passes; nothing more is sent (ticket_sentiment's day
        # now has its own hour after the late raw day before it counts as late by itself).
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=RAW, partition=missing))
        assert "1 late partition(s)" in tick()
        evaluation = latest_check(instance, RAW)
        assert evaluation.passed and evaluation.metadata["late_count"].value == 0
        execution, _ = ui_check_state(instance, RAW)
        assert execution["status"] == "SUCCEEDED"
        assert len(slack_receiver.bodies) == refused + 1 and len(simulator.created) == 1
        assert outbox_for(instance, alerts).pending() == []
    finally:
        slack_receiver.stop()
        if simulator is not None:
            simulator.stop()


def test_an_undelivered_late_alert_is_withdrawn_when_the_partition_arrives(platform, tmp_path):
    settings, defs, instance, missing = platform
    alerts = AlertSettings(dagster_ui_url=UI, crm_tickets=False, retry_seconds=60)
    sensor = build_partition_freshness_sensor(settings.freshness, alerts, running=False)
    refusing = WebhookReceiver(status=503, body=b"service_unavailable")
    resources = {
        "slack": SlackWebhook(webhook_url=refusing.url),
        "crm": ZendeskCRMResource(base_url="http://127.0.0.1:9", email="x@example.com", api_token="t"),
    }
    try:
        with dg.build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
            with pytest.raises(RuntimeError, match="503"):
                sensor(context)
            cursor = context.cursor
        assert len(outbox_for(instance, alerts).pending()) == 1
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=RAW, partition=missing))
        with dg.build_sensor_context(
            instance=instance, resources=resources, definitions=defs, cursor=cursor
        ) as context:
            sensor(context)
        assert outbox_for(instance, alerts).pending() == [] and len(refusing.bodies) == 1
        recorded = json.loads(context.cursor)["recorded"]
        assert recorded["raw/crm_tickets"][0] == []  # what the check says now: nothing late
    finally:
        refusing.stop()


def test_a_withdrawn_alert_is_never_sent(tmp_path):
    outbox = AlertOutbox(tmp_path / "outbox.db", retry_seconds=1)
    outbox.enqueue("late:raw/crm_tickets:2026-03-08", {"slack": ["text", []]}, now=1000.0)
    outbox.enqueue("other", {"slack": ["text", []]}, now=1000.0)
    assert outbox.withdraw("late:raw/crm_tickets:2026-03-08", "arrived", now=1001.0) == 1
    sent = []
    report = outbox.deliver_due({"slack": sent.append}, now=1002.0)
    assert report.delivered == [("other", "slack")] and len(sent) == 1
    assert outbox.withdraw("other", "too late", now=1003.0) == 0  # delivered stays delivered
