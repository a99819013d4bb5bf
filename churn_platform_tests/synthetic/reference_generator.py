"""The per-event generator and writer as they were before the streaming rewrite (issue #14), kept
verbatim as the reference the vectorised ``churn_platform.synthetic`` must match byte for byte
(``test_streaming.py``), and for ``bench/generator.py``'s before/after ratio. Do not "improve" it:
its value is that it is the old code.

Only the imports of the old writer were adapted (it imported ``events_to_jsonl`` and
``GeneratedData`` from the generator module, which are defined here).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn_platform.crm.export import write_export
from churn_platform.logs.landing_zone import LandingZone
from churn_platform.storage.connection import ObjectStoreConnection
from churn_platform.synthetic import text

EVENT_TYPES = np.array(["login", "page_view", "feature_use", "support_visit", "purchase"])
EVENT_TYPE_P = np.array([0.20, 0.45, 0.25, 0.05, 0.05])
PLANS = np.array(["basic", "pro", "enterprise"])
PLAN_P = np.array([0.5, 0.35, 0.15])
# Probability of churning within 180 days, by plan.
PLAN_CHURN_P = {"basic": 0.36, "pro": 0.26, "enterprise": 0.12}
DECLINE_DAYS = 35
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class GeneratedDay:
    date: dt.date
    events: pd.DataFrame  # customer_id, event_type, timestamp, properties (dict)


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


def generate(
    start_date: dt.date, days: int, customers: int, seed: int, horizon_days: int | None = None
) -> GeneratedData:
    """``days`` days of data from ``start_date``. ``horizon_days`` (>= days; default: days) is the
    span the customers' lives are drawn for: the data of the first ``days`` days of a horizon does
    not depend on ``days``, so a dataset can grow a day at a time (``generate --append-day``) and
    every landed day stays what it was. Tickets are as they stand at the end of the last day."""
    horizon_days = days if horizon_days is None else horizon_days
    if days < 1 or customers < 1:
        raise ValueError("days and customers must be positive")
    if horizon_days < days:
        raise ValueError(f"horizon_days ({horizon_days}) must be at least days ({days})")
    rng = np.random.default_rng(seed)
    ids = np.arange(1, customers + 1, dtype=np.int64)
    plans = rng.choice(PLANS, size=customers, p=PLAN_P)
    base_rate = rng.gamma(shape=2.0, scale=2.0, size=customers) + 0.5  # events per day

    # Churn day relative to start; churners whose day falls past the horizon are unobserved.
    churn_p = np.array([PLAN_CHURN_P[p] for p in plans])
    horizon = horizon_days + 60
    will_churn = rng.random(customers) < churn_p * horizon / 180
    churn_day = np.where(will_churn, rng.integers(5, horizon, size=customers), -1)
    silent = will_churn & (rng.random(customers) < 0.15)  # leave with no warning signs
    bad_patch_start = np.where(
        ~will_churn & (rng.random(customers) < 0.12), rng.integers(0, horizon_days, size=customers), -10_000
    )

    start_ts = pd.Timestamp(start_date, tz="UTC")
    event_days: list[GeneratedDay] = []
    tickets: list[dict] = []
    next_ticket_id = 1
    for day in range(days):
        date = start_date + dt.timedelta(days=day)
        alive = (churn_day < 0) | (day <= churn_day)
        to_churn = churn_day - day
        fading = (churn_day >= 0) & ~silent & (to_churn >= 0) & (to_churn < DECLINE_DAYS)
        in_bad_patch = (day >= bad_patch_start) & (day < bad_patch_start + 20)
        factor = np.ones(customers)
        factor[fading] = 0.15 + 0.85 * to_churn[fading] / DECLINE_DAYS
        factor[in_bad_patch] *= 0.55
        weekday = 0.65 if date.weekday() >= 5 else 1.0
        counts = rng.poisson(base_rate * factor * weekday) * alive
        churns_today = churn_day == day
        event_days.append(
            _events_for_day(rng, date, start_ts + pd.Timedelta(days=day), ids, plans, counts, churns_today)
        )

        upset = fading | in_bad_patch
        ticket_rate = np.where(upset, 0.12, 0.015) * alive
        n_tickets = rng.poisson(ticket_rate)
        for idx in np.nonzero(n_tickets)[0]:
            for _ in range(n_tickets[idx]):
                tickets.append(
                    _ticket(
                        rng,
                        next_ticket_id,
                        int(ids[idx]),
                        start_ts + pd.Timedelta(days=day),
                        upset=bool(upset[idx]),
                        horizon_end=start_ts + pd.Timedelta(days=horizon_days),
                    )
                )
                next_ticket_id += 1
    if horizon_days > days:
        tickets = [_as_of(ticket, start_ts + pd.Timedelta(days=days)) for ticket in tickets]

    customers_df = pd.DataFrame(
        {
            "customer_id": ids,
            "plan": plans,
            "churn_day": np.where(churn_day >= 0, churn_day, np.nan),
            "silent_churner": silent,
        }
    )
    return GeneratedData(start_date, days, customers_df, event_days, tickets)


def _events_for_day(rng, date, day_start, ids, plans, counts, churns_today) -> GeneratedDay:
    customer_idx = np.repeat(np.arange(len(ids)), counts)
    n = len(customer_idx)
    offsets = rng.integers(0, SECONDS_PER_DAY - 60, size=n)
    event_types = rng.choice(EVENT_TYPES, size=n, p=EVENT_TYPE_P)
    session_no = (offsets // (3 * 3600)).astype(int)  # a new session every 3 hours of the day
    amounts = np.round(rng.lognormal(mean=3.0, sigma=0.6, size=n), 2)

    timestamps = day_start + pd.to_timedelta(offsets, unit="s")
    records = []
    for i in range(n):
        cid = int(ids[customer_idx[i]])
        props = {"session_id": f"{cid}-{date:%Y%m%d}-{session_no[i]}", "plan": str(plans[customer_idx[i]])}
        if event_types[i] == "purchase":
            props["amount"] = float(amounts[i])
        records.append((cid, str(event_types[i]), timestamps[i], props))

    # The cancellation is the day's last event for each churner.
    for idx in np.nonzero(churns_today)[0]:
        cid = int(ids[idx])
        props = {"session_id": f"{cid}-{date:%Y%m%d}-cancel", "plan": str(plans[idx])}
        records.append(
            (cid, "cancel_subscription", day_start + pd.Timedelta(seconds=SECONDS_PER_DAY - 30), props)
        )

    events = pd.DataFrame(records, columns=["customer_id", "event_type", "timestamp", "properties"])
    events = events.sort_values(["timestamp", "customer_id"], kind="stable").reset_index(drop=True)
    return GeneratedDay(date=date, events=events)


def _ticket(rng, ticket_id: int, customer_id: int, day_start, upset: bool, horizon_end) -> dict:
    mood = rng.choice(["negative", "neutral", "positive"], p=[0.75, 0.2, 0.05] if upset else [0.2, 0.5, 0.3])
    pools = {
        "negative": (text.NEGATIVE_SUBJECTS, text.NEGATIVE_BODIES),
        "neutral": (text.NEUTRAL_SUBJECTS, text.NEUTRAL_BODIES),
        "positive": (text.POSITIVE_SUBJECTS, text.POSITIVE_BODIES),
    }[mood]
    created = day_start + pd.Timedelta(seconds=int(rng.integers(0, SECONDS_PER_DAY - 60)))
    updated = min(
        created + pd.Timedelta(hours=float(rng.exponential(18.0))), horizon_end - pd.Timedelta(seconds=1)
    )
    solved = updated > created + pd.Timedelta(minutes=30)
    priority = rng.choice(
        ["low", "normal", "high", "urgent"],
        p=[0.1, 0.3, 0.4, 0.2] if mood == "negative" else [0.3, 0.6, 0.1, 0.0],
    )
    rating = (
        None
        if not solved
        else ({} if rng.random() < 0.5 else {"score": "bad" if mood == "negative" else "good"})
    )
    return {
        "id": ticket_id,
        "url": f"https://example.zendesk.com/api/v2/tickets/{ticket_id}.json",
        "subject": str(rng.choice(pools[0])),
        "description": str(rng.choice(pools[1])),
        "status": "solved" if solved else "open",
        "priority": str(priority),
        "type": "problem" if mood == "negative" else "question",
        "requester_id": customer_id,
        "organization_id": None,
        "assignee_id": None,
        "group_id": None,
        "tags": [mood],
        "via": {"channel": "email"},
        "custom_fields": [],
        "satisfaction_rating": rating,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "updated_at": updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _as_of(ticket: dict, end: pd.Timestamp) -> dict:
    """The ticket as it stood at ``end``: an update that happens later has not happened yet."""
    if pd.Timestamp(ticket["updated_at"]) < end:
        return ticket
    return {**ticket, "status": "open", "satisfaction_rating": None, "updated_at": ticket["created_at"]}


def events_to_jsonl(events: pd.DataFrame) -> str:
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


# -- the old churn_platform/synthetic/writer.py ----------------------------------------------------

BATCH_SPLIT_HOUR = 12


def write_generated(
    data: GeneratedData,
    landing_zone: LandingZone,
    crm_export_path: str,
    connection: ObjectStoreConnection | None = None,
    only_days: set[str] | None = None,
) -> dict[str, int]:
    """Write the events of every day (or of ``only_days``) and the whole ticket export."""
    files = 0
    for day in data.event_days:
        date = day.date.isoformat()
        if only_days is not None and date not in only_days:
            continue
        hours = day.events["timestamp"].dt.hour
        for name, batch in (
            ("events-am.jsonl", day.events[hours < BATCH_SPLIT_HOUR]),
            ("events-pm.jsonl", day.events[hours >= BATCH_SPLIT_HOUR]),
        ):
            landing_zone.write_file(date, name, events_to_jsonl(batch))
            files += 1
    write_export(crm_export_path, data.tickets, connection)
    return {
        "days": data.days,
        "customers": len(data.customers),
        "events": sum(len(d.events) for d in data.event_days),
        "landing_files": files,
        "tickets": len(data.tickets),
        "churners": int(data.customers["churn_day"].notna().sum()),
    }
