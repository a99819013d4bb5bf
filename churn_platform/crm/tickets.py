"""Normalising Zendesk-shaped ticket records into the raw/crm_tickets table.

- Times: ``parse_ticket_time`` is the one parser of ticket times (export de-duplication, the
  partition window, the table). ISO 8601 with or without fractional seconds (kept to the
  microsecond), with ``Z`` or an offset; **a time without a zone is UTC**.
- Validation: ``validate_tickets`` splits records into good ones and per-ticket problems
  ``{"ticket_id", "field", "rule", "value"}`` (see ``RULES``); nothing is coerced (a
  ``requester_id`` of ``12.7`` or ``"12.7"`` is a problem, not customer 12 or 13).
- Platform tickets: tickets the platform opens itself (failure alerts) carry ``PLATFORM_TICKET_TAG``
  and an ``external_id`` starting with ``PLATFORM_EXTERNAL_ID_PREFIX``; ``is_platform_ticket``
  recognises either mark and raw/crm_tickets leaves them out.
"""

from __future__ import annotations

import datetime as dt
import json
import re
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

# The mark of tickets the platform opens itself (failure alerts): the tag, and the external_id's
# prefix (an agent may edit tags; the external id stays). raw/crm_tickets excludes such tickets.
PLATFORM_TICKET_TAG = "churn_platform_alert"
PLATFORM_EXTERNAL_ID_PREFIX = "churn_platform_alert:"

# A ticket's updated_at (or created_at) may lie this far beyond the platform's clock (clock skew)
# before it counts as "in the future". CHURN_CRM_CLOCK_SKEW_SECONDS sets it for raw/crm_tickets.
DEFAULT_MAX_FUTURE_SKEW = dt.timedelta(minutes=5)
MAX_PROBLEM_VALUE_CHARS = 200  # a problem's value (JSON text) is cut to this length

# Problem rules: what is wrong with a field.
MISSING = "missing"  # a required field is absent or null (status also when empty)
NOT_AN_ID = "not_an_id"  # id / requester_id is not a positive whole number (int, or a string of digits)
NOT_A_TIME = "not_a_time"  # created_at / updated_at is not an ISO 8601 time
IN_THE_FUTURE = "in_the_future"  # created_at / updated_at is later than now + the allowed clock skew
NOT_TEXT = "not_text"  # subject, status, description, priority or type is not a string
NOT_A_TAG_LIST = "not_a_tag_list"  # tags is not null and not a list of strings
NOT_AN_OBJECT = "not_an_object"  # the ticket, or satisfaction_rating (null or an object), is not an object
RULES = (MISSING, NOT_AN_ID, NOT_A_TIME, IN_THE_FUTURE, NOT_TEXT, NOT_A_TAG_LIST, NOT_AN_OBJECT)

_INT64_MAX = 2**63 - 1
_ID_TEXT = re.compile(r"[1-9][0-9]{0,18}")
_ISO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<oh>\d{2})(?::?(?P<om>\d{2}))?)?"
)
_ABSENT = object()


class TicketSchemaError(ValueError):
    """Tickets without the fields the platform relies on, or with malformed ones."""


class TicketTimeError(TicketSchemaError):
    """A ticket time that is not ISO 8601; names the ticket, the field and the value."""

    def __init__(self, ticket_id: Any, field: str, value: Any):
        super().__init__(
            f"ticket {ticket_id}: {field} {_as_text(value)} is not an ISO 8601 time "
            "(YYYY-MM-DDTHH:MM:SS[.fraction][Z|+HH:MM])"
        )
        self.ticket_id, self.field, self.value = ticket_id, field, value


