"""Failure alerts: a real failed run, evaluated by run_failure_alert, reaches a Slack-style webhook
(a real HTTP receiver) and the CRM simulator; with nothing configured it only logs."""

import dagster as dg
import pytest

from churn_platform.alerts.messages import describe_failure
from churn_platform.alerts.resources import SlackWebhook
from churn_platform.alerts.sensors import build_failure_alert_sensor
from churn_platform.crm.resources import ZendeskCRMResource
from churn_platform.definitions import build_definitions
from churn_platform.orchestration import asset_keys as keys
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
            [defs.get_assets_def(keys.INTERACTION_LOGS)],
            instance=instance,
            partition_key=DAY,
            resources=build_resources(settings),
            raise_on_error=False,
        )
        assert not result.success
        yield instance, result


def evaluate(instance, result, resources, open_crm_tickets=True, settings=None):
    sensor = build_failure_alert_sensor(
        settings or AlertSettings(dagster_ui_url=UI, crm_tickets=open_crm_tickets), running=False
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
    assert alert.failed_assets == [keys.INTERACTION_LOGS.to_user_string()]
    assert alert.partition == DAY
    assert "no interaction-log files for 2026-01-03" in alert.error and "Failure" in alert.error
    assert alert.run_url == f"{UI}/runs/{result.run_id}"


def test_failure_reaches_slack_webhook_and_crm(failed_run, simulator, webhook):
    instance, result = failed_run
    crm = ZendeskCRMResource(base_url=simulator.url, email="ops@example.com", api_token="s3cret")
    evaluate(instance, result, {"slack": SlackWebhook(webhook_url=webhook.url), "crm": crm})

    assert len(webhook.bodies) == 1
    posted = webhook.bodies[0]
    assert result.run_id in posted["text"] and keys.INTERACTION_LOGS.to_user_string() in posted["text"]
    assert any(f"{UI}/runs/{result.run_id}" in field["text"] for field in posted["blocks"][1]["fields"])

    assert len(simulator.created) == 1
    ticket = simulator.created[0]
    assert DAY in ticket["subject"] and keys.INTERACTION_LOGS.to_user_string() in ticket["subject"]
    assert result.run_id in ticket["description"] and "no interaction-log files" in ticket["description"]
    assert "pipeline_failure" in ticket["tags"]


def test_without_destinations_the_alert_only_logs(failed_run, simulator):
    instance, result = failed_run
    crm = ZendeskCRMResource(base_url=simulator.url, email="ops@example.com", api_token="s3cret")
    evaluate(instance, result, {"slack": SlackWebhook(), "crm": crm}, open_crm_tickets=False)
    assert simulator.created == []


def test_a_refused_webhook_fails_the_tick_without_leaking_its_url(failed_run, simulator, leak_scan):
    instance, result = failed_run
    refusing = WebhookReceiver(status=403)
    try:
        crm = ZendeskCRMResource(base_url=simulator.url, email="ops@example.com", api_token="s3cret")
        with pytest.raises(Exception, match="Slack webhook answered 403") as raised:
            evaluate(instance, result, {"slack": SlackWebhook(webhook_url=refusing.url), "crm": crm})
        assert refusing.url not in str(raised.value) and "XXXX" not in str(raised.value)
        assert len(simulator.created) == 1  # the CRM ticket was still opened
        leak_scan.assert_absent(
            [refusing.url, "T000/B000/XXXX"], error=raised.value, instance=instance, run_id=result.run_id
        )
    finally:
        refusing.stop()


SECRET_PATH = "T0SECRET/B0SECRET/xoxwh6f1c2d9e8a7b"  # what makes an incoming-webhook URL a secret


@pytest.mark.parametrize(
    "failure",
    [
        "revoked (403 invalid_token)",
        "removed (404 no_service)",
        "rate limited until retries run out (429)",
        "unreachable until retries run out",
    ],
)
def test_webhook_failures_keep_its_url_out_of_errors_and_logs(
    failure, failed_run, simulator, monkeypatch, leak_scan
):
    instance, result = failed_run
    status, body, headers = {
        "revoked (403 invalid_token)": (403, b"invalid_token", {}),
        "removed (404 no_service)": (404, b"no_service", {}),
        "rate limited until retries run out (429)": (429, b"rate_limited", {"Retry-After": "0"}),
        "unreachable until retries run out": (200, b"ok", {}),
    }[failure]
    receiver = WebhookReceiver(status=status, secret_path=SECRET_PATH, body=body, headers=headers)
    url = receiver.url
    if failure.startswith("unreachable"):
        receiver.stop()  # nothing listens at the URL any more: connection refused, retried
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
    try:
        crm = ZendeskCRMResource(base_url=simulator.url, email="ops@example.com", api_token="s3cret")
        slack = SlackWebhook(webhook_url=dg.EnvVar("SLACK_WEBHOOK_URL"))
        with pytest.raises(Exception, match=f"alert for run {result.run_id} not delivered: Slack") as raised:
            evaluate(instance, result, {"slack": slack, "crm": crm})
        if status == 429:
            assert len(receiver.bodies) == 3  # the first attempt and both retries were refused
            assert "Slack webhook answered 429" in str(raised.value)
        elif failure.startswith("unreachable"):
            assert "Connection refused" in str(raised.value)
        else:
            assert len(receiver.bodies) == 1 and f"Slack webhook answered {status}" in str(raised.value)
        assert len(simulator.created) == 1  # the CRM ticket was still opened
        leak_scan.assert_absent(
            [url, SECRET_PATH, SECRET_PATH.rsplit("/", 1)[1]],
            error=raised.value,
            instance=instance,
            run_id=result.run_id,
        )
    finally:
        if not failure.startswith("unreachable"):
            receiver.stop()


def test_alert_resources_come_from_the_environment(tmp_path, monkeypatch):
    url = "https://hooks.slack.example/services/T/B/secret"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)  # where Dagster resolves the EnvVar at run time
    resources = build_resources(settings_for(str(tmp_path), SLACK_WEBHOOK_URL=url))
    assert isinstance(resources["slack"].webhook_url, dg.EnvVar)  # a reference, not the value
    assert resources["slack"].webhook_url.env_var_name == "SLACK_WEBHOOK_URL" and url not in repr(resources)
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    assert not build_resources(settings_for(str(tmp_path)))["slack"].enabled


def test_the_worker_death_is_told_but_routine_launcher_events_are_not():
    """The engine events of a run whose worker died: the K8s launcher's routine ones and a resume
    attempt are not the reason; the code server's or run monitoring's verdict is."""
    from churn_platform.alerts.sensors import worker_crash

    run = dg.DagsterRun(job_name="daily_ingestion_job")
    with dg.instance_for_test() as instance:
        instance.add_run(run)
        for message in (
            "Creating Kubernetes run worker job",
            "Kubernetes run worker job created",
            "Detected run worker status FAILED: 'pod gone'. Resuming run x with a new worker.",
        ):
            instance.report_engine_event(message, run)
        assert worker_crash(instance, run.run_id) is None
        verdict = "Detected run worker status FAILED: 'Job failed'. Marking run x as failed."
        instance.report_engine_event(verdict, run)
        assert worker_crash(instance, run.run_id) == verdict
        crash = "Run execution process for x was terminated by signal 9 (SIGKILL)."
        instance.report_engine_event(crash, run)
        assert worker_crash(instance, run.run_id) == crash
