"""The alert outbox, by refusing deliveries: while Slack answers 503 and the CRM is unreachable,
the alert stays in the outbox and is retried with backoff; once both accept, each gets exactly one
message, and no later tick or re-evaluation sends another.

Every behaviour is checked on both places the outbox lives: a SQLite file beside a SQLite instance,
and a table in the production instance's PostgreSQL database (deploy/dagster.yaml on the loopback
server, a throwaway database per test). On PostgreSQL also: senders in several threads with their
own connections (as in several pods) deliver each message once, and a pending alert outlives the
DAGSTER_HOME of the process that stored it."""

import contextlib
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from churn_platform.alerts.outbox import DATABASE_TABLE, OUTBOX_FILE, AlertOutbox, DeliveryReport
from churn_platform.alerts.resources import SlackWebhook
from churn_platform.alerts.sensors import build_alert_outbox_sensor, instance_database, outbox_for
from churn_platform.crm.resources import ZendeskCRMResource
from churn_platform.crm.simulator import ZendeskSimulator
from churn_platform.definitions import build_definitions
from churn_platform.orchestration import asset_keys as keys
from churn_platform.resources import build_resources
from churn_platform.settings import AlertSettings
from churn_platform_tests.alerts.test_failure_alerts import DAY, evaluate
from churn_platform_tests.support.data import settings_for
from churn_platform_tests.support.deployment import (
    PostgresDatabase,
    postgres_database,
    production_instance_home,
)
from churn_platform_tests.support.servers import WebhookReceiver, free_port

SETTINGS = AlertSettings(dagster_ui_url="http://ui", crm_tickets=True, retry_seconds=2, max_age_hours=1)
BACKENDS = ["sqlite", "postgres"]
NOTHING = DeliveryReport([], [], [])


@dataclass(frozen=True)
class Backend:
    """Where a test's outboxes live: ``open`` gives a new outbox there (its own connections, as a
    second sensor process or pod would have)."""

    tmp_path: Path
    database: PostgresDatabase | None

    def open(self, **kwargs: Any) -> AlertOutbox:
        if self.database is None:
            return AlertOutbox(self.tmp_path / "outbox.db", **kwargs)
        return AlertOutbox(sa.create_engine(self.database.url, poolclass=NullPool), **kwargs)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend(tmp_path, None)
        return
    with postgres_database("churn_outbox") as database:
        yield Backend(tmp_path, database)


def query(database: PostgresDatabase, sql: str, *params: object) -> list[tuple]:
    """Read the database itself, not through the outbox."""
    with contextlib.closing(psycopg2.connect(database.url.replace("+psycopg2", ""))) as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()


@contextlib.contextmanager
def production_instance(home: Path, database: PostgresDatabase) -> Iterator[dg.DagsterInstance]:
    """The production instance (deploy/dagster.yaml, local run launcher) with DAGSTER_HOME=home, on
    ``database``, opened as the deployment's processes open it: from the environment."""
    production_instance_home(home)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"DAGSTER_HOME": str(home), **database.dagster_env}.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            yield instance


def fail_a_run(instance: dg.DagsterInstance, data_dir: Path) -> dg.ExecuteInProcessResult:
    """A run of raw/interaction_logs that fails: no files landed for the day."""
    settings = settings_for(str(data_dir))
    result = dg.materialize(
        [build_definitions(settings).get_assets_def(keys.INTERACTION_LOGS)],
        instance=instance,
        partition_key=DAY,
        resources=build_resources(settings),
        raise_on_error=False,
    )
    assert not result.success
    return result


@pytest.fixture(params=BACKENDS)
def failed_run_on(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dg.DagsterInstance, dg.ExecuteInProcessResult, PostgresDatabase | None]]:
    """A failed run on a SQLite test instance, or on the production instance in PostgreSQL."""
    if request.param == "sqlite":
        with dg.instance_for_test() as instance:
            yield instance, fail_a_run(instance, tmp_path / "data"), None
        return
    with (
        postgres_database("churn_outbox") as database,
        production_instance(tmp_path / "dagster_home", database) as instance,
    ):
        yield instance, fail_a_run(instance, tmp_path / "data"), database


def accepted(receiver: WebhookReceiver, since: int) -> list[dict]:
    return receiver.bodies[since:]


