"""What an alert says: plain functions from a failed run, a late partition or a failed asset check
to a Slack message and a CRM ticket, and from a retraining run started by drift to a Slack notice."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from churn_platform.crm.tickets import PLATFORM_TICKET_TAG
from churn_platform.orchestration.freshness import LatePartition, humanize

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


# -- late partitions (partition_freshness) --------------------------------------------------------------
def asset_url(ui_url: str, asset: dg.AssetKey, view: str = "", partition: str | None = None) -> str:
    url = f"{ui_url}/assets/{'/'.join(asset.path)}"
    query = [f"view={view}"] if view else []
    if partition:
        query.append(f"partition={partition}")
    return url + (f"?{'&'.join(query)}" if query else "")


def late_title(late: LatePartition) -> str:
    return f"churn_platform partition late: {late.asset.to_user_string()} [{late.partition}]"


def late_slack_message(late: LatePartition, ui_url: str) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and blocks: which partition, its deadline, how late, where to look."""
    url = asset_url(ui_url, late.asset, "partitions", late.partition)
    deadline = f"{late.deadline:%Y-%m-%d %H:%M} UTC"
    fields = [
        f"*Asset:* <{url}|{late.asset.to_user_string()}>",
        f"*Partition:* {late.partition}",
        f"*Deadline:* {deadline}",
        f"*Late by:* {humanize(late.late_by)}",
    ]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": late_title(late)[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "Not materialized by its deadline. Check the landing sensor, the schedules, "
                "failed runs and the automation sensor; the asset's `partitions_on_time` check lists "
                "every late partition.",
            },
        },
    ]
    text = f"{late_title(late)}: missing {humanize(late.late_by)} after its deadline {deadline} {url}"
    return text, blocks


def late_crm_ticket(late: LatePartition, ui_url: str) -> tuple[str, str, list[str]]:
    """Subject, body and tags of the ticket that asks a human to bring the partition in."""
    url = asset_url(ui_url, late.asset, "partitions", late.partition)
    body = (
        f"A churn_platform partition missed its freshness deadline.\n\n"
        f"Asset: {late.asset.to_user_string()}\nPartition: {late.partition}\n"
        f"Deadline: {late.deadline:%Y-%m-%d %H:%M} UTC\nLate by (when detected): {humanize(late.late_by)}\n"
        f"Asset in the Dagster UI: {url}\n\n"
        "Check the landing sensor, the schedules, failed runs and the automation sensor; the asset's "
        "partitions_on_time check lists every late partition.\n"
    )
    return late_title(late), body, ["churn_platform", "partition_late", PLATFORM_TICKET_TAG]


# -- failed asset checks (check_failure_alert) --------------------------------------------------------
@dataclass(frozen=True)
class CheckFailure:
    check: dg.AssetCheckKey
    partition: str | None
    run_id: str | None  # None: reported without a run
    record_id: int
    severity: str  # error | warn
    blocking: bool
    description: str
    timestamp: float

    @property
    def alert_id(self) -> str:
        """One alert per (check, partition, run): stable, so the outbox never stores it twice."""
        return f"check:{self.check.to_user_string()}:{self.partition or '-'}:{self.run_id or f'runless-{self.record_id}'}"

    @property
    def failed_its_run(self) -> bool:
        """A blocking check that fails with ERROR fails its step, hence its run."""
        return self.blocking and self.severity == "error" and self.run_id is not None

    @property
    def title(self) -> str:
        where = f" [{self.partition}]" if self.partition else ""
        return f"churn_platform check failed: {self.check.to_user_string()}{where}"


def check_slack_message(failure: CheckFailure, ui_url: str) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and blocks: the check, partition, severity, its own description, the links."""
    checks_url = asset_url(ui_url, failure.check.asset_key, "checks")
    run = (
        f"<{ui_url}/runs/{failure.run_id}|{failure.run_id}>"
        if failure.run_id
        else "- (reported without a run)"
    )
    fields = [
        f"*Check:* <{checks_url}|{failure.check.to_user_string()}>",
        f"*Partition:* {failure.partition or '-'}",
        f"*Severity:* {failure.severity}{' (blocking: its run failed)' if failure.failed_its_run else ''}",
        f"*Run:* {run}",
    ]
    description = failure.description[:MAX_ERROR_CHARS] or "-"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": failure.title[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{description}```"}},
    ]
    return f"{failure.title}: {description.splitlines()[0]} {checks_url}", blocks


def check_crm_ticket(failure: CheckFailure, ui_url: str) -> tuple[str, str, list[str]]:
    body = (
        f"A churn_platform asset check failed.\n\nCheck: {failure.check.to_user_string()}\n"
        f"Partition: {failure.partition or '-'}\nSeverity: {failure.severity}\n"
        f"Run: {f'{ui_url}/runs/{failure.run_id}' if failure.run_id else '- (reported without a run)'}\n"
        f"Checks in the Dagster UI: {asset_url(ui_url, failure.check.asset_key, 'checks')}\n\n"
        f"Result:\n{failure.description[:MAX_ERROR_CHARS]}\n"
    )
    return failure.title, body, ["churn_platform", "check_failure", PLATFORM_TICKET_TAG]
