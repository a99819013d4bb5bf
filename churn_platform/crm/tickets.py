"""Normalising Zendesk-shaped ticket records into the raw/crm_tickets table."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pandas as pd

REQUIRED_FIELDS = ("id", "subject", "description", "status", "requester_id", "created_at", "updated_at")

TICKET_COLUMNS = {
    "ticket_id": "int64",
    "customer_id": "int64",  # the requester
    "subject": "string",
    "description": "string",
    "status": "string",
    "priority": "string",
    "type": "string",
    "tags": "string",  # JSON array
    "satisfaction": "string",  # "good", "bad", "offered" or missing
    "created_at": "datetime64[us, UTC]",
    "updated_at": "datetime64[us, UTC]",
    "updated_date": "object",  # datetime.date; the partition column
}


class TicketSchemaError(ValueError):
    """Tickets without the fields the platform relies on."""


def normalize_tickets(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Typed tickets, the latest version of each id. Unknown fields are ignored on purpose."""
    records = list(records)
    if not records:
        return empty_tickets()
    missing: dict[str, list] = {}
    for record in records:
        for field in REQUIRED_FIELDS:
            if record.get(field) is None and not (field == "description" and field in record):
                missing.setdefault(field, []).append(record.get("id"))
    if missing:
        detail = "; ".join(f"{f} (tickets {ids[:5]})" for f, ids in missing.items())
        raise TicketSchemaError(f"tickets are missing required fields: {detail}")

    frame = pd.DataFrame(
        {
            "ticket_id": [int(r["id"]) for r in records],
            "customer_id": [int(r["requester_id"]) for r in records],
            "subject": [str(r["subject"]) for r in records],
            "description": [str(r.get("description") or "") for r in records],
            "status": [str(r["status"]) for r in records],
            "priority": [r.get("priority") for r in records],
            "type": [r.get("type") for r in records],
            "tags": [json.dumps(r.get("tags") or []) for r in records],
            "satisfaction": [_satisfaction(r.get("satisfaction_rating")) for r in records],
            "created_at": _timestamps(records, "created_at"),
            "updated_at": _timestamps(records, "updated_at"),
        }
    )
    frame["updated_date"] = frame["updated_at"].dt.date
    frame = (
        frame.sort_values(["ticket_id", "updated_at"], kind="stable")
        .drop_duplicates("ticket_id", keep="last")
        .reset_index(drop=True)
    )
    return frame.astype(TICKET_COLUMNS)


def empty_tickets() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in TICKET_COLUMNS.items()})


def _satisfaction(rating: Any) -> str | None:
    # Zendesk sends null, {} (not offered) or {"score": ...}.
    if isinstance(rating, dict):
        return rating.get("score")
    return None


def _timestamps(records: list[dict], field: str) -> pd.Series:
    values = pd.to_datetime([r[field] for r in records], utc=True, errors="coerce", format="ISO8601")
    if values.isna().any():
        bad = [r.get("id") for r, v in zip(records, values, strict=False) if pd.isna(v)]
        raise TicketSchemaError(f"tickets {bad[:5]} have an unparseable {field}")
    return pd.Series(values).astype("datetime64[us, UTC]")
