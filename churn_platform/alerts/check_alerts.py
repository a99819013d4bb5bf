"""check_failure_alert: every failed asset-check evaluation at or above CHURN_CHECK_ALERT_SEVERITY
reaches Slack (and the CRM, unless its run's failure alert already opened a ticket for it), once,
through the durable outbox (``outbox.py``).

What is alerted, by default: ERROR checks, i.e. the blocking data contracts and the restore
drill's recovery objectives. Not by default: WARN checks (feature and prediction drift, which the
drift-retraining sensor and Prometheus's drift rules handle; row volume accepted by a run;
quarantined rows, which ChurnQuarantineRate watches); the promotion gate (a rejection is the gate
doing its job, and the training run's failure alert already says so; CHURN_CHECK_ALERT_IGNORE);
and `partitions_on_time`, whose late partitions partition_freshness alerts one by one.
"""

import json
import time
from collections.abc import Callable, Iterable

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from churn_platform.alerts.messages import CheckFailure, check_crm_ticket, check_slack_message
from churn_platform.alerts.resources import SlackWebhook
from churn_platform.alerts.sensors import outbox_for, payloads_for, raise_if_failed, senders
from churn_platform.crm.resources import CRMResource
from churn_platform.orchestration.automation import default_status, read_json_cursor
from churn_platform.orchestration.freshness import PARTITIONS_ON_TIME
from churn_platform.settings import AlertSettings

# Evaluations are looked for back to the previous tick minus this much (clock skew between the run
# workers that write them and the daemon; a re-read evaluation is not alerted twice: stable ids).
OVERLAP_SECONDS = 600
PER_CHECK_LIMIT = 200  # the newest failed evaluations read per check and tick


def alerted_checks(check_keys: Iterable[dg.AssetCheckKey], settings: AlertSettings) -> list[dg.AssetCheckKey]:
    ignored = settings.ignored_checks()
    return sorted(
        (k for k in check_keys if k.name != PARTITIONS_ON_TIME and k.to_user_string() not in ignored),
        key=lambda k: k.to_user_string(),
    )


def failed_evaluations(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], since: float, min_severity: str
) -> list[CheckFailure]:
    """Failed evaluations (not passed; not a check that raised, whose run failure is alerted) of the
    checks, recorded after ``since``, at ``min_severity`` (error, or warn: both), oldest first."""
    failures = []
    for key in check_keys:
        records = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=PER_CHECK_LIMIT, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        for record in records:
            entry = record.event
            if entry is None or entry.dagster_event is None or entry.timestamp <= since:
                continue
            evaluation = entry.dagster_event.asset_check_evaluation_data
            severity = evaluation.severity.value.lower()
            if evaluation.passed or (min_severity == "error" and severity != "error"):
                continue
            failures.append(
                CheckFailure(
                    check=key,
                    partition=evaluation.partition or record.partition,
                    run_id=record.run_id or None,
                    record_id=record.id,
                    severity=severity,
                    blocking=bool(evaluation.blocking),
                    description=evaluation.description or "",
                    timestamp=entry.timestamp,
                )
            )
    return sorted(failures, key=lambda f: (f.timestamp, f.alert_id))


def build_check_failure_sensor(
    settings: AlertSettings, running: bool, clock: Callable[[], float] = time.time
) -> dg.SensorDefinition:
    ui_url = settings.dagster_ui_url

    @dg.sensor(
        name="check_failure_alert",
        minimum_interval_seconds=60,
        default_status=default_status(running),
        description="Posts each failed asset check (CHURN_CHECK_ALERT_SEVERITY and up, but the ignored "
        "ones) to Slack, with a CRM ticket unless its run's failure alert opened one, through the "
        "durable alert outbox.",
    )
    def check_failure_alert(
        context: dg.SensorEvaluationContext, slack: SlackWebhook, crm: CRMResource
    ) -> dg.SkipReason:
        if settings.check_alert_severity == "off":
            return dg.SkipReason("check alerts are off (CHURN_CHECK_ALERT_SEVERITY=off)")
        now = clock()
        cursor = read_json_cursor(context)
        # A first tick looks back as far as an alert is still worth sending.
        previous = float(cursor.get("since", now - settings.max_age_hours * 3600))
        checks = alerted_checks(context.repository_def.asset_graph.asset_check_keys, settings)
        failures = failed_evaluations(
            context.instance, checks, previous - OVERLAP_SECONDS, settings.check_alert_severity
        )
        outbox = outbox_for(context.instance, settings)
        new = 0
        for failure in failures:  # stored before any attempt: a tick that fails later loses nothing
            # A blocking ERROR failed its run: run_failure_alert opened the CRM ticket for it.
            ticket = settings.crm_tickets and not failure.failed_its_run
            payloads = payloads_for(
                slack, ticket, check_slack_message(failure, ui_url), check_crm_ticket(failure, ui_url)
            )
            stored = outbox.enqueue(failure.alert_id, payloads)
            if stored or (not payloads and failure.timestamp > previous):  # re-read ones are not news
                new += 1
                context.log.error(f"{failure.title}: {failure.description[:300]}")
        context.update_cursor(json.dumps({"since": now}))
        report = outbox.deliver_due(senders(slack, crm, settings, context.log))
        raise_if_failed(report)
        return dg.SkipReason(
            f"{new} new failed check evaluation(s) alerted; delivered {len(report.delivered)}"
        )

    return check_failure_alert
