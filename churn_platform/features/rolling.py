"""features/customer_features: rolling 7- and 30-day features per customer as of a date."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from churn_platform.engines.base import MONEY, SCORE, SqlRunner, Table
from churn_platform.engines.duckdb import query_pandas
from churn_platform.orchestration.partitions import FEATURE_WINDOW_DAYS

SHORT_WINDOW_DAYS = 7


def _recent(expr: str) -> str:
    return f"SUM(CASE WHEN d.activity_date > a.as_of_date - INTERVAL {SHORT_WINDOW_DAYS} DAY THEN {expr} ELSE 0 END)"


CUSTOMER_FEATURES_SQL = f"""
WITH windowed AS (
    SELECT
        a.as_of_date AS as_of_date,
        d.customer_id AS customer_id,
        {_recent("d.events")} AS events_7d,
        SUM(d.events) AS events_30d,
        {_recent("d.sessions")} AS sessions_7d,
        SUM(d.sessions) AS sessions_30d,
        {_recent(f"CAST(d.spend AS {MONEY})")} AS spend_7d,
        SUM(CAST(d.spend AS {MONEY})) AS spend_30d,
        {_recent("CASE WHEN d.events > 0 THEN 1 ELSE 0 END")} AS active_days_7d,
        SUM(CASE WHEN d.events > 0 THEN 1 ELSE 0 END) AS active_days_30d,
        SUM(d.feature_uses) AS feature_uses_30d,
        SUM(d.support_visits) AS support_visits_30d,
        SUM(d.purchases) AS purchases_30d,
        {_recent("d.tickets")} AS tickets_7d,
        SUM(d.tickets) AS tickets_30d,
        SUM(d.negative_tickets) AS negative_tickets_30d,
        CAST(SUM(CAST(d.mean_sentiment * d.tickets AS {SCORE})) AS DOUBLE) / NULLIF(SUM(CASE WHEN d.mean_sentiment IS NOT NULL THEN d.tickets ELSE 0 END), 0)
            AS mean_sentiment_30d,
        MIN(d.min_sentiment) AS min_sentiment_30d,
        date_diff('day', MAX(CASE WHEN d.events > 0 THEN d.activity_date END), a.as_of_date)
            AS days_since_last_event,
        SUM(d.cancellations) AS cancellations_30d,
        MAX_BY(d.plan, CASE WHEN d.plan IS NOT NULL THEN d.activity_date END) AS plan
    FROM as_of a
    JOIN activity d
        ON d.activity_date > a.as_of_date - INTERVAL {FEATURE_WINDOW_DAYS} DAY
        AND d.activity_date <= a.as_of_date
    GROUP BY a.as_of_date, d.customer_id
)
SELECT
    as_of_date,
    customer_id,
    CAST(events_7d AS BIGINT) AS events_7d,
    CAST(events_30d AS BIGINT) AS events_30d,
    CAST(sessions_7d AS BIGINT) AS sessions_7d,
    CAST(sessions_30d AS BIGINT) AS sessions_30d,
    CAST(spend_7d AS DOUBLE) AS spend_7d,
    CAST(spend_30d AS DOUBLE) AS spend_30d,
    CAST(active_days_7d AS BIGINT) AS active_days_7d,
    CAST(active_days_30d AS BIGINT) AS active_days_30d,
    CAST(feature_uses_30d AS BIGINT) AS feature_uses_30d,
    CAST(support_visits_30d AS BIGINT) AS support_visits_30d,
    CAST(purchases_30d AS BIGINT) AS purchases_30d,
    CAST(tickets_7d AS BIGINT) AS tickets_7d,
    CAST(tickets_30d AS BIGINT) AS tickets_30d,
    CAST(negative_tickets_30d AS BIGINT) AS negative_tickets_30d,
    CAST(mean_sentiment_30d AS DOUBLE) AS mean_sentiment_30d,
    CAST(min_sentiment_30d AS DOUBLE) AS min_sentiment_30d,
    CAST(days_since_last_event AS DOUBLE) AS days_since_last_event,
    -- Daily event rate of the last week over that of the three weeks before; NULL if those were idle.
    -- Explicit DOUBLEs: Spark reads `7.0` as a DECIMAL literal and would round the ratio.
    (CAST(events_7d AS DOUBLE) / {SHORT_WINDOW_DAYS})
        / NULLIF(CAST(events_30d - events_7d AS DOUBLE) / {FEATURE_WINDOW_DAYS - SHORT_WINDOW_DAYS}, 0)
        AS activity_trend,
    plan,
    -- Active: used the product in the window and has not cancelled (churned customers are not scored).
    (events_30d > 0 AND cancellations_30d = 0) AS is_active
FROM windowed
ORDER BY as_of_date, customer_id
"""


def compute_customer_features(
    activity: Table, as_of_dates: Sequence[str], run_sql: SqlRunner = query_pandas
) -> Any:
    """Rolling features for every customer with activity in the 30 days up to each as-of date.

    ``activity`` must hold the daily-activity rows of those 30-day windows. Returns what
    ``run_sql`` returns (pandas by default).
    """
    as_of = pd.DataFrame({"as_of_date": pd.to_datetime(list(as_of_dates)).date})
    return run_sql(CUSTOMER_FEATURES_SQL, {"activity": activity, "as_of": as_of})
