"""run_failure_alert: every failed run of the code location reaches Slack, the CRM, or the log.
retraining_notice: a retraining run that drift started says why, on Slack and in the log."""

import dagster as dg

from churn_platform.alerts.messages import crm_ticket, describe_failure, retraining_notice, slack_message
from churn_platform.alerts.resources import SlackWebhook
from churn_platform.crm.resources import CRMResource
from churn_platform.orchestration.automation import default_status
from churn_platform.orchestration.jobs import training_job
from churn_platform.orchestration.run_tags import DRIFT_TRIGGER, TRIGGER_REASON_TAG, TRIGGER_TAG
from churn_platform.settings import AlertSettings


def build_failure_alert_sensor(settings: AlertSettings, running: bool) -> dg.SensorDefinition:
    ui_url, open_crm_tickets = settings.dagster_ui_url, settings.crm_tickets

    @dg.run_failure_sensor(
        name="run_failure_alert",
        default_status=default_status(running),
        description="Posts each failed run (id, assets, partition, error, UI link) to Slack and opens a CRM ticket.",
    )
    def run_failure_alert(context: dg.RunFailureSensorContext, slack: SlackWebhook, crm: CRMResource) -> None:
        alert = describe_failure(
            context.dagster_run,
            context.get_step_failure_events(),
            context.failure_event.message or "",
            ui_url,
        )
        context.log.error(f"{alert.title}\n{alert.error}\n{alert.run_url}")
        problems = []
        if slack.enabled:
            try:
                slack.post(*slack_message(alert))
            except Exception as exc:
                problems.append(f"Slack: {exc}")
        if open_crm_tickets:
            try:
                subject, body, tags = crm_ticket(alert)
                ticket_id = crm.create_ticket(subject, body, tags=tags)
                context.log.info(f"opened CRM ticket {ticket_id} for run {alert.run_id}")
            except Exception as exc:
                problems.append(f"CRM: {exc}")
        if problems:
            # A failed tick is visible in the UI and the daemon retries it on the next tick.
            raise RuntimeError(f"alert for run {alert.run_id} not delivered: " + "; ".join(problems))

    return run_failure_alert


def build_retraining_notice_sensor(settings: AlertSettings, running: bool) -> dg.SensorDefinition:
    ui_url = settings.dagster_ui_url

    @dg.run_status_sensor(
        name="retraining_notice",
        run_status=dg.DagsterRunStatus.STARTED,
        monitored_jobs=[training_job],
        default_status=default_status(running),
        description="Posts why a retraining run started when drift, not the schedule, started it. "
        "(CRM tickets stay for failures that need a person.)",
    )
    def retraining_notice_sensor(context: dg.RunStatusSensorContext, slack: SlackWebhook) -> None:
        run = context.dagster_run
        if run.tags.get(TRIGGER_TAG) != DRIFT_TRIGGER:
            return
        text, blocks = retraining_notice(run, run.tags.get(TRIGGER_REASON_TAG, "feature drift"), ui_url)
        context.log.warning(text)
        if slack.enabled:
            slack.post(text, blocks)

    return retraining_notice_sensor
