"""raw/crm_tickets and enriched/ticket_sentiment."""

import dagster as dg
import pandas as pd

from churn_platform.crm.resources import CRMResource
from churn_platform.crm.sentiment import score_ticket_sentiment
from churn_platform.crm.tickets import normalize_tickets
from churn_platform.crm.zendesk_api import CRMRequestRefused
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration import pools
from churn_platform.orchestration.partitions import PlatformPartitions
from churn_platform.orchestration.retries import EXTERNAL_CALL_RETRY


def build_crm_assets(partitions: PlatformPartitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=keys.CRM_TICKETS,
        group_name="raw",
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_column": "updated_date"},
        kinds={"pandas", "parquet"},
        retry_policy=EXTERNAL_CALL_RETRY,
        pool=pools.CRM_API,
    )
    def crm_tickets(context: dg.AssetExecutionContext, crm: CRMResource) -> pd.DataFrame:
        """Support tickets created or updated on the day, in their latest state, one row per ticket.

        A ticket updated on several days lives in the partition of its latest update at export time
        (the CRM's export only knows a ticket's current state).
        """
        window = context.partition_time_window  # one day, or the whole range of a single-run backfill
        try:
            tickets = crm.fetch_updated_tickets(window.start, window.end)
        except CRMRequestRefused as exc:
            # Refused credentials or requests stay refused: fail now, without the step's retries.
            raise dg.Failure(str(exc), allow_retries=False) from None
        return normalize_tickets(tickets)

    @dg.asset(
        key=keys.TICKET_SENTIMENT,
        group_name="enriched",
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"crm_tickets": dg.AssetIn(key=keys.CRM_TICKETS)},
        metadata={"partition_column": "updated_date"},
        automation_condition=partitions.on_upstream_change(),
        kinds={"pandas", "parquet"},
    )
    def ticket_sentiment(crm_tickets: pd.DataFrame) -> pd.DataFrame:
        """A VADER sentiment score per ticket, from its subject and description."""
        return score_ticket_sentiment(crm_tickets)

    return [crm_tickets, ticket_sentiment]