def test_refused_deliveries_are_retried_until_accepted_then_never_repeated(failed_run_on):
    instance, result, database = failed_run_on
    slack_receiver = WebhookReceiver(status=503, body=b"service_unavailable")
    crm_port = free_port()  # nothing listens here yet: connection refused
    # One attempt per delivery: the outbox's backoff, not the client's, is under test.
    crm = ZendeskCRMResource(
        base_url=f"http://127.0.0.1:{crm_port}", email="ops@example.com", api_token="s3cret", max_attempts=1
    )
    resources = {"slack": SlackWebhook(webhook_url=slack_receiver.url), "crm": crm}
    retry_sensor = build_alert_outbox_sensor(SETTINGS, running=False)

    def evaluate_failure():
        evaluate(instance, result, resources, settings=SETTINGS)

    def retry_tick():
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            return retry_sensor(context)

    simulator = None
    try:
        with pytest.raises(RuntimeError, match="not delivered: Slack: Slack webhook answered 503.*; CRM"):
            evaluate_failure()
        outbox = outbox_for(instance, SETTINGS)
        assert [(d, n) for _, d, n, _ in outbox.pending()] == [("slack", 1), ("crm", 1)]
        refused = len(slack_receiver.bodies)
        assert refused >= 1

        # Within the backoff nothing is sent again.
        assert "delivered 0; pending 2" in retry_tick().skip_message
        assert len(slack_receiver.bodies) == refused

        time.sleep(2.1)  # past the first backoff (2 s): tried again, refused again
        with pytest.raises(RuntimeError, match="2 alert deliveries not delivered"):
            retry_tick()
        assert [n for _, _, n, _ in outbox.pending()] == [2, 2]

        # Both destinations come back.
        slack_receiver.status = 200
        simulator = ZendeskSimulator([], email="ops@example.com", api_token="s3cret", port=crm_port).start()
        time.sleep(4.1)  # past the second backoff (4 s)
        since = len(slack_receiver.bodies)
        assert "delivered 2; pending 0" in retry_tick().skip_message
        assert (
            len(accepted(slack_receiver, since)) == 1 and result.run_id in slack_receiver.bodies[-1]["text"]
        )
        assert len(simulator.created) == 1 and result.run_id in simulator.created[0]["description"]

        # Never again: later ticks, and the failure evaluated again (a replayed event).
        time.sleep(2.1)
        assert "delivered 0; pending 0" in retry_tick().skip_message
        evaluate_failure()
        assert len(accepted(slack_receiver, since)) == 1 and len(simulator.created) == 1
    finally:
        slack_receiver.stop()
        if simulator is not None:
            simulator.stop()


def test_an_alert_too_old_to_matter_is_given_up_not_sent(backend):
    outbox = backend.open(retry_seconds=1, max_age_seconds=60)
    outbox.enqueue("run-1", {"slack": ["text", []]}, now=1000.0)
    sent = []
    report = outbox.deliver_due({"slack": sent.append}, now=1000.0 + 61)
    assert sent == [] and report.abandoned == [("run-1", "slack", "too old to send")]
    assert outbox.pending() == []


def test_two_senders_at_once_never_send_one_delivery_twice(backend):
    outbox = backend.open()
    outbox.enqueue("run-1", {"slack": ["text", []]}, now=1000.0)
    sent = []

    def slow_send(payload):
        # A second sender ticking while the first is still sending finds nothing to claim.
        second = backend.open().deliver_due({"slack": sent.append}, now=1001.0)
        assert second.delivered == [] and second.failed == []
        sent.append(payload)

    report = outbox.deliver_due({"slack": slow_send}, now=1000.0)
    assert report.delivered == [("run-1", "slack")] and len(sent) == 1


def test_each_alert_is_stored_once_backs_off_and_is_withdrawn_or_given_up(backend):
    outbox = backend.open(retry_seconds=10)
    assert outbox.enqueue("run-1", {"slack": ["a", []], "crm": ["s", "b", []]}, now=1000.0) == 2
    assert outbox.enqueue("run-1", {"slack": ["changed", []], "crm": ["x", "y", []]}, now=1005.0) == 0
    assert outbox.enqueue("late:x:2026-03-08", {"slack": ["late", []]}, now=1001.0) == 1
    assert outbox.enqueue("empty", {}, now=1001.0) == 0

    def refuse(payload: Any) -> None:
        raise ConnectionError("refused\x00 by the far end")

    sent: list[Any] = []
    report = backend.open(retry_seconds=10).deliver_due({"slack": refuse, "crm": sent.append}, now=1002.0)
    # Oldest first; an alert's destinations in the order they were enqueued; the first payload kept.
    assert report.failed == [
        ("run-1", "slack", "refused\x00 by the far end"),
        ("late:x:2026-03-08", "slack", "refused\x00 by the far end"),
    ]
    assert report.delivered == [("run-1", "crm")] and sent == [["s", "b", []]]
    assert outbox.pending() == [
        ("run-1", "slack", 1, "refused by the far end"),
        ("late:x:2026-03-08", "slack", 1, "refused by the far end"),
    ]
    # Backoff: 10 s after the first failure, 20 s after the second.
    assert outbox.deliver_due({"slack": refuse}, now=1002.0 + 9.9) == NOTHING
    assert len(outbox.deliver_due({"slack": refuse}, now=1012.0).failed) == 2
    assert outbox.deliver_due({"slack": refuse}, now=1012.0 + 19.9) == NOTHING
    # A late partition that arrived is withdrawn; a delivered destination stays delivered.
    assert outbox.withdraw("late:x:2026-03-08", "the partition arrived", now=1020.0) == 1
    assert outbox.withdraw("late:x:2026-03-08", "again", now=1021.0) == 0
    report = outbox.deliver_due({"slack": sent.append}, now=1032.0)
    assert report.delivered == [("run-1", "slack")] and sent[-1] == ["a", []]
    assert outbox.withdraw("run-1", "too late", now=1033.0) == 0
    assert outbox.pending() == [] and outbox.deliver_due({"slack": sent.append}, now=9e9) == NOTHING
    # A destination switched off since is given up, not sent.
    outbox.enqueue("run-2", {"crm": ["s", "b", []]}, now=1040.0)
    report = outbox.deliver_due({"slack": sent.append}, now=1041.0)
    assert report.abandoned == [("run-2", "crm", "destination no longer configured")]
    assert len(sent) == 2