def parse_ticket_time(value: Any, ticket_id: Any = None, field: str = "updated_at") -> dt.datetime:
    """A ticket time as an aware UTC datetime.

    Accepts ISO 8601 ``YYYY-MM-DDTHH:MM:SS`` (``T``, ``t`` or a space between date and time), with
    or without fractional seconds (up to 9 digits, truncated to microseconds), followed by ``Z``,
    an offset (``+HH:MM``, ``+HHMM``, ``+HH``) or nothing: **a time without a zone is taken as
    UTC** (Zendesk always sends ``Z``; other exporters drop it). Anything else raises
    ``TicketTimeError`` naming ``ticket_id``, ``field`` and the value.
    """
    match = _ISO_TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise TicketTimeError(ticket_id, field, value)
    year, month, day, hour, minute, second, fraction = match.groups()[:7]
    try:
        zone = dt.UTC
        if match["sign"]:
            hours, minutes = int(match["oh"]), int(match["om"] or 0)
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            offset = dt.timedelta(hours=hours, minutes=minutes)
            zone = dt.timezone(-offset if match["sign"] == "-" else offset)
        micro = int((fraction or "0").ljust(6, "0")[:6])
        parsed = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=zone
        )
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise TicketTimeError(ticket_id, field, value) from None


def try_parse_ticket_time(value: Any) -> dt.datetime | None:
    """``parse_ticket_time``, or None for a value it refuses."""
    try:
        return parse_ticket_time(value)
    except TicketTimeError:
        return None


def ticket_key(value: Any) -> int | None:
    """An id (ticket or requester) as an int: a positive int, or a string of decimal digits without
    sign, spaces or leading zeros, within int64. None for anything else (floats, "12.7", True, ...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 1 <= value <= _INT64_MAX else None
    if isinstance(value, str) and _ID_TEXT.fullmatch(value):
        number = int(value)
        return number if number <= _INT64_MAX else None
    return None


def placement_time(
    record: Any, now: dt.datetime | None = None, max_future_skew: dt.timedelta = DEFAULT_MAX_FUTURE_SKEW
) -> dt.datetime | None:
    """The time that places a ticket in a daily partition: its ``updated_at``. When that cannot be
    trusted (unparseable, or later than ``now`` + ``max_future_skew``) Zendesk's
    ``generated_timestamp`` (when the CRM last changed the ticket) places it instead, so that the
    ticket is quarantined in one partition rather than dropped; None when neither is usable."""
    if not isinstance(record, dict):
        return None
    when = try_parse_ticket_time(record.get("updated_at"))
    if when is not None and (now is None or when <= now + max_future_skew):
        return when
    stamp = record.get("generated_timestamp")
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        try:
            return dt.datetime.fromtimestamp(stamp, dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def is_platform_ticket(record: Any) -> bool:
    """Whether the platform opened this ticket itself (see ``PLATFORM_TICKET_TAG``)."""
    if not isinstance(record, dict):
        return False
    tags = record.get("tags")
    tag_list = tags.split() if isinstance(tags, str) else tags if isinstance(tags, list) else []
    external_id = record.get("external_id")
    return PLATFORM_TICKET_TAG in tag_list or (
        isinstance(external_id, str) and external_id.startswith(PLATFORM_EXTERNAL_ID_PREFIX)
    )


def ticket_problems(
    record: Any, now: dt.datetime | None = None, max_future_skew: dt.timedelta = DEFAULT_MAX_FUTURE_SKEW
) -> list[dict[str, Any]]:
    """What is wrong with one ticket record: ``[{"ticket_id", "field", "rule", "value"}]``, empty
    when it can be ingested. ``ticket_id`` is None when the id itself is unusable; ``value`` is the
    offending value as JSON text (``"(absent)"`` for a missing key), cut to
    MAX_PROBLEM_VALUE_CHARS. ``now``: also check that times are not in the future."""
    if not isinstance(record, dict):
        return [_problem(None, "(ticket)", NOT_AN_OBJECT, record)]
    ticket_id = ticket_key(record.get("id"))
    problems: list[dict[str, Any]] = []

    def check(field: str, rule: str | None) -> None:
        if rule is not None:
            problems.append(_problem(ticket_id, field, rule, record.get(field, _ABSENT)))

    for field in ("id", "requester_id"):
        value = record.get(field)
        check(field, MISSING if value is None else NOT_AN_ID if ticket_key(value) is None else None)
    for field in ("subject", "status"):
        value = record.get(field)
        missing = value is None or (field == "status" and value == "")
        check(field, MISSING if missing else None if isinstance(value, str) else NOT_TEXT)
    if "description" not in record:  # null is allowed (no first comment body), an absent key is not
        check("description", MISSING)
    for field in ("description", "priority", "type"):
        value = record.get(field)
        check(field, None if value is None or isinstance(value, str) else NOT_TEXT)
    tags = record.get("tags")
    tags_ok = tags is None or (isinstance(tags, list) and all(isinstance(t, str) for t in tags))
    check("tags", None if tags_ok else NOT_A_TAG_LIST)
    rating = record.get("satisfaction_rating")
    check("satisfaction_rating", None if rating is None or isinstance(rating, dict) else NOT_AN_OBJECT)
    for field in ("created_at", "updated_at"):
        value = record.get(field)
        when = try_parse_ticket_time(value)
        if value is None:
            check(field, MISSING)
        elif when is None:
            check(field, NOT_A_TIME)
        elif now is not None and when > now + max_future_skew:
            check(field, IN_THE_FUTURE)
    return problems


def validate_tickets(
    records: Iterable[Any],
    now: dt.datetime | None = None,
    max_future_skew: dt.timedelta = DEFAULT_MAX_FUTURE_SKEW,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(good_tickets, problems)``: the records ``normalize_tickets`` can ingest, and one problem
    per malformed field of the others (see ``ticket_problems``). A record with any problem is left
    out whole. With ``now``, a ticket updated (or created) later than ``now`` + ``max_future_skew``
    is a problem too."""
    good, problems = [], []
    for record in records:
        found = ticket_problems(record, now, max_future_skew)
        if found:
            problems.extend(found)
        else:
            good.append(record)
    return good, problems


