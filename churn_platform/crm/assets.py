"""raw/crm_tickets and enriched/ticket_sentiment."""

import datetime as dt
import json
from collections import Counter
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa

from churn_platform.contracts.crm_tickets import CRM_TICKETS
from churn_platform.contracts.derived import TICKET_SENTIMENT
from churn_platform.contracts.quarantine import QuarantineStore
from churn_platform.contracts.verify import build_contract_check
from churn_platform.crm.resources import CRMResource
from churn_platform.crm.sentiment import score_ticket_sentiment
from churn_platform.crm.tickets import (
    describe_problems,
    is_platform_ticket,
    normalize_tickets,
    placement_time,
    ticket_problems,
)
from churn_platform.crm.zendesk_api import CRMRequestRefused
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration import pools
from churn_platform.orchestration.partitions import PlatformPartitions
from churn_platform.orchestration.retries import EXTERNAL_CALL_RETRY
from churn_platform.settings import CRMSettings

# raw/crm_tickets' quarantine rows (contracts/quarantine.py keeps them, one file per partition):
# one row per problem, with the ticket as exported.
QUARANTINE_SCHEMA = pa.schema(
    [
        ("partition", pa.string()),  # the day the ticket was placed in (tickets.placement_time)
        ("ticket_id", pa.int64()),  # null when the id itself is unusable
        ("field", pa.string()),
        ("rule", pa.string()),  # tickets.RULES
        ("value", pa.string()),  # the offending value as JSON text, truncated
        ("record", pa.string()),  # the ticket as exported, JSON, first MAX_RECORD_CHARS characters
    ]
)
MAX_RECORD_CHARS = 4_000
PREVIEW_PROBLEMS = 10


def build_crm_assets(
    partitions: PlatformPartitions, crm_settings: CRMSettings | None = None
) -> list[dg.AssetsDefinition]:
    """``crm_settings``: the clock skew allowed for ticket times and the share of malformed tickets
    that fails a partition (the declared defaults when not given)."""
    crm_settings = crm_settings or CRMSettings()
    max_future_skew = dt.timedelta(seconds=crm_settings.clock_skew_seconds)
    max_quarantine_percent = crm_settings.max_quarantine_percent

    @dg.asset(
        key=keys.CRM_TICKETS,
        group_name="raw",
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_column": "updated_date", **CRM_TICKETS.definition_metadata()},
        kinds={"pandas", "parquet"},
        retry_policy=EXTERNAL_CALL_RETRY,
        pool=pools.CRM_API,
    )
    def crm_tickets(
        context: dg.AssetExecutionContext, crm: CRMResource, quarantine: QuarantineStore
    ) -> pd.DataFrame:
        """Support tickets created or updated on the day, in their latest state, one row per ticket.

        A ticket updated on several days lives in the partition of its latest update at export time
        (the CRM's export only knows a ticket's current state). Tickets the platform opened itself
        (failure alerts, see ``tickets.PLATFORM_TICKET_TAG``) are left out. Malformed tickets are
        quarantined (metadata ``quarantined_rows``, ``quarantine_preview``; the problems in the
        quarantine store, ``quarantine/raw/crm_tickets/<partition>.parquet``); more than CHURN_CRM_MAX_QUARANTINE_PERCENT
        of them fails the partition without retries.
        """
        window = context.partition_time_window  # one day, or the whole range of a single-run backfill
        now = dt.datetime.now(dt.UTC)
        try:
            exported = crm.fetch_updated_tickets(window.start, window.end, max_future_skew, now)
        except CRMRequestRefused as exc:
            # Refused credentials or requests, and links off the CRM's host, stay refused: fail
            # now, without the step's retries. (Transient faults, retried and exhausted, are a
            # CRMAPIError: the step's RetryPolicy tries again.)
            raise dg.Failure(str(exc), allow_retries=False) from None

        platform = [t for t in exported if is_platform_ticket(t)]
        customer = [t for t in exported if not is_platform_ticket(t)]
        good, findings = [], []  # findings: (record, its problems), as tickets.validate_tickets
        for record in customer:
            found = ticket_problems(record, now, max_future_skew)
            if found:
                findings.append((record, found))
            else:
                good.append(record)
        problems = [problem for _, found in findings for problem in found]
        quarantined = len(findings)
        metadata: dict[str, Any] = {
            "excluded_platform_tickets": len(platform),
            "quarantined_rows": quarantined,
            "quarantine_problems": len(problems),
            "quarantined_by_rule": dg.MetadataValue.json(
                dict(Counter(f"{p['field']}: {p['rule']}" for p in problems))
            ),
            "quarantine_preview": dg.MetadataValue.json(problems[:PREVIEW_PROBLEMS]),
        }
        written = _replace_quarantine(context, quarantine, findings, now, max_future_skew)
        if written:
            metadata["quarantine"] = dg.MetadataValue.json(written)

        share = 100.0 * quarantined / len(customer) if customer else 0.0
        if quarantined and share > max_quarantine_percent:
            raise dg.Failure(
                f"{quarantined} of {len(customer)} tickets ({share:.1f} %) are malformed, more than "
                f"CHURN_CRM_MAX_QUARANTINE_PERCENT ({max_quarantine_percent} %): {describe_problems(problems)}. "
                "Retrying cannot fix the CRM's data; fix the tickets or raise the limit, then re-run.",
                metadata=metadata,
                allow_retries=False,
            )
        if quarantined:
            context.log.warning(
                f"quarantined {quarantined} of {len(customer)} tickets: {describe_problems(problems)}"
            )
        context.add_output_metadata(metadata)
        return normalize_tickets(good)

    @dg.asset(
        key=keys.TICKET_SENTIMENT,
        group_name="enriched",
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"crm_tickets": dg.AssetIn(key=keys.CRM_TICKETS)},
        metadata={"partition_column": "updated_date", **TICKET_SENTIMENT.definition_metadata()},
        automation_condition=partitions.on_upstream_change(),
        kinds={"pandas", "parquet"},
    )
    def ticket_sentiment(crm_tickets: pd.DataFrame) -> pd.DataFrame:
        """A VADER sentiment score per ticket, from its subject and description."""
        return score_ticket_sentiment(crm_tickets)

    return [crm_tickets, ticket_sentiment]


def build_crm_checks(partitions: PlatformPartitions) -> list[dg.AssetChecksDefinition]:
    return [build_contract_check(keys.CRM_TICKETS, CRM_TICKETS, partitions.daily)]


def _replace_quarantine(
    context: dg.AssetExecutionContext,
    quarantine: QuarantineStore,
    findings: list[tuple[Any, list[dict[str, Any]]]],
    now: dt.datetime,
    max_future_skew: dt.timedelta,
) -> dict[str, str]:
    """Make each partition's quarantine exactly the problems of the tickets placed in it
    (``tickets.placement_time``; a ticket with no usable time goes to the run's first partition);
    returns the URIs written, by partition."""
    partition_keys = list(context.partition_keys)
    window = context.partition_time_window
    rows: list[dict[str, Any]] = []
    for record, found in findings:
        when = placement_time(record, now, max_future_skew)
        day = when.date().isoformat() if when is not None and window.start <= when < window.end else None
        partition = day if day in partition_keys else partition_keys[0]
        text = json.dumps(record, ensure_ascii=False, default=str)[:MAX_RECORD_CHARS]
        rows += [problem | {"partition": partition, "record": text} for problem in found]
    table = pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)
    return quarantine.replace(keys.CRM_TICKETS, partition_keys, table, schema=QUARANTINE_SCHEMA)
