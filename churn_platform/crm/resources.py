"""How the platform talks to the CRM (a Zendesk-style support API).

``ZendeskCRMResource`` is an HTTP client of the Zendesk Support API. With ``base_url`` unset (the
local default) it starts the bundled simulator in-process, on a loopback port, over the export
file that `churn-platform generate` writes: raw/crm_tickets goes through the same HTTP client in
every environment.
"""

import datetime as dt
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import dagster as dg
from pydantic import Field

from churn_platform.crm.export import read_export, write_export
from churn_platform.crm.simulator import ZendeskSimulator
from churn_platform.crm.zendesk_api import RetrySettings, ZendeskAPI, basic_auth_header
from churn_platform.secrets import reveal
from churn_platform.storage.connection import ObjectStoreConnection


class CRMResource(dg.ConfigurableResource):
    """A CRM that exports tickets updated in a time window and opens tickets for humans."""

    def fetch_updated_tickets(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        """Tickets (current state) whose ``updated_at`` lies in [start, end), UTC."""
        raise NotImplementedError

    def create_ticket(self, subject: str, body: str, tags: Optional[list[str]] = None) -> int:
        """Open a ticket for a human; returns its id."""
        raise NotImplementedError


class ZendeskCRMResource(CRMResource):
    """Zendesk Support API client (cursor-based incremental export, ticket creation)."""

    base_url: Optional[str] = Field(default=None, description="e.g. https://acme.zendesk.com; unset: local simulator")
    email: Optional[str] = Field(default=None, description="Agent email, for API-token auth.")
    api_token: Optional[str] = Field(default=None, description="API token (dg.EnvVar), sent as {email}/token:{token}.")
    oauth_token: Optional[str] = Field(default=None, description="OAuth bearer token (dg.EnvVar); preferred if set.")
    export_path: Optional[str] = Field(default=None, description="Export file the local simulator serves.")
    export_connection: Optional[ObjectStoreConnection] = None
    page_size: int = 1000
    timeout_seconds: float = 30.0
    max_attempts: int = 8
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0

    def _retry(self) -> RetrySettings:
        return RetrySettings(self.max_attempts, self.backoff_base_seconds, self.backoff_max_seconds)

    @contextmanager
    def api(self) -> Iterator[ZendeskAPI]:
        if self.base_url:
            oauth = reveal(self.oauth_token)
            if oauth:
                authorization = f"Bearer {oauth}"
            elif self.email and self.api_token:
                authorization = basic_auth_header(self.email, reveal(self.api_token))
            else:
                raise dg.Failure("CRM credentials missing: set ZENDESK_OAUTH_TOKEN, or CHURN_CRM_EMAIL and ZENDESK_API_TOKEN")
            with ZendeskAPI(self.base_url, authorization, self.timeout_seconds, self._retry(), self.page_size) as api:
                yield api
            return
        if not self.export_path:
            raise dg.Failure("no CRM configured: set CHURN_CRM_URL (and credentials) or an export for the local simulator")
        token = secrets.token_urlsafe(24)  # a throwaway credential for this in-process simulator
        simulator = ZendeskSimulator(
            read_export(self.export_path, self.export_connection), oauth_token=token,
            on_create=lambda tickets: write_export(self.export_path, tickets, self.export_connection),
        )
        with simulator.running(), ZendeskAPI(simulator.url, f"Bearer {token}", self.timeout_seconds,
                                             self._retry(), self.page_size) as api:
            yield api

    def fetch_updated_tickets(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        with self.api() as api:
            exported = api.export_tickets(start)
        # Tickets without a parseable updated_at are kept so that the schema check names them.
        return [t for t in exported if (when := _parse(t.get("updated_at"))) is None or start <= when < end]

    def create_ticket(self, subject: str, body: str, tags: Optional[list[str]] = None) -> int:
        with self.api() as api:
            return api.create_ticket(subject, body, tags)


def _parse(value: Any) -> Optional[dt.datetime]:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
