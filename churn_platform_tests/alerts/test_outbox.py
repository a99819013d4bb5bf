"""The alert outbox, by refusing deliveries: while Slack answers 503 and the CRM is unreachable,
the alert stays in the outbox and is retried with backoff; once both accept, each gets exactly one
message, and no later tick or re-evaluation sends another."""

import time

import dagster as dg
import pytest

from churn_platform.alerts.outbox import AlertOutbox
from churn_platform.alerts.resources import SlackWebhook
from churn_platform.alerts.sensors import build_alert_outbox_sensor, outbox_for
from churn_platform.crm.resources import ZendeskCRMResource
from churn_platform.crm.simulator import ZendeskSimulator
from churn_platform.settings import AlertSettings
from churn_platform_tests.alerts.test_failure_alerts import evaluate, failed_run  # noqa: F401 (a fixture)
from churn_platform_tests.support.servers import WebhookReceiver, free_port

SETTINGS = AlertSettings(dagster_ui_url="http://ui", crm_tickets=True, retry_seconds=2, max_age_hours=1)


def accepted(receiver: WebhookReceiver, since: int) -> list[dict]:
    return receiver.bodies[since:]


def test_refused_deliveries_are_retried_until_accepted_then_never_repeated(failed_run):  # noqa: F811
    instance, result = failed_run
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


def test_an_alert_too_old_to_matter_is_given_up_not_sent(tmp_path):
    outbox = AlertOutbox(tmp_path / "outbox.db", retry_seconds=1, max_age_seconds=60)
    outbox.enqueue("run-1", {"slack": ["text", []]}, now=1000.0)
    sent = []
    report = outbox.deliver_due({"slack": sent.append}, now=1000.0 + 61)
    assert sent == [] and report.abandoned == [("run-1", "slack", "too old to send")]
    assert outbox.pending() == []


def test_two_senders_at_once_never_send_one_delivery_twice(tmp_path):
    outbox = AlertOutbox(tmp_path / "outbox.db")
    outbox.enqueue("run-1", {"slack": ["text", []]}, now=1000.0)
    sent = []

    def slow_send(payload):
        # A second sender ticking while the first is still sending finds nothing to claim.
        second = AlertOutbox(tmp_path / "outbox.db").deliver_due({"slack": sent.append}, now=1001.0)
        assert second.delivered == [] and second.failed == []
        sent.append(payload)

    report = outbox.deliver_due({"slack": slow_send}, now=1000.0)
    assert report.delivered == [("run-1", "slack")] and len(sent) == 1
