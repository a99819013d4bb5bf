"""SimulatedCRMResource: the local CRM, the bundled Zendesk simulator started on a loopback port
over the export file that `churn-platform generate` writes, for the duration of each call. Created and
updated tickets are written back to the export file."""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import Field

from churn_platform.crm.export import read_export, write_export
from churn_platform.crm.resources import CRMResource
from churn_platform.crm.simulator import ZendeskSimulator
from churn_platform.crm.zendesk_api import ZendeskAPI
from churn_platform.storage.connection import ObjectStoreConnection


class SimulatedCRMResource(CRMResource):
    export_path: str = Field(
        description="The ticket export the simulator serves (and writes created and updated tickets to)."
    )
    export_connection: ObjectStoreConnection | None = None

    @contextmanager
    def api(self) -> Iterator[ZendeskAPI]:
        token = secrets.token_urlsafe(24)  # a throwaway credential for this in-process simulator
        simulator = ZendeskSimulator(
            read_export(self.export_path, self.export_connection),
            oauth_token=token,
            on_change=lambda tickets: write_export(self.export_path, tickets, self.export_connection),
        )
        with simulator.running(), self.client(simulator.url, f"Bearer {token}") as api:
            yield api
