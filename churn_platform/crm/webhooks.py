"""Zendesk webhooks: how a delivery is signed and verified, and the event types the platform uses.

Zendesk signs every webhook request with the webhook's signing secret:
``X-Zendesk-Webhook-Signature = base64(HMAC-SHA256(secret, timestamp + raw body))`` and sends the
timestamp (ISO 8601, UTC) in ``X-Zendesk-Webhook-Signature-Timestamp``. A receiver recomputes the
signature over the exact bytes it received and refuses a timestamp too far from its clock, so a
captured delivery cannot be replayed later. The simulator signs with ``sign``; the scoring service
checks with ``verify``.
"""

import base64
import datetime as dt
import hashlib
import hmac

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
WEBHOOK_ID_HEADER = "X-Zendesk-Webhook-Id"

EVENT_PREFIX = "zen:event-type:"
TICKET_CREATED = "zen:event-type:ticket.created"
TICKET_COMMENT_ADDED = "zen:event-type:ticket.comment_added"
TICKET_TAGS_CHANGED = "zen:event-type:ticket.tags_changed"
TICKET_CUSTOM_FIELD_CHANGED = "zen:event-type:ticket.custom_field_changed"
TICKET_STATUS_CHANGED = "zen:event-type:ticket.status_changed"

DEFAULT_TOLERANCE_SECONDS = 300  # how far a signature's timestamp may be from the receiver's clock


class WebhookRejected(ValueError):
    """A delivery that is not provably from the CRM: unsigned, signed with another secret, or stale."""


def timestamp_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(
    secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    now: dt.datetime | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise WebhookRejected unless ``signature`` is the secret's signature of ``timestamp + body``
    and the timestamp is within ``tolerance_seconds`` of ``now``. The reasons name no secret."""
    if not signature or not timestamp:
        raise WebhookRejected(f"unsigned delivery: {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required")
    try:
        signed_at = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        raise WebhookRejected(f"{TIMESTAMP_HEADER} is not an ISO 8601 time") from None
    if signed_at.tzinfo is None:
        raise WebhookRejected(f"{TIMESTAMP_HEADER} has no time zone")
    skew = abs(((now or dt.datetime.now(dt.UTC)) - signed_at).total_seconds())
    if skew > tolerance_seconds:
        raise WebhookRejected(
            f"stale delivery: signed {skew:.0f} s away from this server's clock (tolerance {tolerance_seconds} s)"
        )
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        raise WebhookRejected("the signature does not match the body (wrong secret, or the body was altered)")
