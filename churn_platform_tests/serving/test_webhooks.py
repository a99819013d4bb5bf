"""The CRM loop's plain logic: Zendesk's signature scheme, folding a new ticket into a customer's
features, and the risk shown on the ticket."""

import base64
import datetime as dt
import hashlib
import hmac

import pytest

from churn_platform.crm.webhooks import WebhookRejected, sign, verify
from churn_platform.serving.webhooks import fold_in_ticket, risk_tag, write_back_fields

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
STAMP = "2026-11-25T12:00:00Z"
BODY = b'{"type":"zen:event-type:ticket.created"}'


def test_the_signature_is_zendesks_hmac_of_timestamp_and_body():
    # Zendesk's documented scheme, computed independently: base64(HMAC-SHA256(secret, timestamp + body)).
    expected = base64.b64encode(
        hmac.new(b"s3cret", (STAMP + BODY.decode()).encode(), hashlib.sha256).digest()
    )
    assert sign("s3cret", STAMP, BODY) == expected.decode()
    verify("s3cret", STAMP, BODY, expected.decode(), now=NOW)


@pytest.mark.parametrize(
    ("timestamp", "body", "signature", "says"),
    [
        (STAMP, BODY, None, "unsigned"),
        (None, BODY, "x", "unsigned"),
        (STAMP, BODY, sign("other", STAMP, BODY), "does not match"),
        (STAMP, BODY + b" ", sign("s3cret", STAMP, BODY), "does not match"),
        ("2026-11-25T11:54:59Z", BODY, sign("s3cret", "2026-11-25T11:54:59Z", BODY), "stale"),
        ("2026-11-25T12:05:01Z", BODY, sign("s3cret", "2026-11-25T12:05:01Z", BODY), "stale"),
        ("yesterday", BODY, sign("s3cret", "yesterday", BODY), "not an ISO 8601 time"),
        ("2026-11-25T12:00:00", BODY, sign("s3cret", "2026-11-25T12:00:00", BODY), "no time zone"),
    ],
    ids=[
        "no-signature",
        "no-timestamp",
        "other-secret",
        "altered-body",
        "old",
        "future",
        "bad-time",
        "naive",
    ],
)
def test_deliveries_not_provably_from_zendesk_are_rejected(timestamp, body, signature, says):
    with pytest.raises(WebhookRejected, match=says) as error:
        verify("s3cret", timestamp, body, signature, now=NOW, tolerance_seconds=300)
    assert "s3cret" not in str(error.value)


def test_a_new_ticket_is_counted_as_the_rolling_features_count_it():
    row = {
        "tickets_7d": 1,
        "tickets_30d": 3,
        "negative_tickets_30d": 1,
        "mean_sentiment_30d": 0.2,
        "min_sentiment_30d": -0.1,
        "events_30d": 9,
    }
    folded = fold_in_ticket(row, -0.6)
    assert folded == {
        **row,
        "tickets_7d": 2,
        "tickets_30d": 4,
        "negative_tickets_30d": 2,
        "mean_sentiment_30d": pytest.approx((0.2 * 3 - 0.6) / 4),
        "min_sentiment_30d": -0.6,
    }
    assert row["tickets_30d"] == 3  # the stored row is not changed
    first = fold_in_ticket(
        {
            "tickets_7d": 0,
            "tickets_30d": 0,
            "negative_tickets_30d": 0,
            "mean_sentiment_30d": None,
            "min_sentiment_30d": None,
        },
        0.5,
    )
    assert (first["mean_sentiment_30d"], first["min_sentiment_30d"], first["negative_tickets_30d"]) == (
        0.5,
        0.5,
        0,
    )


def test_the_risk_tag_replaces_earlier_ones_and_the_field_is_written_when_configured():
    assert [risk_tag(p, 20, 50) for p in (0.5, 0.499, 0.2, 0.19)] == [
        "churn_risk_high",
        "churn_risk_medium",
        "churn_risk_medium",
        "churn_risk_low",
    ]
    fields = write_back_fields(0.73456, "churn_risk_high", 360001)
    assert fields == {
        "additional_tags": ["churn_risk_high"],
        "remove_tags": ["churn_risk_medium", "churn_risk_low"],
        "custom_fields": [{"id": 360001, "value": 0.7346}],
    }
    assert "custom_fields" not in write_back_fields(0.1, "churn_risk_low", None)


def test_only_the_request_holding_an_event_records_or_releases_it():
    """The ledger on the Redis server on loopback: a request whose claim expired (a slow write-back)
    can neither overwrite nor delete the outcome of the request that took the event over."""
    import uuid

    import redis

    from churn_platform.serving.webhooks import EventLedger

    client = redis.Redis(host="127.0.0.1", port=6379)
    ledger = EventLedger(client, f"test-{uuid.uuid4().hex[:8]}")
    try:
        first, _ = ledger.claim("e1")
        assert first is not None and ledger.claim("e1") == (None, {"status": "processing"})
        client.delete(ledger._key("e1"))  # the first claim expires while its write-back hangs
        second, _ = ledger.claim("e1")
        assert ledger.complete("e1", second, {"status": "scored", "n": 2})
        assert not ledger.complete("e1", first, {"status": "scored", "n": 1})  # too late: not recorded
        ledger.release("e1", first)  # nor can it delete the outcome
        assert ledger.claim("e1") == (None, {"status": "scored", "n": 2})
        third, _ = ledger.claim("e2")
        ledger.release("e2", third)
        assert ledger.claim("e2")[0] is not None  # released: the redelivery may process it
    finally:
        for key in client.scan_iter(f"{ledger.prefix}:*"):
            client.delete(key)
