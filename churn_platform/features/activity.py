"""features/customer_daily_activity: one row per customer and day with any events or tickets."""

from __future__ import annotations

from typing import Any

from churn_platform.contracts.interaction_logs import (
    CANCEL_SUBSCRIPTION,
    FEATURE_USE,
    LOGIN,
    PAGE_VIEW,
    PURCHASE,
    SUPPORT_VISIT,
)
from churn_platform.engines.base import MONEY, SCORE, SqlRunner, Table
from churn_platform.engines.duckdb import query_pandas

# One column per declared event type (contracts/interaction_logs.py): the labels count cancellations.
EVENT_COUNTS = {
    "logins": LOGIN,
    "page_views": PAGE_VIEW,
    "feature_uses": FEATURE_USE,
    "support_visits": SUPPORT_VISIT,
    "purchases": PURCHASE,
    "cancellations": CANCEL_SUBSCRIPTION,
}

_event_count_sql = ",\n        ".join(
    f"SUM(CASE WHEN event_type = '{etype}' THEN 1 ELSE 0 END) AS {column}"
    for column, etype in EVENT_COUNTS.items()
)

DAILY_ACTIVITY_SQL = f"""
WITH events AS (
    SELECT
        customer_id,
        event_date AS activity_date,
        COUNT(*) AS events,
        {_event_count_sql},
        COUNT(DISTINCT session_id) AS sessions,
        SUM(CASE WHEN event_type = '{PURCHASE}' THEN CAST(COALESCE(amount, 0) AS {MONEY}) ELSE 0 END) AS spend,
        MAX_BY(plan, timestamp) AS plan
    FROM logs
    GROUP BY customer_id, event_date
),
tickets AS (
    SELECT
        customer_id,
        updated_date AS activity_date,
        COUNT(*) AS tickets,
        SUM(CASE WHEN sentiment_label = 'negative' THEN 1 ELSE 0 END) AS negative_tickets,
        CAST(SUM(CAST(sentiment AS {SCORE})) AS DOUBLE) / COUNT(sentiment) AS mean_sentiment,
        MIN(sentiment) AS min_sentiment
    FROM sentiment
    GROUP BY customer_id, updated_date
)
SELECT
    COALESCE(e.customer_id, t.customer_id) AS customer_id,
    COALESCE(e.activity_date, t.activity_date) AS activity_date,
    CAST(COALESCE(e.events, 0) AS BIGINT) AS events,
    {", ".join(f"CAST(COALESCE(e.{c}, 0) AS BIGINT) AS {c}" for c in EVENT_COUNTS)},
    CAST(COALESCE(e.sessions, 0) AS BIGINT) AS sessions,
    CAST(COALESCE(e.spend, 0) AS DOUBLE) AS spend,
    e.plan AS plan,
    CAST(COALESCE(t.tickets, 0) AS BIGINT) AS tickets,
    CAST(COALESCE(t.negative_tickets, 0) AS BIGINT) AS negative_tickets,
    CAST(t.mean_sentiment AS DOUBLE) AS mean_sentiment,
    CAST(t.min_sentiment AS DOUBLE) AS min_sentiment
FROM events e
FULL OUTER JOIN tickets t
    ON e.customer_id = t.customer_id AND e.activity_date = t.activity_date
ORDER BY activity_date, customer_id
"""


def compute_daily_activity(logs: Table, sentiment: Table, run_sql: SqlRunner = query_pandas) -> Any:
    """Per customer and day: event counts by type, sessions, spend, plan, tickets, sentiment.

    Returns what ``run_sql`` returns: pandas by default, the engine's own table from ``query_table``.
    """
    return run_sql(DAILY_ACTIVITY_SQL, {"logs": logs, "sentiment": sentiment})
