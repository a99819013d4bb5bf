"""A seeded generator of customers, product events and support tickets with a learnable churn signal.

Each customer has a plan, a base activity rate and possibly a churn day. From about five weeks
before churning, a churner's activity fades and they open more, angrier tickets; on the churn day
they emit a ``cancel_subscription`` event and fall silent. Noise keeps the problem honest: some
churners leave without warning and some loyal customers go through a bad patch.

The data come as a stream (``iter_days``): one day at a time, each day's events as columnar numpy
arrays, so a dataset of any length is generated in the memory of one day (plus its tickets, which
are few). ``generate`` collects a whole stream for callers that want everything at once.

The random draws are made in exactly the order of the original per-event generator, so a seed
gives byte-for-byte the files it always gave (``churn_platform_tests/synthetic`` checks this
against a copy of that generator and against digests of its output).
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn_platform.synthetic import text

EVENT_TYPES = np.array(["login", "page_view", "feature_use", "support_visit", "purchase"])
EVENT_TYPE_P = np.array([0.20, 0.45, 0.25, 0.05, 0.05])
PLANS = np.array(["basic", "pro", "enterprise"])
PLAN_P = np.array([0.5, 0.35, 0.15])
# Probability of churning within 180 days, by plan.
PLAN_CHURN_P = {"basic": 0.36, "pro": 0.26, "enterprise": 0.12}
DECLINE_DAYS = 35
SECONDS_PER_DAY = 86_400
SESSION_SECONDS = 3 * 3600  # a new session every 3 hours of the day

# Event type codes of GeneratedDay.event_type: EVENT_TYPES' positions, then the cancellation.
EVENT_TYPE_NAMES: tuple[str, ...] = (*(str(t) for t in EVENT_TYPES), "cancel_subscription")
PURCHASE = EVENT_TYPE_NAMES.index("purchase")
CANCEL = EVENT_TYPE_NAMES.index("cancel_subscription")
# The cancellation is the day's last event: 30 s before midnight, after every other event (those
# fall in the first SECONDS_PER_DAY - 60 seconds), in a session of its own.
CANCEL_SECOND = SECONDS_PER_DAY - 30
CANCEL_SESSION = "cancel"

MOODS = ("negative", "neutral", "positive")
PRIORITIES = ("low", "normal", "high", "urgent")
_TICKET_POOLS = {
    "negative": (text.NEGATIVE_SUBJECTS, text.NEGATIVE_BODIES),
    "neutral": (text.NEUTRAL_SUBJECTS, text.NEUTRAL_BODIES),
    "positive": (text.POSITIVE_SUBJECTS, text.POSITIVE_BODIES),
}
_NS = 1_000_000_000


def _choice_cdf(p: list[float]) -> list[float]:
    """The cumulative distribution ``Generator.choice(a, p=p)`` searches, computed the way numpy
    computes it, so that ``bisect_right(cdf, rng.random())`` draws exactly what it would draw
    (one uniform, no array allocations: the ticket loop makes several such draws per ticket)."""
    cdf = np.asarray(p, dtype=np.float64).cumsum()
    cdf /= cdf[-1]
    return cdf.tolist()


_MOOD_CDF = {True: _choice_cdf([0.75, 0.2, 0.05]), False: _choice_cdf([0.2, 0.5, 0.3])}
_PRIORITY_CDF = {True: _choice_cdf([0.1, 0.3, 0.4, 0.2]), False: _choice_cdf([0.3, 0.6, 0.1, 0.0])}


@dataclass(frozen=True, eq=False)
class GeneratedDay:
    """One day's events, columnar, in file order (by timestamp, then customer id)."""

    date: dt.date
    customer_id: np.ndarray  # int64
    event_type: np.ndarray  # int8 codes into EVENT_TYPE_NAMES
    second: np.ndarray  # int32 seconds after midnight UTC (timestamps are whole seconds)
    plan: np.ndarray  # int8 codes into PLANS: the customer's plan
    amount: np.ndarray  # float64, rounded to cents; written for purchases only
    texts: _LineTexts = field(repr=False)  # the stream's pieces of JSON text

    def __len__(self) -> int:
        return len(self.customer_id)

    def split_at(self, second: int) -> int:
        """The index of the first event at or after ``second`` (the events are in time order)."""
        return int(np.searchsorted(self.second, second, side="left"))

    def to_jsonl(self, start: int = 0, stop: int | None = None) -> bytes:
        """Events ``start:stop`` as JSON lines, byte for byte what ``events_to_jsonl`` writes."""
        stop = len(self) if stop is None else stop
        return self.texts.encode(self, start, stop) if start < stop else b""

    @functools.cached_property
    def events(self) -> pd.DataFrame:
        """The day as a DataFrame (customer_id, event_type, timestamp, properties as dicts), for
        callers and tests that want rows; building it costs a Python dict per event."""
        day_start = pd.Timestamp(self.date, tz="UTC")
        session = np.array(_SESSIONS)[_session_index(self.event_type, self.second)]
        date = f"{self.date:%Y%m%d}"
        properties = []
        for cid, etype, sess, plan, amount in zip(
            self.customer_id.tolist(),
            self.event_type.tolist(),
            session.tolist(),
            self.plan.tolist(),
            self.amount.tolist(),
            strict=True,
        ):
            props: dict[str, Any] = {"session_id": f"{cid}-{date}-{sess}", "plan": str(PLANS[plan])}
            if etype == PURCHASE:
                props["amount"] = amount
            properties.append(props)
        return pd.DataFrame(
            {
                "customer_id": self.customer_id.astype(np.int64),
                "event_type": np.array(EVENT_TYPE_NAMES, dtype=object)[self.event_type],
                "timestamp": day_start + pd.to_timedelta(self.second.astype(np.int64), unit="s"),
                "properties": pd.Series(properties, dtype=object),
            }
        )


