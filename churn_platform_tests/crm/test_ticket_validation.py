"""Ticket times, per-ticket validation (quarantine findings), the platform's own tickets and the
client's same-host rule: one case per row."""

import datetime as dt

import httpx
import pytest

from churn_platform.crm.tickets import (
    IN_THE_FUTURE,
    MAX_PROBLEM_VALUE_CHARS,
    MISSING,
    NOT_A_TAG_LIST,
    NOT_A_TIME,
    NOT_AN_ID,
    NOT_AN_OBJECT,
    NOT_TEXT,
    PLATFORM_TICKET_TAG,
    TicketTimeError,
    is_platform_ticket,
    normalize_tickets,
    parse_ticket_time,
    placement_time,
    ticket_problems,
    validate_tickets,
)
from churn_platform.crm.zendesk_api import (
    CRMForeignLink,
    CRMRequestRefused,
    RetrySettings,
    ZendeskAPI,
)
from churn_platform_tests.support.data import crm_ticket

UTC = dt.UTC
NOW = dt.datetime(2026, 1, 12, 12, 0, tzinfo=UTC)
SKEW = dt.timedelta(minutes=5)


def ticket(**overrides):
    return crm_ticket("2026-01-12", **{"tags": ["billing"], **overrides})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-01-12T10:00:00Z", dt.datetime(2026, 1, 12, 10, tzinfo=UTC)),
        ("2026-01-12T10:00:00.500Z", dt.datetime(2026, 1, 12, 10, 0, 0, 500_000, tzinfo=UTC)),
        ("2026-01-12T10:00:00", dt.datetime(2026, 1, 12, 10, tzinfo=UTC)),  # no zone: UTC
        ("2026-01-12T10:00:00.25", dt.datetime(2026, 1, 12, 10, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-01-12T12:00:00+02:00", dt.datetime(2026, 1, 12, 10, tzinfo=UTC)),
        ("2026-01-12T08:30:00-0130", dt.datetime(2026, 1, 12, 10, tzinfo=UTC)),
        ("2026-01-12 15:00:00+05", dt.datetime(2026, 1, 12, 10, tzinfo=UTC)),
        ("2026-01-12T10:00:00.123456789Z", dt.datetime(2026, 1, 12, 10, 0, 0, 123_456, tzinfo=UTC)),
        ("2026-01-12t10:00:00z", dt.datetime(2026, 1, 12, 10, tzinfo=UTC)),
    ],
)
def test_ticket_times_parse_to_utc(text, expected):
    parsed = parse_ticket_time(text)
    assert parsed == expected and parsed.tzinfo == UTC


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-12",  # a date is not a time
        "2026-13-12T10:00:00Z",
        "2026-01-12T24:00:00Z",
        "2026-01-12T10:00:00+24:00",
        "12/01/2026 10:00",
        "yesterday",
        "",
        " 2026-01-12T10:00:00Z",
        1768212000,  # an epoch number
        None,
    ],
)
def test_unparseable_times_name_ticket_field_and_value(value):
    with pytest.raises(TicketTimeError) as raised:
        parse_ticket_time(value, ticket_id=77, field="created_at")
    message = str(raised.value)
    assert "ticket 77" in message and "created_at" in message
    assert raised.value.value == value


FUTURE = "2026-01-12T12:06:00Z"  # 6 minutes beyond NOW: more than the 5 allowed
WITHIN_SKEW = "2026-01-12T12:04:00Z"