def test_senders_in_parallel_deliver_each_message_exactly_once(backend):
    """Four senders, each with its own connections (four sensor processes or pods), claim from one
    table at the same moment: every delivery is sent once, by one of them."""
    expected = {(f"run-{n}", destination) for n in range(30) for destination in ("slack", "crm")}
    outbox = backend.open()
    for n in range(30):
        outbox.enqueue(f"run-{n}", {"slack": [f"run-{n}"], "crm": [f"run-{n}"]}, now=1000.0)
    sent: list[tuple[str, str, int]] = []
    reports: dict[int, Any] = {}
    errors: list[BaseException] = []
    lock, start = threading.Lock(), threading.Barrier(4)

    def sender(me: int) -> None:
        try:
            mine = backend.open()

            def to(destination: str) -> Callable[[list], None]:
                def send(payload: list) -> None:
                    time.sleep(0.002)  # a destination takes a moment: the others claim meanwhile
                    with lock:
                        sent.append((payload[0], destination, me))

                return send

            start.wait(timeout=30)
            reports[me] = mine.deliver_due({"slack": to("slack"), "crm": to("crm")}, now=1001.0)
        except BaseException as exc:  # seen by the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(me,)) for me in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert Counter((alert, destination) for alert, destination, _ in sent) == Counter(expected)
    reported = [delivery for report in reports.values() for delivery in report.delivered]
    assert sorted(reported) == sorted(expected)
    assert len({me for _, _, me in sent}) >= 2  # they really did claim side by side
    assert outbox.pending() == []


def test_sensors_starting_at_once_create_the_table_once(backend):
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_outbox() -> None:
        try:
            start.wait(timeout=30)
            backend.open()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_outbox) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    outbox = backend.open()
    assert outbox.enqueue("run-1", {"slack": ["text"]}, now=1.0) == 1 and len(outbox.pending()) == 1


def test_an_outbox_file_from_before_the_database_version_keeps_its_deliveries(tmp_path):
    """The SQLite file as the first version wrote it (local instances have one): its delivered
    alert stays delivered and its pending one is delivered."""
    path = tmp_path / OUTBOX_FILE
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.execute(
            "CREATE TABLE deliveries (alert_id TEXT NOT NULL, destination TEXT NOT NULL, payload TEXT NOT "
            "NULL, created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, "
            "delivered_at REAL, abandoned_at REAL, last_error TEXT, claim TEXT, PRIMARY KEY (alert_id, "
            "destination))"
        )
        con.execute(
            "INSERT INTO deliveries VALUES ('old', 'slack', '[\"old\"]', 900, 1, 900, 950, NULL, NULL, 'c')"
        )
        con.execute(
            "INSERT INTO deliveries VALUES ('new', 'slack', '[\"new\"]', 990, 1, 995, NULL, NULL, 'x', NULL)"
        )
    outbox = AlertOutbox(path)
    assert outbox.pending() == [("new", "slack", 1, "x")]
    assert outbox.enqueue("old", {"slack": ["again"]}, now=1000.0) == 0
    sent: list[Any] = []
    assert outbox.deliver_due({"slack": sent.append}, now=1000.0).delivered == [("new", "slack")]
    assert sent == [["new"]] and outbox.pending() == []