@dataclass(frozen=True)
class GeneratedData:
    start_date: dt.date
    days: int
    customers: pd.DataFrame  # customer_id, plan, churn_day (NaN = no churn in horizon)
    event_days: list[GeneratedDay]
    tickets: list[dict]  # Zendesk-shaped ticket records, current state

    @property
    def end_date(self) -> dt.date:
        return self.start_date + dt.timedelta(days=self.days - 1)


class DayStream:
    """A dataset generated one day at a time: iterate it (once) for the days; ``customers`` is
    known from the start, the tickets once the last day has been generated.

    Memory: the customers' arrays, the day being generated and the tickets so far (about one per
    50 customer-days, kept as the export's JSON lines: ~650 bytes each, a third of a dict)."""

    def __init__(
        self, start_date: dt.date, days: int, customers: int, seed: int, horizon_days: int | None = None
    ) -> None:
        horizon_days = days if horizon_days is None else horizon_days
        if days < 1 or customers < 1:
            raise ValueError("days and customers must be positive")
        if horizon_days < days:
            raise ValueError(f"horizon_days ({horizon_days}) must be at least days ({days})")
        self.start_date, self.days, self.horizon_days = start_date, days, horizon_days
        self._rng = rng = np.random.default_rng(seed)
        self._ids = ids = np.arange(1, customers + 1, dtype=np.int64)
        # Codes rather than strings: choice(len, p) makes the same draw as choice(PLANS, p).
        self._plan_code = rng.choice(len(PLANS), size=customers, p=PLAN_P).astype(np.int8)
        plans = PLANS[self._plan_code]
        self._base_rate = rng.gamma(shape=2.0, scale=2.0, size=customers) + 0.5  # events per day

        # Churn day relative to start; churners whose day falls past the horizon are unobserved.
        churn_p = np.array([PLAN_CHURN_P[str(p)] for p in PLANS])[self._plan_code]
        horizon = horizon_days + 60
        will_churn = rng.random(customers) < churn_p * horizon / 180
        self._churn_day = np.where(will_churn, rng.integers(5, horizon, size=customers), -1)
        self._silent = will_churn & (rng.random(customers) < 0.15)  # leave with no warning signs
        self._bad_patch_start = np.where(
            ~will_churn & (rng.random(customers) < 0.12),
            rng.integers(0, horizon_days, size=customers),
            -10_000,
        )
        self.customers = pd.DataFrame(
            {
                "customer_id": ids,
                "plan": plans,
                "churn_day": np.where(self._churn_day >= 0, self._churn_day, np.nan),
                "silent_churner": self._silent,
            }
        )
        self._texts = _LineTexts(ids, [start_date + dt.timedelta(days=d) for d in range(days)])
        self._ticket_lines = bytearray()
        self.ticket_count = 0
        self._started = self._finished = False

    @property
    def end_date(self) -> dt.date:
        return self.start_date + dt.timedelta(days=self.days - 1)

    @property
    def tickets(self) -> list[dict]:
        """Every ticket, as it stands at the end of the last day."""
        return [json.loads(line) for line in bytes(self.tickets_jsonl).splitlines()]

    @property
    def tickets_jsonl(self) -> memoryview:
        """The ticket export's content: every ticket as a line of JSON, as
        ``crm.export.write_export`` writes it (no copy: a read-only view)."""
        if not self._finished:
            raise RuntimeError("the tickets are known once every day of the stream has been generated")
        return memoryview(self._ticket_lines).toreadonly()

    def __iter__(self) -> Iterator[GeneratedDay]:
        # One random stream feeds every day in turn, so the days can only be drawn once, in order.
        if self._started:
            raise RuntimeError("a DayStream is iterated once; create another for a second pass")
        self._started = True
        return self._days()

    def _days(self) -> Iterator[GeneratedDay]:
        rng, ids, churn_day = self._rng, self._ids, self._churn_day
        start_s = _epoch_seconds(self.start_date)
        horizon_end_ns = (start_s + self.horizon_days * SECONDS_PER_DAY) * _NS
        # Tickets are as they stand at the end of the last day; that end is known now, so each
        # ticket is final when drawn (an update after it has not happened yet).
        as_of = _iso_seconds(start_s + self.days * SECONDS_PER_DAY)
        next_ticket_id = 1
        for day in range(self.days):
            date = self.start_date + dt.timedelta(days=day)
            alive = (churn_day < 0) | (day <= churn_day)
            to_churn = churn_day - day
            fading = (churn_day >= 0) & ~self._silent & (to_churn >= 0) & (to_churn < DECLINE_DAYS)
            in_bad_patch = (day >= self._bad_patch_start) & (day < self._bad_patch_start + 20)
            factor = np.ones(len(ids))
            factor[fading] = 0.15 + 0.85 * to_churn[fading] / DECLINE_DAYS
            factor[in_bad_patch] *= 0.55
            weekday = 0.65 if date.weekday() >= 5 else 1.0
            counts = rng.poisson(self._base_rate * factor * weekday) * alive
            events = self._events_for_day(date, counts, churn_day == day)

            upset = fading | in_bad_patch
            ticket_rate = np.where(upset, 0.12, 0.015) * alive
            n_tickets = rng.poisson(ticket_rate)
            day_start_s = start_s + day * SECONDS_PER_DAY
            for idx in np.nonzero(n_tickets)[0].tolist():
                for _ in range(int(n_tickets[idx])):
                    ticket = _ticket(
                        rng,
                        next_ticket_id,
                        int(ids[idx]),
                        day_start_s,
                        upset=bool(upset[idx]),
                        horizon_end_ns=horizon_end_ns,
                        as_of=as_of,
                    )
                    # write_export's line format: the tickets' memory stays a third of dicts'.
                    self._ticket_lines += json.dumps(ticket, separators=(",", ":")).encode() + b"\n"
                    self.ticket_count += 1
                    next_ticket_id += 1
            yield events
        self._finished = True

    def _events_for_day(self, date: dt.date, counts: np.ndarray, churns_today: np.ndarray) -> GeneratedDay:
        rng = self._rng
        n_customers = len(self._ids)
        customer_idx = np.repeat(np.arange(n_customers), counts)
        n = len(customer_idx)
        # The same three draws, in the same order and sizes, as the per-event generator made.
        offsets = rng.integers(0, SECONDS_PER_DAY - 60, size=n)
        event_types = rng.choice(len(EVENT_TYPES), size=n, p=EVENT_TYPE_P)
        amounts = np.round(rng.lognormal(mean=3.0, sigma=0.6, size=n), 2)

        # File order: by time, then customer; events of one customer in the same second keep their
        # draw order (the stable sort by (timestamp, customer) the per-event generator did).
        # customer_idx is ascending, so a stable sort by time alone gives exactly that order.
        order = _stable_argsort_seconds(offsets)
        cancelled = np.nonzero(churns_today)[0]  # ascending: cancellations come last, by customer
        customer_idx = np.concatenate([customer_idx[order], cancelled])
        return GeneratedDay(
            date=date,
            customer_id=self._ids[customer_idx],
            event_type=np.concatenate(
                [event_types[order].astype(np.int8), np.full(len(cancelled), CANCEL, np.int8)]
            ),
            second=np.concatenate(
                [offsets[order].astype(np.int32), np.full(len(cancelled), CANCEL_SECOND, np.int32)]
            ),
            plan=self._plan_code[customer_idx],
            amount=np.concatenate([amounts[order], np.zeros(len(cancelled))]),
            texts=self._texts,
        )


