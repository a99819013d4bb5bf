"""run_failure_alert: every failed run of the code location reaches Slack, the CRM, or the log,
through the durable outbox (``outbox.py``); alert_outbox retries what was not delivered.
retraining_notice: a retraining run that drift started says why, on Slack and in the log."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from churn_platform.alerts.messages import crm_ticket, describe_failure, retraining_notice, slack_message
from churn_platform.alerts.outbox import OUTBOX_FILE, AlertOutbox, DeliveryReport
from churn_platform.alerts.resources import SlackWebhook
from churn_platform.crm.resources import CRMResource
from churn_platform.orchestration.automation import default_status
from churn_platform.orchestration.jobs import training_job
from churn_platform.orchestration.run_tags import DRIFT_TRIGGER, TRIGGER_REASON_TAG, TRIGGER_TAG
from churn_platform.settings import AlertSettings

DESTINATIONS = {"slack": "Slack", "crm": "CRM"}


def instance_database(instance: dg.DagsterInstance) -> sa.Engine | None:
    """The engine of the instance's own PostgreSQL database when its run storage is dagster-postgres
    (production: deploy/dagster.yaml keeps runs, event logs and schedules there), else None. It is
    the storage's engine, so it connects as the instance does (credentials, options, token auth)."""
    storage = instance.run_storage
    if getattr(storage, "postgres_url", None) is None:
        return None
    engine = getattr(storage, "_engine", None)  # dagster-postgres's own engine (no public accessor)
    if not isinstance(engine, sa.Engine):
        raise RuntimeError(
            f"{type(storage).__name__} keeps runs in PostgreSQL but has no SQLAlchemy engine to reach it "
            "(dagster-postgres changed?): the alert outbox cannot find the instance's database"
        )
    return engine


def outbox_for(instance: dg.DagsterInstance, settings: AlertSettings) -> AlertOutbox:
    """The outbox where the instance is: a table in its PostgreSQL database (every sensor process
    and pod shares it, and it outlives them), or a SQLite file beside a SQLite instance."""
    database = instance_database(instance)
    return AlertOutbox(
        database if database is not None else Path(instance.root_directory) / OUTBOX_FILE,
        retry_seconds=settings.retry_seconds,
        max_age_seconds=settings.max_age_hours * 3600,
    )


def senders(
    slack: SlackWebhook, crm: CRMResource, settings: AlertSettings, log: Any
) -> dict[str, Callable[[Any], None]]:
    """The configured destinations only: a delivery to one switched off since is given up."""

    def to_crm(payload: list) -> None:
        subject, body, tags = payload
        # create_ticket marks the ticket as the platform's own (tag and external_id), so that
        # raw/crm_tickets never ingests it: no alert ticket can fail the next day's ingestion.
        ticket_id = crm.create_ticket(subject, body, tags=tags)
        log.info(f"opened CRM ticket {ticket_id}: {subject}")

    configured: dict[str, Callable[[Any], None]] = {}
    if slack.enabled:
        configured["slack"] = lambda payload: slack.post(*payload)
    if settings.crm_tickets:
        configured["crm"] = to_crm
    return configured


def payloads_for(
    slack: SlackWebhook, open_crm_ticket: bool, slack_payload: tuple, crm_payload: tuple
) -> dict[str, Any]:
    """What the outbox stores for each configured destination (JSON-ready)."""
    payloads: dict[str, Any] = {}
    if slack.enabled:
        payloads["slack"] = list(slack_payload)
    if open_crm_ticket:
        payloads["crm"] = list(crm_payload)
    return payloads


def raise_if_failed(report: DeliveryReport, alert_id: str | None = None) -> None:
    """A failed delivery fails the tick (visible in the UI); the outbox keeps it for the next."""
    if not report.failed:
        return
    mine = [f for f in report.failed if f[0] == alert_id] or report.failed
    details = "; ".join(f"{DESTINATIONS.get(d, d)}: {error}" for _, d, error in mine[:5])
    if len(mine) > 5:
        details += f"; and {len(mine) - 5} more"
    what = f"alert for run {alert_id}" if alert_id else f"{len(report.failed)} alert deliveries"
    raise RuntimeError(f"{what} not delivered: {details} (kept in the outbox, retried with backoff)")


# How the processes that notice a dead run worker word it: the code server that started it, and
# run monitoring once it gives up on the worker (not its "Resuming run" attempts, and not the
# Kubernetes launcher's routine "run worker job created" events).
WORKER_DEATH_MARKERS = (("Run execution process for",), ("Detected run worker status", "Marking run"))


def worker_crash(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """Why a run's worker process died, as whoever noticed it recorded it: "... was terminated by
    signal 9 (SIGKILL) ...", or run monitoring's verdict; None when nobody recorded one."""
    for record in reversed(instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)):
        message = record.message or ""
        if any(all(part in message for part in marker) for marker in WORKER_DEATH_MARKERS):
            return message
    return None


def build_failure_alert_sensor(settings: AlertSettings, running: bool) -> dg.SensorDefinition:
    ui_url, open_crm_tickets = settings.dagster_ui_url, settings.crm_tickets

    @dg.run_failure_sensor(
        name="run_failure_alert",
        default_status=default_status(running),
        description="Posts each failed run (id, assets, partition, error, UI link) to Slack and opens a "
        "CRM ticket, through the durable alert outbox.",
    )
    def run_failure_alert(context: dg.RunFailureSensorContext, slack: SlackWebhook, crm: CRMResource) -> None:
        step_failures = context.get_step_failure_events()
        run_message = context.failure_event.message or ""
        if not step_failures:  # the run died around its steps: say how (killed by a signal, say)
            run_message = worker_crash(context.instance, context.dagster_run.run_id) or run_message
        alert = describe_failure(context.dagster_run, step_failures, run_message, ui_url)
        context.log.error(f"{alert.title}\n{alert.error}\n{alert.run_url}")
        payloads = payloads_for(slack, open_crm_tickets, slack_message(alert), crm_ticket(alert))
        outbox = outbox_for(context.instance, settings)
        outbox.enqueue(alert.run_id, payloads)  # stored before any attempt: never lost
        raise_if_failed(outbox.deliver_due(senders(slack, crm, settings, context.log)), alert.run_id)

    return run_failure_alert


def build_alert_outbox_sensor(settings: AlertSettings, running: bool) -> dg.SensorDefinition:
    @dg.sensor(
        name="alert_outbox",
        minimum_interval_seconds=max(1, min(settings.retry_seconds, 60)),
        default_status=default_status(running),
        description="Retries alert deliveries that failed (backoff from CHURN_ALERT_RETRY_SECONDS, "
        "given up after CHURN_ALERT_MAX_AGE_HOURS); never repeats one that succeeded.",
    )
    def alert_outbox(
        context: dg.SensorEvaluationContext, slack: SlackWebhook, crm: CRMResource
    ) -> dg.SkipReason:
        outbox = outbox_for(context.instance, settings)
        report = outbox.deliver_due(senders(slack, crm, settings, context.log))
        for alert_id, destination, why in report.abandoned:
            context.log.error(
                f"alert {alert_id} to {DESTINATIONS.get(destination, destination)} given up: {why}"
            )
        raise_if_failed(report)
        return dg.SkipReason(f"delivered {len(report.delivered)}; pending {len(outbox.pending())}")

    return alert_outbox


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
