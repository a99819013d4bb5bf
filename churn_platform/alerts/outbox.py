"""A durable alert outbox: every alert is stored before it is sent, each destination (Slack, the
CRM) is tracked on its own, a failed delivery is retried on later ticks with exponential backoff
until it succeeds or the alert is too old, and a delivered one is never sent again.

Dagster advances a sensor's cursor even when its tick fails, so "retry on the next tick" needs
state of its own: this is it. Where it lives follows the Dagster instance (``sensors.outbox_for``):
with instance storage on PostgreSQL (production, deploy/dagster.yaml) it is the table
``churn_alert_outbox`` in the instance's own database, reached through the instance's storage, so it
outlives any pod and every sensor process shares it; with SQLite storage (local, tests, ``make
dev``) it is the table ``deliveries`` in a SQLite file beside the instance
(``$DAGSTER_HOME/churn_alert_outbox.db``). One implementation (SQLAlchemy Core) serves both.

Every statement commits on its own. A sender claims one due delivery at a time with a conditional
UPDATE (still due, not delivered, not given up) that moves its next attempt past a lease and sets
the sender's token; the database applies it to one row atomically (PostgreSQL re-checks the
condition on the row another sender just updated; SQLite writes one at a time), so two sensors
ticking at once, in one process or in two pods, never send the same delivery twice, and only the
claim's holder records the outcome. A process killed after a destination accepted a message but
before it was marked delivered sends it once more when the lease ends (at least once, never
lost); nothing else repeats a delivery.

Alert ids are chosen by the sender so that the same event always has the same id: a run id, a late
partition (``late:<asset>:<partition>``), a failed check evaluation (``check:<check>:<partition>:<run>``).
Enqueuing an id again changes nothing, so sensors may re-read overlapping windows without doubling
an alert; delivered and given-up rows are kept, which is what remembers them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, CreateTable

OUTBOX_FILE = "churn_alert_outbox.db"
SQLITE_TABLE = "deliveries"  # the outbox file's own table (its name since the first version)
DATABASE_TABLE = "churn_alert_outbox"  # in a database shared with Dagster's tables: named as ours
LEASE_SECONDS = 120  # a claimed delivery is not claimed again for this long (a sender that died)
CONNECT_ATTEMPTS = 4  # a database restarting or failing over: 0.25 + 0.5 + 1 s of retries


def deliveries_table(name: str) -> sa.Table:
    """One row per (alert, destination). Times are epoch seconds as double precision (PostgreSQL's
    REAL would round today's timestamps to minutes); ``ordinal`` keeps an alert's destinations in
    the order they were enqueued (Slack before the CRM)."""
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("alert_id", sa.Text, primary_key=True),
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt", sa.Double, nullable=False),
        sa.Column("delivered_at", sa.Double),
        sa.Column("abandoned_at", sa.Double),
        sa.Column("last_error", sa.Text),
        sa.Column("claim", sa.Text),
        sa.Column("ordinal", sa.Integer, nullable=False, server_default="0"),
    )
    open_rows = sa.and_(table.c.delivered_at.is_(None), table.c.abandoned_at.is_(None))
    # Delivered and given-up rows are kept for good: the index holds only those still to be made.
    sa.Index(
        f"{name}_open",
        table.c.created,
        table.c.alert_id,
        table.c.ordinal,
        postgresql_where=open_rows,
        sqlite_where=open_rows,
    )
    return table


def sqlite_engine(path: str | Path) -> sa.Engine:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A writer waits up to 30 s for another's write to finish (SQLite writes one at a time).
    return sa.create_engine(f"sqlite:///{path}", poolclass=NullPool, connect_args={"timeout": 30})


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


def _error_text(text: str) -> str:
    return text.replace("\x00", "")[:500]  # PostgreSQL's text refuses NUL characters


class AlertOutbox:
    """``database``: a SQLite file's path (table ``deliveries``), or an engine on a database shared
    with others, such as the Dagster instance's PostgreSQL database (table ``churn_alert_outbox``).
    The table (and its index) is created if missing."""

    def __init__(
        self,
        database: str | Path | sa.Engine,
        retry_seconds: float = 30,
        max_age_seconds: float = 86_400,
    ) -> None:
        shared = isinstance(database, sa.Engine)
        engine = database if isinstance(database, sa.Engine) else sqlite_engine(database)
        # Each statement is its own transaction, whatever the engine was configured with.
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.table = deliveries_table(DATABASE_TABLE if shared else SQLITE_TABLE)
        self.retry_seconds, self.max_age_seconds = retry_seconds, max_age_seconds
        self._create_if_missing()

    def _connect(self) -> sa.Connection:
        """A connection, retried briefly when the server cannot be reached (an error names the
        server, never the password: SQLAlchemy hides it)."""
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                return self.engine.connect()
            except sa.exc.OperationalError:
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                time.sleep(0.25 * 2**attempt)
        raise AssertionError("unreachable")

    def _create_if_missing(self) -> None:
        table = self.table
        (index,) = table.indexes
        with self._connect() as con:
            self._ensure(
                con,
                lambda inspector: inspector.has_table(table.name),
                CreateTable(table, if_not_exists=True),
            )
            # A SQLite file written before destinations were ordered: every row counts as first.
            self._ensure(
                con,
                lambda inspector: "ordinal" in {c["name"] for c in inspector.get_columns(table.name)},
                sa.text(f"ALTER TABLE {table.name} ADD COLUMN ordinal INTEGER NOT NULL DEFAULT 0"),
            )
            self._ensure(
                con,
                lambda inspector: index.name in {i["name"] for i in inspector.get_indexes(table.name)},
                CreateIndex(index, if_not_exists=True),
            )

    @staticmethod
    def _ensure(con: sa.Connection, present: Callable[[sa.Inspector], bool], ddl: sa.Executable) -> None:
        """Run ``ddl`` unless what it creates is there. Two sensors starting at once may both
        try: PostgreSQL can then refuse the second CREATE ... IF NOT EXISTS (a duplicate catalog
        entry), which is fine when the first one's is there."""
        if present(sa.inspect(con)):
            return
        try:
            con.execute(ddl)
        except sa.exc.DBAPIError:
            if not present(sa.inspect(con)):
                raise

    def _insert(self) -> Any:
        dialects = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
        name = self.engine.dialect.name
        if name not in dialects:
            raise ValueError(f"the alert outbox supports PostgreSQL and SQLite databases, not {name}")
        return dialects[name](self.table)

    def enqueue(self, alert_id: str, payloads: Mapping[str, Any], now: float | None = None) -> int:
        """Store an alert's message for each destination, in one statement (all or none);
        enqueuing it again changes nothing. Returns how many deliveries are new."""
        if not payloads:
            return 0
        now = time.time() if now is None else now
        rows = [
            {
                "alert_id": alert_id,
                "destination": destination,
                "payload": json.dumps(payload),
                "created": now,
                "next_attempt": now,
                "ordinal": ordinal,
            }
            for ordinal, (destination, payload) in enumerate(payloads.items())
        ]
        statement = (
            self._insert().values(rows).on_conflict_do_nothing(index_elements=["alert_id", "destination"])
        )
        with self._connect() as con:
            return con.execute(statement).rowcount

    def _still_open(self) -> sa.ColumnElement[bool]:
        c = self.table.c
        return sa.and_(c.delivered_at.is_(None), c.abandoned_at.is_(None))

    def _claim_one(self, con: sa.Connection, now: float) -> tuple[Delivery, float, str] | None:
        """Take the oldest due delivery: one conditional UPDATE moves its next attempt past a lease
        and gives it this sender's token, only if it is still due when the database applies it, so
        no other sender takes it meanwhile, and only the token's holder can record its outcome.
        A row another sender claimed between the look and the UPDATE is not ours: look again.
        One at a time, so a long backlog cannot outlast the lease."""
        c = self.table.c
        due = sa.and_(self._still_open(), c.next_attempt <= now)
        while True:
            candidate = con.execute(
                sa.select(c.alert_id, c.destination)
                .where(due)
                .order_by(c.created, c.alert_id, c.ordinal)
                .limit(1)
            ).first()
            if candidate is None:
                return None
            token = uuid.uuid4().hex
            claimed = con.execute(
                sa.update(self.table)
                .where(c.alert_id == candidate.alert_id, c.destination == candidate.destination, due)
                .values(next_attempt=max(now, time.time()) + LEASE_SECONDS, claim=token)
                .returning(c.payload, c.attempts, c.created)
            ).first()
            if claimed is not None:
                delivery = Delivery(
                    candidate.alert_id, candidate.destination, json.loads(claimed.payload), claimed.attempts
                )
                return delivery, claimed.created, token

    def deliver_due(
        self, senders: Mapping[str, Callable[[Any], None]], now: float | None = None
    ) -> DeliveryReport:
        """Send every due delivery with its destination's sender; record each outcome at once."""
        now = time.time() if now is None else now
        delivered, failed, abandoned = [], [], []
        c = self.table.c
        with self._connect() as con:
            while (claimed := self._claim_one(con, now)) is not None:
                d, created, token = claimed
                mine = sa.update(self.table).where(
                    c.alert_id == d.alert_id, c.destination == d.destination, c.claim == token
                )
                send = senders.get(d.destination)
                if send is None or now - created > self.max_age_seconds:
                    why = "destination no longer configured" if send is None else "too old to send"
                    con.execute(mine.values(abandoned_at=now, last_error=why))
                    abandoned.append((d.alert_id, d.destination, why))
                    continue
                try:
                    send(d.payload)
                except Exception as exc:  # every failure is retried: the outbox keeps the alert
                    backoff = self.retry_seconds * 2 ** min(d.attempts, 8)
                    con.execute(
                        mine.values(
                            attempts=c.attempts + 1,
                            next_attempt=now + backoff,
                            last_error=_error_text(str(exc)),
                        )
                    )
                    failed.append((d.alert_id, d.destination, str(exc)))
                    continue
                con.execute(mine.values(attempts=c.attempts + 1, delivered_at=now, last_error=None))
                delivered.append((d.alert_id, d.destination))
        return DeliveryReport(delivered, failed, abandoned)

    def withdraw(self, alert_id: str, why: str, now: float | None = None) -> int:
        """Give up an alert's deliveries not made yet, because what it reports is over (a late
        partition that arrived): it is never sent. One being sent at this moment may still arrive.
        Returns how many deliveries were withdrawn."""
        now = time.time() if now is None else now
        with self._connect() as con:
            return con.execute(
                sa.update(self.table)
                .where(self.table.c.alert_id == alert_id, self._still_open())
                .values(abandoned_at=now, last_error=_error_text(why))
            ).rowcount

    def pending(self) -> list[tuple[str, str, int, str | None]]:
        """(alert, destination, attempts, last error) of every delivery still to be made."""
        c = self.table.c
        with self._connect() as con:
            rows = con.execute(
                sa.select(c.alert_id, c.destination, c.attempts, c.last_error)
                .where(self._still_open())
                .order_by(c.created, c.alert_id, c.ordinal)
            ).all()
        return [tuple(row) for row in rows]