@pytest.mark.parametrize(
    "overrides, expected",  # expected: [] (kept) or [(field, rule, value)]
    [
        ({}, []),
        ({"updated_at": "2026-01-12T10:00:00"}, []),  # no zone: UTC
        ({"updated_at": WITHIN_SKEW}, []),  # within the clock-skew allowance
        ({"requester_id": "42"}, []),  # Zendesk sends some ids as strings of digits
        ({"description": None}, []),  # no first-comment body
        ({"priority": None, "type": None, "tags": None, "satisfaction_rating": {}}, []),
        ({"requester_id": None}, [("requester_id", MISSING, "null")]),
        ({"requester_id": "12.7"}, [("requester_id", NOT_AN_ID, '"12.7"')]),
        ({"requester_id": 12.7}, [("requester_id", NOT_AN_ID, "12.7")]),
        ({"requester_id": 12.0}, [("requester_id", NOT_AN_ID, "12.0")]),
        ({"requester_id": "abc"}, [("requester_id", NOT_AN_ID, '"abc"')]),
        ({"requester_id": " 42"}, [("requester_id", NOT_AN_ID, '" 42"')]),
        ({"requester_id": "042"}, [("requester_id", NOT_AN_ID, '"042"')]),
        ({"requester_id": -3}, [("requester_id", NOT_AN_ID, "-3")]),
        ({"requester_id": True}, [("requester_id", NOT_AN_ID, "true")]),
        ({"requester_id": 2**63}, [("requester_id", NOT_AN_ID, str(2**63))]),
        ({"updated_at": "yesterday"}, [("updated_at", NOT_A_TIME, '"yesterday"')]),
        ({"updated_at": FUTURE}, [("updated_at", IN_THE_FUTURE, f'"{FUTURE}"')]),
        ({"created_at": FUTURE}, [("created_at", IN_THE_FUTURE, f'"{FUTURE}"')]),
        ({"created_at": None}, [("created_at", MISSING, "null")]),
        ({"subject": 123}, [("subject", NOT_TEXT, "123")]),
        ({"status": ""}, [("status", MISSING, '""')]),
        ({"status": ["open"]}, [("status", NOT_TEXT, '["open"]')]),
        ({"priority": 3}, [("priority", NOT_TEXT, "3")]),
        ({"tags": "billing vip"}, [("tags", NOT_A_TAG_LIST, '"billing vip"')]),
        ({"tags": ["ok", 5]}, [("tags", NOT_A_TAG_LIST, '["ok", 5]')]),
        ({"satisfaction_rating": "good"}, [("satisfaction_rating", NOT_AN_OBJECT, '"good"')]),
        (
            {"requester_id": None, "updated_at": "soon"},
            [("requester_id", MISSING, "null"), ("updated_at", NOT_A_TIME, '"soon"')],
        ),
    ],
)
def test_each_malformed_field_is_one_problem_naming_ticket_field_rule_and_value(overrides, expected):
    record = ticket(id=5, **overrides)
    good, problems = validate_tickets([record], now=NOW, max_future_skew=SKEW)
    assert [(p["field"], p["rule"], p["value"]) for p in problems] == expected
    assert all(p["ticket_id"] == 5 for p in problems)
    assert good == ([] if expected else [record])


@pytest.mark.parametrize(
    "record, expected",
    [
        ({k: v for k, v in ticket().items() if k != "id"}, [(None, "id", MISSING, "(absent)")]),
        (ticket(id="x7"), [(None, "id", NOT_AN_ID, '"x7"')]),
        (ticket(id=1.5), [(None, "id", NOT_AN_ID, "1.5")]),
        (
            {k: v for k, v in ticket().items() if k != "description"},
            [(1, "description", MISSING, "(absent)")],
        ),
        ("not a ticket", [(None, "(ticket)", NOT_AN_OBJECT, '"not a ticket"')]),
    ],
)
def test_tickets_without_a_usable_id_or_shape_are_problems_too(record, expected):
    problems = ticket_problems(record, NOW, SKEW)
    assert [(p["ticket_id"], p["field"], p["rule"], p["value"]) for p in problems] == expected


def test_a_problem_value_is_truncated_text():
    (problem,) = ticket_problems(ticket(subject={"x": "y" * 10_000}))
    assert problem["rule"] == NOT_TEXT and len(problem["value"]) == MAX_PROBLEM_VALUE_CHARS
    assert problem["value"].endswith("…")


def test_without_now_future_times_are_not_checked_and_normalize_reads_all_zones():
    frame = normalize_tickets(
        [
            ticket(id=1, updated_at="2099-01-01T00:00:00Z"),
            ticket(id=2, updated_at="2026-01-12T23:30:00-01:00"),  # 2026-01-13 00:30 UTC
            ticket(id=3, updated_at="2026-01-12T10:00:00"),
        ]
    )
    assert frame["updated_at"].dt.tz is not None
    assert frame["updated_date"].tolist() == [dt.date(2099, 1, 1), dt.date(2026, 1, 13), dt.date(2026, 1, 12)]