def _stable_argsort_seconds(seconds: np.ndarray) -> np.ndarray:
    """``np.argsort(seconds, kind="stable")`` for 0 <= seconds < 2**24, ~15x faster: numpy sorts
    8- and 16-bit keys stably by radix, so sort by the low 16 bits, then (stably) by the rest."""
    order = np.argsort((seconds & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((seconds[order] >> 16).astype(np.uint8), kind="stable")]


def iter_days(
    start_date: dt.date, days: int, customers: int, seed: int, horizon_days: int | None = None
) -> DayStream:
    """The dataset ``generate`` returns, as a stream of days (see ``DayStream``)."""
    return DayStream(start_date, days, customers, seed, horizon_days)


def generate(
    start_date: dt.date, days: int, customers: int, seed: int, horizon_days: int | None = None
) -> GeneratedData:
    """``days`` days of data from ``start_date``, all in memory (``iter_days`` streams them).
    ``horizon_days`` (>= days; default: days) is the span the customers' lives are drawn for: the
    data of the first ``days`` days of a horizon does not depend on ``days``, so a dataset can grow
    a day at a time (``generate --append-day``) and every landed day stays what it was. Tickets are
    as they stand at the end of the last day."""
    stream = iter_days(start_date, days, customers, seed, horizon_days)
    event_days = list(stream)
    return GeneratedData(start_date, days, stream.customers, event_days, stream.tickets)


def _epoch_seconds(date: dt.date) -> int:
    return (date - dt.date(1970, 1, 1)).days * SECONDS_PER_DAY


def _iso_seconds(epoch_seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


def _ticket(
    rng: np.random.Generator,
    ticket_id: int,
    customer_id: int,
    day_start_s: int,
    upset: bool,
    horizon_end_ns: int,
    as_of: str,
) -> dict[str, Any]:
    """One ticket. Draws (in this order) what the original made with ``rng.choice`` and pandas
    timestamps, with plain floats and integer nanoseconds: the same values, ~6x faster."""
    mood = MOODS[bisect.bisect_right(_MOOD_CDF[upset], rng.random())]
    negative = mood == "negative"
    created_ns = (day_start_s + int(rng.integers(0, SECONDS_PER_DAY - 60))) * _NS
    # pandas.Timedelta(hours=h) is int(h * 3600 * 1e9) nanoseconds (truncated), as here.
    updated_ns = min(created_ns + int(float(rng.exponential(18.0)) * 3600 * _NS), horizon_end_ns - _NS)
    solved = updated_ns > created_ns + 30 * 60 * _NS
    priority = PRIORITIES[bisect.bisect_right(_PRIORITY_CDF[negative], rng.random())]
    rating = None if not solved else ({} if rng.random() < 0.5 else {"score": "bad" if negative else "good"})
    subjects, bodies = _TICKET_POOLS[mood]
    # choice(pool) without p draws integers(0, len(pool)).
    subject = subjects[int(rng.integers(0, len(subjects)))]
    description = bodies[int(rng.integers(0, len(bodies)))]
    created_at = _iso_seconds(created_ns // _NS)
    updated_at = _iso_seconds(updated_ns // _NS)
    status = "solved" if solved else "open"
    if updated_at >= as_of:  # ISO strings of one width sort as time does
        status, rating, updated_at = "open", None, created_at
    return {
        "id": ticket_id,
        "url": f"https://example.zendesk.com/api/v2/tickets/{ticket_id}.json",
        "subject": str(subject),
        "description": str(description),
        "status": status,
        "priority": priority,
        "type": "problem" if negative else "question",
        "requester_id": customer_id,
        "organization_id": None,
        "assignee_id": None,
        "group_id": None,
        "tags": [mood],
        "via": {"channel": "email"},
        "custom_fields": [],
        "satisfaction_rating": rating,
        "created_at": created_at,
        "updated_at": updated_at,
    }


# -- JSON lines, built from the columns ------------------------------------------------------------
#
# A line is `{"customer_id":C,"event_type":"T","timestamp":"D","properties":{"session_id":"S",
# "plan":"P"[,"amount":A]}}`: json.dumps(..., separators=(",", ":")) of the row, as ever (the
# parser and the tests read it). It is cut into seven pieces, each taken from a table of
# ready-made text: per customer, per (date, event type), per second of the day, per customer,
# per (date, session, plan), the amount's whole part (or nothing) and its cents (or nothing) with
# the closing braces. All pieces live in one Arrow string array, so a day's file is one `take` of
# 7 indices per event (~15 ns each): the result's data buffer is the file; no Python per event.

_SESSIONS = (*(str(s) for s in range(SECONDS_PER_DAY // SESSION_SECONDS)), CANCEL_SESSION)
# Purchases' whole units with a ready-made piece (lognormal around 20: 10,000 is ~10 sigma away);
# a day with any other amount is written by the reference encoder instead.
_AMOUNT_UNITS = 10_000
_PIECES_PER_DAY = len(EVENT_TYPE_NAMES) + len(_SESSIONS) * len(PLANS)
# Where each kind of piece starts among the fixed pieces (see _fixed_pieces).
_SECOND_PIECES = 0
_UNIT_PIECES = _SECOND_PIECES + SECONDS_PER_DAY
_NO_AMOUNT = _UNIT_PIECES + _AMOUNT_UNITS
_CENT_PIECES = _NO_AMOUNT + 1
_CLOSE = _CENT_PIECES + 100
_FIXED_PIECES = _CLOSE + 1


def _session_index(event_type: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.where(event_type == CANCEL, len(_SESSIONS) - 1, second // SESSION_SECONDS)


@functools.cache
def _fixed_pieces() -> pa.Array:
    """The pieces that depend on nothing: per second of the day, per amount. Built with Arrow
    (~10 ms; Python f-strings took ~10x that, most of a small dataset's encoding time)."""

    def number(values: np.ndarray, digits: int = 0) -> pa.Array:
        text = pc.cast(pa.array(values), pa.large_string())
        return pc.utf8_lpad(text, width=digits, padding="0") if digits else text

    second = np.arange(SECONDS_PER_DAY)
    per_second = pc.binary_join_element_wise(
        number(second // 3600, 2),
        _lit(":"),
        number(second // 60 % 60, 2),
        _lit(":"),
        number(second % 60, 2),
        _lit('.000000Z","properties":{"session_id":"'),
        _lit(""),
    )
    units = pc.binary_join_element_wise(_lit(',"amount":'), number(np.arange(_AMOUNT_UNITS)), _lit(""))
    # repr() of a float rounded to cents (far below 1e15) is its number of cents k / 100 written with
    # its trailing zeros dropped but one: the whole part, then ".0", ".5" or ".05".
    cents = [f"{c / 100:.2f}"[1:].rstrip("0").ljust(2, "0") + "}}\n" for c in range(100)]
    pieces = pa.concat_arrays([per_second, units, _texts(["", *cents, "}}\n"])])
    assert len(pieces) == _FIXED_PIECES and pieces[_CLOSE].as_py() == "}}\n"
    return pieces


class _LineTexts:
    """The table of pieces for one stream's customers and dates (built on first use: ~6 MB, most of
    it the 86,400 seconds of a day)."""

    def __init__(self, customer_ids: np.ndarray, dates: list[dt.date]) -> None:
        # A customer's pieces are found by position: ids are 1..n.
        if not np.array_equal(customer_ids, np.arange(1, len(customer_ids) + 1)):
            raise ValueError("customer ids must be 1..n")
        self.customers = len(customer_ids)
        self.day_of = {date: i for i, date in enumerate(dates)}
        self._dates = dates

    @functools.cached_property
    def table(self) -> pa.Array:
        ids = pc.cast(pa.array(np.arange(1, self.customers + 1)), pa.large_string())
        per_customer = pc.binary_join_element_wise(
            _lit('{"customer_id":'), ids, _lit(',"event_type":"'), _lit("")
        )
        per_day = [
            text
            for date in self._dates
            for text in (
                *(f'{name}","timestamp":"{date:%Y-%m-%d}T' for name in EVENT_TYPE_NAMES),
                *(f'-{date:%Y%m%d}-{session}","plan":"{plan}"' for session in _SESSIONS for plan in PLANS),
            )
        ]
        # Layout: per customer (2 pieces each), fixed pieces, per day.
        return pa.concat_arrays([per_customer, ids, _fixed_pieces(), _texts(per_day)])

    def encode(self, day: GeneratedDay, start: int, stop: int) -> bytes:
        # int64 before any arithmetic with table positions (numpy keeps int8 + int as int8).
        event_type = day.event_type[start:stop].astype(np.int64)
        second = day.second[start:stop].astype(np.int64)
        purchases = event_type == PURCHASE
        cents = np.rint(day.amount[start:stop][purchases] * 100)
        if not (np.all(cents >= 0) and np.all(cents < _AMOUNT_UNITS * 100)):  # also catches NaN
            return events_to_jsonl(day.events.iloc[start:stop]).encode("utf-8")
        cents = cents.astype(np.int64)

        # Positions in the table (layout: see `table`).
        n_customers = self.customers
        fixed = 2 * n_customers
        day_base = fixed + _FIXED_PIECES + self.day_of[day.date] * _PIECES_PER_DAY

        customer = day.customer_id[start:stop] - 1
        session = _session_index(event_type, second)
        pieces = np.empty((len(customer), 7), dtype=np.int64)
        pieces[:, 0] = customer
        pieces[:, 1] = day_base + event_type
        pieces[:, 2] = fixed + _SECOND_PIECES + second
        pieces[:, 3] = n_customers + customer
        pieces[:, 4] = day_base + len(EVENT_TYPE_NAMES) + session * len(PLANS) + day.plan[start:stop]
        pieces[:, 5] = fixed + _NO_AMOUNT
        pieces[:, 6] = fixed + _CLOSE
        pieces[purchases, 5] = fixed + _UNIT_PIECES + cents // 100
        pieces[purchases, 6] = fixed + _CENT_PIECES + cents % 100

        lines = self.table.take(pa.array(pieces.ravel()))
        # The pieces are laid end to end in the result's data buffer: that buffer is the file.
        offsets = np.frombuffer(
            lines.buffers()[1], dtype=np.int64, count=len(lines) + 1, offset=lines.offset * 8
        )
        return lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pybytes()


def _texts(values: list[str]) -> pa.Array:
    # 64-bit offsets: a table or a day's file may pass the 2 GiB a plain Arrow string array holds.
    return pa.array(values, type=pa.large_string())


def _lit(value: str) -> pa.Scalar:
    return pa.scalar(value, type=pa.large_string())


def events_to_jsonl(events: pd.DataFrame) -> str:
    """Any events frame (``GeneratedDay.events``) as JSON lines, one json.dumps per row: the
    reference format ``GeneratedDay.to_jsonl`` reproduces from the columns."""
    lines = [
        json.dumps(
            {
                "customer_id": cid,
                "event_type": etype,
                "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "properties": props,
            },
            separators=(",", ":"),
        )
        for cid, etype, ts, props in events.itertuples(index=False, name=None)
    ]
    return "\n".join(lines) + ("\n" if lines else "")
