"""ml/churn_labels: who cancelled in the 30 days after each as-of date."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from churn_platform.engines.base import SqlRunner, Table
from churn_platform.engines.duckdb import query_pandas
from churn_platform.orchestration.partitions import LABEL_HORIZON_DAYS

CHURN_LABELS_SQL = f"""
SELECT
    a.as_of_date AS as_of_date,
    d.customer_id AS customer_id,
    SUM(d.cancellations) > 0 AS churned,
    MIN(CASE WHEN d.cancellations > 0 THEN d.activity_date END) AS churn_date
FROM as_of a
JOIN activity d
    ON d.activity_date > a.as_of_date
    AND d.activity_date <= a.as_of_date + INTERVAL {LABEL_HORIZON_DAYS} DAY
GROUP BY a.as_of_date, d.customer_id
ORDER BY as_of_date, customer_id
"""


def compute_churn_labels(
    future_activity: Table, as_of_dates: Sequence[str], run_sql: SqlRunner = query_pandas
) -> pd.DataFrame:
    """One row per customer seen in the 30 days after each as-of date.

    A customer active at the as-of date who is absent here did nothing at all afterwards and did
    not cancel: the training set counts them as not churned (churn means a cancellation).
    """
    as_of = pd.DataFrame({"as_of_date": pd.to_datetime(list(as_of_dates)).date})
    labels = run_sql(CHURN_LABELS_SQL, {"activity": future_activity, "as_of": as_of})
    labels["churn_date"] = pd.to_datetime(labels["churn_date"]).dt.date
    return labels
