"""Failure alerts: a real failed run, evaluated by run_failure_alert, reaches a Slack-style webhook
(a real HTTP receiver) and the CRM simulator; with nothing configured it only logs."""

import dagster as dg
import pytest

from churn_platform.alerts.messages import describe_failure
from churn_platform.alerts.resources import SlackWebhook
from churn_platform.alerts.sensors import build_failure_alert_sensor
from churn_platform.crm.resources import ZendeskCRMResource
from churn_platform.crm.simulator import ZendeskSimulator
from churn_platform.definitions import build_definitions
from churn_platform.resources import build_resources
from churn_platform.settings import AlertSettings
from churn_platform_tests.support.data import settings_for
from churn_platform_tests.support.servers import WebhookReceiver

DAY = "2026-01-03"
UI = "http://dagster.example:3000"


@pytest.fixture
def failed_run(tmp_path):
    """A run of raw/interaction_logs that fails: no files landed for the day."""
    settings = settings_for(str(tmp_path / "data"))
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [defs.get_assets_def(["raw", "interaction_logs"])],
            instance=instance,
            partition_key=DAY,
            resources=build_resources(settings),
            raise_on_error=False,
        )
        assert not result.success
        yield instance, result


@pytest.fixture
def simulator():
    sim = ZendeskSimulator([], email="ops@example.com", api_token="s3cret").start()
    yield sim
    sim.stop()


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


def evaluate(instance, result, resources, open_crm_tickets=True):
    sensor = build_failure_alert_sensor(
        AlertSettings(dagster_ui_url=UI, crm_tickets=open_crm_tickets), running=False
    )
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    with dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure,
        resources=resources,
    ) as context:
        sensor(context.for_run_failure())


def test_the_alert_names_run_asset_partition_error_and_link(failed_run):
    instance, result = failed_run
    run = instance.get_run_by_id(result.run_id)
    alert = describe_failure(run, result.get_step_failure_events(), "", UI)
    assert alert.run_id == result.run_id
    assert alert.failed_assets == ["raw/interaction_logs"]
    assert alert.partition == DAY
    assert "no interaction-log files for 2026-01-03" in alert.error and "Failure" in alert.error
    assert alert.run_url == f"{UI}/runs/{result.run_id}"


def test_failure_reaches_slack_webhook_and_crm(failed_run, simulator, webhook):
    instance, result = failed_run
    crm = ZendeskCRMResource(base_url=simulator.url, email="ops@example.com", api_token="s3cret")
    evaluate(instance, result, {"slack": SlackWebhook(webhook_url=webhook.url), "crm": crm})

    assert len(webhook.bodies) == 1
    posted = webhook.bodies[0]
    assert result.run_id in posted["text"] and "raw/interaction_logs" in posted["text"]
    assert any(f"{UI}/runs/{result.run_id}" in field["text"] for field in posted["blocks"][1]["fields"])

    assert len(simulator.created) == 1
    ticket = simulator.created[0]
    assert DAY in ticket["subject"] and "raw/interaction_logs" in ticket["subject"]
    assert result.run_id in ticket["description"] and "no interaction-log files" in ticket["description"]
    assert "pipeline_failure" in ticket["tags"]


def test_without_destinations_the_alert_only_logs(failed_run, simulator):
    instance, result = failed_run
    crm = ZendeskCRMResource(base_url=simulator.url, email="ops@example.com", api_token="s3cret")
    evaluate(instance, result, {"slack": SlackWebhook(), "crm": crm}, open_crm_tickets=False)
    assert simulator.created == []


def test_a_refused_webhook_fails_the_tick_without_leaking_its_url(failed_run, simulator):
    instance, result = failed_run
    refusing = WebhookReceiver(status=403)
    try:
        crm = ZendeskCRMResource(base_url=simulator.url, email="ops@example.com", api_token="s3cret")
        with pytest.raises(Exception, match="Slack webhook answered 403") as raised:
            evaluate(instance, result, {"slack": SlackWebhook(webhook_url=refusing.url), "crm": crm})
        assert refusing.url not in str(raised.value) and "XXXX" not in str(raised.value)
        assert len(simulator.created) == 1  # the CRM ticket was still opened
    finally:
        refusing.stop()


def test_alert_resources_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.example/services/T/B/secret")
    resources = build_resources(settings_for(str(tmp_path)))
    assert isinstance(resources["slack"].webhook_url, dg.EnvVar)  # a reference, not the value
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    assert not build_resources(settings_for(str(tmp_path)))["slack"].enabled
