"""The CRM loop: a Zendesk ticket event in, the requester's churn risk written back onto the ticket.

A support agent opening the ticket sees a tag (``churn_risk_high`` / ``_medium`` / ``_low``) and,
when ``CHURN_CRM_RISK_FIELD_ID`` names a decimal custom field, the probability itself.

- Only ``ticket.created`` and ``ticket.comment_added`` are scored. Every other event, including the
  tag and custom-field changes the write-back itself causes, is acknowledged and ignored: the loop
  cannot feed itself.
- The requester's online features are taken as they are, plus this ticket when it is newer than
  the features (created after their as-of day): its sentiment is folded into the ticket counts
  and sentiment aggregates exactly as the batch features would count it the next day.
- A redelivered event (same event id) is answered from its first outcome and never written twice;
  an event being processed by another request gets 409, which Zendesk retries; anything that may
  work later (the CRM or Redis unreachable, expired credentials, no model or features yet) releases
  the event and answers 503 with Retry-After, so that Zendesk redelivers it; a ticket the CRM says
  is gone, or an update it rejects, is final (424).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from churn_platform.crm.sentiment import label_for
from churn_platform.crm.tickets import is_platform_ticket
from churn_platform.crm.webhooks import EVENT_PREFIX, TICKET_COMMENT_ADDED, TICKET_CREATED

SCORED_EVENTS = (TICKET_CREATED, TICKET_COMMENT_ADDED)
RISK_TAGS = ("churn_risk_high", "churn_risk_medium", "churn_risk_low")
PROCESSING_SECONDS = 120  # how long a claim on an event lasts if its request dies
MAX_BODY_BYTES = 1_000_000  # a ticket event is a few KB; anything far larger is refused unread
RETRY_AFTER = {"Retry-After": "30"}  # Zendesk retries a 503 only when it says when
FINAL_REFUSALS = (404, 410, 422)  # the ticket is gone or the update is wrong: retrying cannot help
DONE_SECONDS = 7 * 24 * 3600  # how long outcomes are kept to answer redeliveries


class MalformedEvent(ValueError):
    """A signed body that is not a ticket event the service can read; the message says what is wrong."""


@dataclass(frozen=True)
class TicketEvent:
    event_id: str
    type: str
    ticket_id: int
    requester_id: int | None  # None: no requester, or not a numeric id
    subject: str | None
    description: str | None
    created_at: dt.datetime
    tags: tuple[str, ...]
    opened_by_platform: bool  # an alert ticket the platform opened itself (crm/tickets.py's mark)


def parse_ticket_event(body: bytes) -> TicketEvent:
    try:
        event = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"the body is not JSON ({exc})") from None
    if not isinstance(event, dict) or not isinstance(event.get("detail"), dict):
        raise MalformedEvent("not a Zendesk event: no 'detail' object")
    kind, event_id, detail = event.get("type"), event.get("id"), event["detail"]
    if not isinstance(kind, str) or not kind.startswith(EVENT_PREFIX) or not event_id:
        raise MalformedEvent("not a Zendesk event: 'type' or 'id' missing")
    try:
        ticket_id = int(str(detail["id"]))
        created_at = dt.datetime.fromisoformat(str(detail["created_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        raise MalformedEvent("the event's ticket has no numeric id or no created_at time") from None
    if created_at.tzinfo is None:  # Zendesk sends UTC; a time without a zone is read as UTC
        created_at = created_at.replace(tzinfo=dt.UTC)
    requester = str(detail.get("requester_id") or "")
    return TicketEvent(
        event_id=str(event_id),
        type=kind,
        ticket_id=ticket_id,
        requester_id=int(requester) if requester.isdigit() else None,
        subject=detail.get("subject"),
        description=detail.get("description"),
        created_at=created_at,
        tags=tuple(detail.get("tags") or ()),
        opened_by_platform=is_platform_ticket(detail),
    )


def fold_in_ticket(row: dict[str, Any], sentiment: float) -> dict[str, Any]:
    """A customer's feature row with one more ticket of this sentiment, counted as the rolling
    features count tickets (features/rolling.py): counts up, mean and minimum updated."""
    folded = dict(row)
    tickets = int(row.get("tickets_30d") or 0)
    mean = row.get("mean_sentiment_30d")
    folded["tickets_7d"] = int(row.get("tickets_7d") or 0) + 1
    folded["tickets_30d"] = tickets + 1
    folded["negative_tickets_30d"] = int(row.get("negative_tickets_30d") or 0) + (
        label_for(sentiment) == "negative"
    )
    folded["mean_sentiment_30d"] = sentiment if mean is None else (mean * tickets + sentiment) / (tickets + 1)
    low = row.get("min_sentiment_30d")
    folded["min_sentiment_30d"] = sentiment if low is None else min(low, sentiment)
    return folded


def risk_tag(probability: float, medium_percent: int, high_percent: int) -> str:
    if probability * 100 >= high_percent:
        return "churn_risk_high"
    if probability * 100 >= medium_percent:
        return "churn_risk_medium"
    return "churn_risk_low"


def write_back_fields(probability: float, tag: str, field_id: int | None) -> dict[str, Any]:
    """The ticket update (Zendesk's Tickets API) that shows the risk: the tag replaces any earlier
    risk tag, the custom field (when configured) holds the probability."""
    fields: dict[str, Any] = {
        "additional_tags": [tag],
        "remove_tags": [t for t in RISK_TAGS if t != tag],
    }
    if field_id is not None:
        fields["custom_fields"] = [{"id": field_id, "value": round(probability, 4)}]
    return fields


# Compare-and-set on the claim: only the request holding it records the outcome or lets it go, so
# a request that outlived its claim cannot overwrite or delete another's.
_IF_HELD_SET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    return 1
end
return 0
"""
_IF_HELD_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class EventLedger:
    """Which events were processed, in Redis: claimed while processing (the claim names its
    holder), then their outcome kept for a week so that a redelivery gets the same answer and
    causes no second write."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def _key(self, event_id: str) -> str:
        return f"{self.prefix}:webhooks:{event_id}"

    def claim(self, event_id: str) -> tuple[str | None, dict[str, Any] | None]:
        """(the claim, None) if this request may process the event; else (None, the stored
        outcome), ``{"status": "processing"}`` while another request holds it."""
        key = self._key(event_id)
        claim = json.dumps({"status": "processing", "holder": uuid.uuid4().hex})
        if self.client.set(key, claim, nx=True, ex=PROCESSING_SECONDS):
            return claim, None
        stored = self.client.get(key)
        outcome = json.loads(stored) if stored else {"status": "processing"}
        return None, {"status": "processing"} if outcome.get("status") == "processing" else outcome

    def complete(self, event_id: str, claim: str, outcome: dict[str, Any]) -> bool:
        """Record the outcome if this claim still holds the event; False if it expired meanwhile."""
        return bool(
            self.client.eval(_IF_HELD_SET, 1, self._key(event_id), claim, json.dumps(outcome), DONE_SECONDS)
        )

    def release(self, event_id: str, claim: str) -> None:
        """Let the event be processed again (by the redelivery), if this claim still holds it."""
        self.client.eval(_IF_HELD_DELETE, 1, self._key(event_id), claim)