def test_versions_are_ordered_by_parsed_time_and_a_tie_keeps_the_later_record():
    frame = normalize_tickets(
        [
            ticket(id=1, status="solved", updated_at="2026-01-12T10:00:00.500Z"),
            ticket(id=1, status="open", updated_at="2026-01-12T10:00:00Z"),  # older, though later
            ticket(id=2, status="open", updated_at="2026-01-12T12:00:00+02:00"),
            ticket(id=2, status="pending", updated_at="2026-01-12T10:00:00Z"),  # the same instant
        ]
    )
    assert dict(zip(frame.ticket_id, frame.status, strict=True)) == {1: "solved", 2: "pending"}


@pytest.mark.parametrize(
    "record, expected",
    [
        (ticket(), dt.datetime(2026, 1, 12, 10, tzinfo=UTC)),
        (
            ticket(updated_at="2026-01-12T10:00:00", generated_timestamp=0),
            dt.datetime(2026, 1, 12, 10, tzinfo=UTC),
        ),
        # updated_at cannot be trusted: Zendesk's generated_timestamp places the ticket instead
        (
            ticket(updated_at="soon", generated_timestamp=1768200000),
            dt.datetime(2026, 1, 12, 6, 40, tzinfo=UTC),
        ),
        (
            ticket(updated_at=FUTURE, generated_timestamp=1768200000),
            dt.datetime(2026, 1, 12, 6, 40, tzinfo=UTC),
        ),
        (ticket(updated_at=FUTURE), None),  # nothing places it: kept by every window
        (ticket(updated_at="soon", generated_timestamp="1768200000"), None),
        ("not a ticket", None),
    ],
)
def test_placement_time(record, expected):
    assert placement_time(record, NOW, SKEW) == expected


@pytest.mark.parametrize(
    "record, expected",
    [
        (ticket(), False),
        (ticket(tags=["churn_platform", PLATFORM_TICKET_TAG]), True),
        (ticket(tags=f"a {PLATFORM_TICKET_TAG}"), True),
        (ticket(tags=[], external_id="churn_platform_alert:0f3a"), True),  # an agent removed the tag
        (ticket(external_id="crm-123"), False),
        (ticket(tags=["churn_platform_alerts"]), False),
        ("not a ticket", False),
    ],
)
def test_platform_tickets_are_recognised_by_tag_or_external_id(record, expected):
    assert is_platform_ticket(record) is expected


BASE = "https://acme.zendesk.com"


@pytest.mark.parametrize(
    "url, foreign",
    [
        (f"{BASE}/api/v2/incremental/tickets/cursor.json?cursor=x", None),
        ("https://ACME.zendesk.com:443/api/v2/tickets.json", None),  # the same origin, spelled out
        ("https://evil.example/api/v2/incremental/tickets/cursor.json", "https://evil.example"),
        ("http://acme.zendesk.com/api/v2/tickets.json", "http://acme.zendesk.com"),  # downgrade
        ("https://acme.zendesk.com:8443/api/v2/tickets.json", "https://acme.zendesk.com:8443"),
        ("https://acme.zendesk.com.evil.example/x", "https://acme.zendesk.com.evil.example"),
        ("https://user:pw@evil.example/x", "https://evil.example"),  # user info never echoed
    ],
)
def test_requests_stay_on_the_configured_scheme_host_and_port(url, foreign):
    api = ZendeskAPI(BASE, "Bearer tok-secret-1")
    if foreign is None:
        api._check_origin(url, "request URL")
        return
    with pytest.raises(CRMForeignLink) as raised:
        api._check_origin(url, "request URL")
    message = str(raised.value)
    assert foreign in message and BASE in message and "tok-secret-1" not in message
    assert "pw" not in message and "user" not in message
    assert isinstance(raised.value, CRMRequestRefused)  # so the asset does not retry it


@pytest.mark.parametrize(
    "status, location, expected",
    [
        (302, "https://evil.example/steal", "answered 302 redirecting to https://evil.example"),
        (301, "/api/v2/elsewhere.json", "answered 301 redirecting to https://acme.zendesk.com"),
        (307, None, "answered 307 redirecting to no Location"),
    ],
)
def test_redirects_are_refused_not_followed_nor_retried(status, location, expected):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(status, headers={"Location": location} if location else {})

    api = ZendeskAPI(BASE, "Bearer tok-secret-1", retry=RetrySettings(max_attempts=5))
    api._client = httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=False)
    with pytest.raises(CRMRequestRefused, match=expected) as raised:
        api.export_tickets(dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert len(seen) == 1 and "tok-secret-1" not in str(raised.value)