def describe_problems(problems: list[dict[str, Any]], limit: int = 5) -> str:
    """``field rule (tickets [...], e.g. value)`` per kind of problem, for messages."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for problem in problems:
        groups.setdefault((problem["field"], problem["rule"]), []).append(problem)
    parts = []
    for (field, rule), found in list(groups.items())[:limit]:
        ids = [p["ticket_id"] for p in found[:limit]] + (["..."] if len(found) > limit else [])
        example = found[0]["value"][:60]
        parts.append(f"{field} {rule} (tickets {ids}, e.g. {example})")
    if len(groups) > limit:
        parts.append(f"and {len(groups) - limit} more kinds")
    return "; ".join(parts)


def normalize_tickets(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Typed tickets, the latest version of each id (by parsed ``updated_at``; a tie keeps the
    later record). Unknown fields are ignored on purpose. Malformed records raise
    ``TicketSchemaError`` naming the problems: split them off first with ``validate_tickets``."""
    records = list(records)
    if not records:
        return empty_tickets()
    _, problems = validate_tickets(records)
    if problems:
        raise TicketSchemaError(f"malformed tickets: {describe_problems(problems)}")

    frame = pd.DataFrame(
        {
            "ticket_id": [ticket_key(r["id"]) for r in records],
            "customer_id": [ticket_key(r["requester_id"]) for r in records],
            "subject": [r["subject"] for r in records],
            "description": [r.get("description") or "" for r in records],
            "status": [r["status"] for r in records],
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


def _problem(ticket_id: int | None, field: str, rule: str, value: Any) -> dict[str, Any]:
    return {"ticket_id": ticket_id, "field": field, "rule": rule, "value": _as_text(value)}


def _as_text(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:  # e.g. a circular structure
        text = repr(value)
    if len(text) > MAX_PROBLEM_VALUE_CHARS:
        text = text[: MAX_PROBLEM_VALUE_CHARS - 1] + "…"
    return text


def _satisfaction(rating: Any) -> str | None:
    # Zendesk sends null, {} (not offered) or {"score": ...}.
    if isinstance(rating, dict):
        score = rating.get("score")
        return score if isinstance(score, str) else None
    return None


def _timestamps(records: list[dict], field: str) -> pd.Series:
    values = [parse_ticket_time(r[field], r.get("id"), field) for r in records]
    return pd.Series(pd.DatetimeIndex(values)).astype("datetime64[us, UTC]")
