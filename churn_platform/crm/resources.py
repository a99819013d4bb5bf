"""How the platform talks to the CRM.

``CRMResource`` is the interface every CRM source implements. ``BundledCRMResource`` reads a
Zendesk-shaped export file (what ``churn-platform generate`` writes); the HTTP client for the
Zendesk Support API implements the same two methods.
"""

import datetime as dt
import json
from typing import Any, Optional

import dagster as dg
from pydantic import Field
from upath import UPath

from churn_platform.storage.connection import ObjectStoreConnection, open_path
from churn_platform.storage.files import StorageError, read_bytes, uri_of, write_bytes_atomic


class CRMResource(dg.ConfigurableResource):
    """A CRM that can export tickets updated in a time window and open new tickets."""

    def fetch_updated_tickets(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        """Tickets (current state) whose ``updated_at`` lies in [start, end), UTC."""
        raise NotImplementedError

    def create_ticket(self, subject: str, body: str, tags: list[str] | None = None) -> int:
        """Open a ticket for a human; returns its id."""
        raise NotImplementedError


class BundledCRMResource(CRMResource):
    """Tickets from a Zendesk-shaped JSON-lines export (one ticket object per line)."""

    export_path: str = Field(description="Path or URI of the tickets export (JSON lines).")
    connection: Optional[ObjectStoreConnection] = None

    def _path(self) -> UPath:
        return open_path(self.export_path, self.connection)

    def fetch_updated_tickets(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        path = self._path()
        try:
            content = read_bytes(path).decode("utf-8")
        except StorageError as exc:
            raise StorageError(
                f"CRM export {uri_of(path)} does not exist; run `churn-platform generate` or "
                "configure the CRM API"
            ) from exc
        tickets = []
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                ticket = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{uri_of(path)} line {number}: not valid JSON ({exc.msg})") from exc
            updated = ticket.get("updated_at")
            if not isinstance(updated, str):
                raise ValueError(f"{uri_of(path)} line {number}: ticket has no updated_at")
            when = dt.datetime.fromisoformat(updated.replace("Z", "+00:00"))
            if start <= when < end:
                tickets.append(ticket)
        return tickets

    def write_export(self, tickets: list[dict[str, Any]]) -> str:
        """Replace the export with these tickets (what `churn-platform generate` writes)."""
        path = self._path()
        write_bytes_atomic(path, "".join(json.dumps(t, separators=(",", ":")) + "\n" for t in tickets).encode("utf-8"))
        return uri_of(path)

    def create_ticket(self, subject: str, body: str, tags: list[str] | None = None) -> int:
        # Appends to the export, as the API would add the ticket to its store.
        path = self._path()
        existing = read_bytes(path).decode("utf-8") if path.exists() else ""
        ids = [json.loads(line)["id"] for line in existing.splitlines() if line.strip()]
        ticket_id = max(ids, default=0) + 1
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        record = {"id": ticket_id, "subject": subject, "description": body, "status": "new",
                  "tags": tags or [], "created_at": now, "updated_at": now, "requester_id": None}
        write_bytes_atomic(path, (existing + json.dumps(record) + "\n").encode("utf-8"))
        return ticket_id
