"""What an alert says: plain functions from a failed run to a Slack message and a CRM ticket, and
from a retraining run started by drift to a Slack notice."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from churn_platform.crm.tickets import PLATFORM_TICKET_TAG

MAX_ERROR_CHARS = 1500


@dataclass(frozen=True)
class FailureAlert:
    run_id: str
    job_name: str
    failed_assets: list[str]
    partition: str | None
    error: str
    run_url: str

    @property
    def title(self) -> str:
        where = ", ".join(self.failed_assets) or self.job_name
        return f"churn_platform run failed: {where}" + (f" [{self.partition}]" if self.partition else "")


def partition_of(run: dg.DagsterRun) -> str | None:
    tags = run.tags
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start, end = (
        tags.get("dagster/asset_partition_range_start"),
        tags.get("dagster/asset_partition_range_end"),
    )
    return f"{start}...{end}" if start and end else None


def _root_message(error: Any) -> str:
    # Dagster wraps user errors ("Error occurred while executing op ..."); the cause says what broke.
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return f"{error.cls_name}: {error.message.strip()}" if getattr(error, "cls_name", None) else str(error)


def describe_failure(
    run: dg.DagsterRun, step_failures: Sequence[dg.DagsterEvent], run_message: str, ui_url: str
) -> FailureAlert:
    """The run's id, the assets whose steps failed, the partition(s), the root error and the UI link."""
    # An asset's step is named after its key path joined with "__" (raw__interaction_logs).
    failed = [(event.step_key or "?").replace("__", "/") for event in step_failures]
    errors = [
        _root_message(event.event_specific_data.error)
        for event in step_failures
        if getattr(event.event_specific_data, "error", None) is not None
    ]
    error = "\n".join(errors) or run_message
    if len(error) > MAX_ERROR_CHARS:
        error = error[:MAX_ERROR_CHARS] + " ..."
    return FailureAlert(
        run.run_id, run.job_name, failed, partition_of(run), error, f"{ui_url}/runs/{run.run_id}"
    )


def slack_message(alert: FailureAlert) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and Block Kit blocks for an incoming webhook."""
    fields = [
        f"*Run:* <{alert.run_url}|{alert.run_id}>",
        f"*Job:* {alert.job_name}",
        f"*Assets:* {', '.join(alert.failed_assets) or '-'}",
        f"*Partition:* {alert.partition or '-'}",
    ]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{alert.error}```"}},
    ]
    return f"{alert.title}: {alert.error.splitlines()[0] if alert.error else ''} {alert.run_url}", blocks


def crm_ticket(alert: FailureAlert) -> tuple[str, str, list[str]]:
    """Subject, body and tags of the ticket that asks a human to look at the failure."""
    body = (
        f"A churn_platform run failed.\n\nRun: {alert.run_id}\nJob: {alert.job_name}\n"
        f"Failed assets: {', '.join(alert.failed_assets) or '-'}\nPartition: {alert.partition or '-'}\n"
        f"Run in the Dagster UI: {alert.run_url}\n\nError:\n{alert.error}\n"
    )
    # PLATFORM_TICKET_TAG marks the ticket as the platform's own: raw/crm_tickets leaves it out, so an
    # alert ticket cannot fail the next day's ingestion (CRMResource.create_ticket adds it in any case).
    return alert.title, body, ["churn_platform", "pipeline_failure", PLATFORM_TICKET_TAG]


def retraining_notice(run: dg.DagsterRun, reason: str, ui_url: str) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and blocks saying why a retraining run was started without a schedule."""
    run_url = f"{ui_url}/runs/{run.run_id}"
    title = f"churn_platform retraining started on {partition_of(run) or '-'}"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why:* {reason}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Run:* <{run_url}|{run.run_id}>"}},
    ]
    return f"{title}: {reason} {run_url}", blocks
