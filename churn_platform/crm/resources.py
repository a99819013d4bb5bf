"""How the platform talks to the CRM (a Zendesk-style support API).

``ZendeskCRMResource`` is an HTTP client of the Zendesk Support API (production). The local
default is ``SimulatedCRMResource`` (``simulated.py``): the same client against the bundled
simulator, so raw/crm_tickets goes through HTTP in every environment. ``resources.py`` picks one.
"""

import datetime as dt
import uuid
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import dagster as dg
from pydantic import Field

from churn_platform.crm.tickets import (
    DEFAULT_MAX_FUTURE_SKEW,
    PLATFORM_EXTERNAL_ID_PREFIX,
    PLATFORM_TICKET_TAG,
    placement_time,
)
from churn_platform.crm.zendesk_api import RetrySettings, ZendeskAPI, basic_auth_header
from churn_platform.storage.credentials import reveal


class CRMResource(dg.ConfigurableResource):
    """A CRM that exports tickets updated in a time window and opens tickets for humans."""

    page_size: int = 1000
    timeout_seconds: float = 30.0
    max_attempts: int = 8
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0

    @abstractmethod
    def api(self) -> AbstractContextManager[ZendeskAPI]:
        """A connected Zendesk API client for the duration of the block."""

    def client(self, base_url: str, authorization: str) -> ZendeskAPI:
        retry = RetrySettings(self.max_attempts, self.backoff_base_seconds, self.backoff_max_seconds)
        return ZendeskAPI(base_url, authorization, self.timeout_seconds, retry, self.page_size)

    def fetch_updated_tickets(
        self,
        start: dt.datetime,
        end: dt.datetime,
        max_future_skew: dt.timedelta = DEFAULT_MAX_FUTURE_SKEW,
        now: dt.datetime | None = None,
    ) -> list[Any]:
        """Tickets (current state) whose parsed ``updated_at`` lies in [start, end), UTC.

        A ticket whose updated_at does not parse or lies beyond ``now`` + ``max_future_skew`` is
        placed by Zendesk's ``generated_timestamp`` instead, and kept whenever neither places it:
        such tickets are never dropped here, so that validation quarantines them
        (``tickets.placement_time``).
        """
        now = now or dt.datetime.now(dt.UTC)
        with self.api() as api:
            exported = api.export_tickets(start)
        return [
            t
            for t in exported
            if (when := placement_time(t, now, max_future_skew)) is None or start <= when < end
        ]

    def create_ticket(
        self, subject: str, body: str, tags: list[str] | None = None, external_id: str | None = None
    ) -> int:
        """Open a ticket for a human; returns its id. Every ticket the platform opens carries the
        platform's mark (the tag ``PLATFORM_TICKET_TAG`` and an ``external_id`` starting with
        ``PLATFORM_EXTERNAL_ID_PREFIX``, by default with a random suffix), so that raw/crm_tickets
        never ingests it as a customer's ticket."""
        marked = [*(tags or []), *([] if PLATFORM_TICKET_TAG in (tags or []) else [PLATFORM_TICKET_TAG])]
        if external_id is None or not external_id.startswith(PLATFORM_EXTERNAL_ID_PREFIX):
            external_id = f"{PLATFORM_EXTERNAL_ID_PREFIX}{external_id or uuid.uuid4().hex}"
        with self.api() as api:
            return api.create_ticket(subject, body, marked, external_id=external_id)


class ZendeskCRMResource(CRMResource):
    """Zendesk Support API client (cursor-based incremental export, ticket creation)."""

    base_url: str = Field(description="e.g. https://acme.zendesk.com")
    email: str | None = Field(default=None, description="Agent email, for API-token auth.")
    api_token: str | None = Field(
        default=None, description="API token (dg.EnvVar), sent as {email}/token:{token}."
    )
    oauth_token: str | None = Field(
        default=None, description="OAuth bearer token (dg.EnvVar); preferred if set."
    )

    @contextmanager
    def api(self) -> Iterator[ZendeskAPI]:
        oauth = reveal(self.oauth_token)
        if oauth:
            authorization = f"Bearer {oauth}"
        elif self.email and self.api_token:
            authorization = basic_auth_header(self.email, reveal(self.api_token))
        else:
            raise dg.Failure(  # configuration, not a transient fault: retrying cannot help
                "CRM credentials missing: set ZENDESK_OAUTH_TOKEN, or CHURN_CRM_EMAIL and ZENDESK_API_TOKEN",
                allow_retries=False,
            )
        with self.client(self.base_url, authorization) as api:
            yield api