def test_a_sqlite_instance_keeps_the_outbox_in_a_file_beside_it():
    with dg.instance_for_test() as instance:
        assert instance_database(instance) is None
        outbox_for(instance, SETTINGS).enqueue("run-1", {"slack": ["text"]})
        assert (Path(instance.root_directory) / OUTBOX_FILE).exists()


def test_a_failed_run_alert_on_the_production_instance_is_a_row_in_its_postgres_database(tmp_path):
    """End to end on deploy/dagster.yaml's instance: the alert's deliveries are rows of
    churn_alert_outbox in the instance's database, and nothing is written to DAGSTER_HOME."""
    receiver = WebhookReceiver()
    simulator = ZendeskSimulator([], email="ops@example.com", api_token="s3cret").start()
    home = tmp_path / "dagster_home"
    try:
        with postgres_database("churn_outbox") as database, production_instance(home, database) as instance:
            assert instance_database(instance) is not None
            result = fail_a_run(instance, tmp_path / "data")
            crm = ZendeskCRMResource(base_url=simulator.url, email="ops@example.com", api_token="s3cret")
            evaluate(
                instance,
                result,
                {"slack": SlackWebhook(webhook_url=receiver.url), "crm": crm},
                settings=SETTINGS,
            )
            rows = query(
                database,
                f"SELECT alert_id, destination, attempts, delivered_at IS NOT NULL, abandoned_at, payload "
                f"FROM {DATABASE_TABLE} ORDER BY ordinal",
            )
            assert [row[:5] for row in rows] == [
                (result.run_id, "slack", 1, True, None),
                (result.run_id, "crm", 1, True, None),
            ]
            assert result.run_id in rows[0][5] and DAY in rows[1][5]
            assert len(receiver.bodies) == 1 and len(simulator.created) == 1
        assert not list(home.rglob("*.db"))  # no SQLite file beside the instance
    finally:
        receiver.stop()
        simulator.stop()


def test_a_pending_alert_outlives_the_dagster_home_that_stored_it(tmp_path):
    """A code-server pod stores an alert that Slack refuses, then goes away with its DAGSTER_HOME;
    the next pod (a new, empty DAGSTER_HOME on the same database) delivers it, once."""
    settings = AlertSettings(dagster_ui_url="http://ui", crm_tickets=False, retry_seconds=1, max_age_hours=1)
    receiver = WebhookReceiver(status=503, body=b"service_unavailable")
    resources = {
        "slack": SlackWebhook(webhook_url=receiver.url),
        "crm": ZendeskCRMResource(base_url="http://127.0.0.1:9", email="ops@example.com", api_token="t"),
    }
    retry_sensor = build_alert_outbox_sensor(settings, running=False)
    try:
        with postgres_database("churn_outbox") as database:
            first_pod = tmp_path / "pod-1"
            with production_instance(first_pod, database) as instance:
                result = fail_a_run(instance, tmp_path / "data")
                with pytest.raises(RuntimeError, match="not delivered: Slack: Slack webhook answered 503"):
                    evaluate(instance, result, resources, settings=settings)
            refused_at = time.monotonic()
            shutil.rmtree(first_pod)
            assert query(
                database, f"SELECT alert_id, destination, attempts, delivered_at FROM {DATABASE_TABLE}"
            ) == [(result.run_id, "slack", 1, None)]

            receiver.status = 200
            with production_instance(tmp_path / "pod-2", database) as instance:
                outbox = outbox_for(instance, settings)
                assert [(a, d, n) for a, d, n, _ in outbox.pending()] == [(result.run_id, "slack", 1)]
                time.sleep(max(0.0, refused_at + 1.1 - time.monotonic()))  # past the backoff (1 s)
                for expected in (
                    "delivered 1; pending 0",
                    "delivered 0; pending 0",
                    "delivered 0; pending 0",
                ):
                    with dg.build_sensor_context(instance=instance, resources=resources) as context:
                        assert expected in retry_sensor(context).skip_message
                assert not (tmp_path / "pod-2" / OUTBOX_FILE).exists()
            assert len(receiver.bodies) == 2 and result.run_id in receiver.bodies[1]["text"]
            assert query(database, f"SELECT attempts, delivered_at IS NOT NULL FROM {DATABASE_TABLE}") == [
                (2, True)
            ]
    finally:
        receiver.stop()


def test_an_unreachable_database_is_reported_without_its_password():
    password = "pw-9f3c1e7a"
    engine = sa.create_engine(f"postgresql+psycopg2://churn:{password}@127.0.0.1:{free_port()}/dagster")
    with pytest.raises(sa.exc.OperationalError) as raised:
        AlertOutbox(engine)
    assert "Connection refused" in str(raised.value) and "127.0.0.1" in str(raised.value)
    assert password not in str(raised.value) and password not in repr(raised.value)
