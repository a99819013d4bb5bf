"""A durable alert outbox: every alert is stored before it is sent, each destination (Slack, the
CRM) is tracked on its own, a failed delivery is retried on later ticks with exponential backoff
until it succeeds or the alert is too old, and a delivered one is never sent again.

Dagster advances a sensor's cursor even when its tick fails, so "retry on the next tick" needs
state of its own: this is it. It is a SQLite file beside the Dagster instance
(``$DAGSTER_HOME/churn_alert_outbox.db``); SQLite's locking makes each claim atomic, so two
sensors ticking at once never send the same delivery twice: each claims one delivery at a time,
with a lease, and only the claim's holder records the outcome. A process killed after a destination
accepted a message but before it was marked delivered sends it once more (at least once, never
lost); nothing else repeats a delivery.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUTBOX_FILE = "churn_alert_outbox.db"
LEASE_SECONDS = 120  # a claimed delivery is not claimed again for this long (a sender that died)

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    delivered_at REAL,
    abandoned_at REAL,
    last_error TEXT,
    claim TEXT,
    PRIMARY KEY (alert_id, destination)
)
"""


@dataclass(frozen=True)
class Delivery:
    alert_id: str
    destination: str
    payload: Any
    attempts: int


@dataclass(frozen=True)
class DeliveryReport:
    delivered: list[tuple[str, str]]  # (alert, destination)
    failed: list[tuple[str, str, str]]  # (alert, destination, error): retried later
    abandoned: list[tuple[str, str, str]]  # (alert, destination, why): given up


class AlertOutbox:
    def __init__(self, path: str | Path, retry_seconds: float = 30, max_age_seconds: float = 86_400) -> None:
        self.path, self.retry_seconds, self.max_age_seconds = Path(path), retry_seconds, max_age_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con:
            con.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)  # autocommit; explicit BEGIN

    def enqueue(self, alert_id: str, payloads: Mapping[str, Any], now: float | None = None) -> None:
        """Store an alert's message for each destination; enqueuing it again changes nothing."""
        now = time.time() if now is None else now
        with closing(self._connect()) as con:
            con.executemany(
                "INSERT OR IGNORE INTO deliveries (alert_id, destination, payload, created, next_attempt) "
                "VALUES (?, ?, ?, ?, ?)",
                [(alert_id, d, json.dumps(p), now, now) for d, p in payloads.items()],
            )

    def _claim_one(self, con: sqlite3.Connection, now: float) -> tuple[Delivery, float, str] | None:
        """Take the oldest due delivery, in one write transaction: its next attempt moves past a
        lease and it gets this sender's token, so no other sender takes it meanwhile, and only the
        token's holder can record its outcome. One at a time, so a long backlog cannot outlast the lease."""
        token = uuid.uuid4().hex
        con.execute("BEGIN IMMEDIATE")
        row = con.execute(
            "SELECT alert_id, destination, payload, attempts, created FROM deliveries "
            "WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt <= ? ORDER BY created LIMIT 1",
            (now,),
        ).fetchone()
        if row is not None:
            con.execute(
                "UPDATE deliveries SET next_attempt = ?, claim = ? WHERE alert_id = ? AND destination = ?",
                (time.time() + LEASE_SECONDS, token, row[0], row[1]),
            )
        con.execute("COMMIT")
        if row is None:
            return None
        return Delivery(row[0], row[1], json.loads(row[2]), row[3]), row[4], token

    def deliver_due(
        self, senders: Mapping[str, Callable[[Any], None]], now: float | None = None
    ) -> DeliveryReport:
        """Send every due delivery with its destination's sender; record each outcome at once."""
        now = time.time() if now is None else now
        delivered, failed, abandoned = [], [], []
        with closing(self._connect()) as con:
            while (claimed := self._claim_one(con, now)) is not None:
                d, created, token = claimed
                where = "WHERE alert_id = ? AND destination = ? AND claim = ?"
                key = (d.alert_id, d.destination, token)
                send = senders.get(d.destination)
                if send is None or now - created > self.max_age_seconds:
                    why = "destination no longer configured" if send is None else "too old to send"
                    con.execute(
                        f"UPDATE deliveries SET abandoned_at = ?, last_error = ? {where}", (now, why, *key)
                    )
                    abandoned.append((d.alert_id, d.destination, why))
                    continue
                try:
                    send(d.payload)
                except Exception as exc:  # every failure is retried: the outbox keeps the alert
                    backoff = self.retry_seconds * 2 ** min(d.attempts, 8)
                    con.execute(
                        f"UPDATE deliveries SET attempts = attempts + 1, next_attempt = ?, last_error = ? {where}",
                        (now + backoff, str(exc)[:500], *key),
                    )
                    failed.append((d.alert_id, d.destination, str(exc)))
                    continue
                con.execute(
                    f"UPDATE deliveries SET attempts = attempts + 1, delivered_at = ?, last_error = NULL {where}",
                    (now, *key),
                )
                delivered.append((d.alert_id, d.destination))
        return DeliveryReport(delivered, failed, abandoned)

    def pending(self) -> list[tuple[str, str, int, str | None]]:
        """(alert, destination, attempts, last error) of every delivery still to be made."""
        with closing(self._connect()) as con:
            return con.execute(
                "SELECT alert_id, destination, attempts, last_error FROM deliveries "
                "WHERE delivered_at IS NULL AND abandoned_at IS NULL ORDER BY created"
            ).fetchall()
