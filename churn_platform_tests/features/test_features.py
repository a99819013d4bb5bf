import datetime as dt

import pandas as pd
import pytest

from churn_platform.features.activity import compute_daily_activity
from churn_platform.features.rolling import compute_customer_features

D = dt.date


def logs(rows):
    frame = pd.DataFrame(rows, columns=["customer_id", "event_type", "ts", "session_id", "plan", "amount"])
    frame["timestamp"] = pd.to_datetime(frame.pop("ts"), utc=True)
    frame["event_date"] = frame["timestamp"].dt.date
    frame["properties"] = "{}"
    return frame


def sentiment(rows):
    return pd.DataFrame(
        rows, columns=["ticket_id", "customer_id", "updated_date", "sentiment", "sentiment_label"]
    )


def test_daily_activity_counts_events_sessions_spend_and_tickets():
    activity = compute_daily_activity(
        logs(
            [
                (1, "login", "2026-01-05T08:00Z", "a", "pro", None),
                (1, "purchase", "2026-01-05T09:00Z", "a", "pro", 10.0),
                (1, "purchase", "2026-01-05T20:00Z", "b", "enterprise", 5.5),
                (2, "page_view", "2026-01-05T10:00Z", "c", "basic", None),
            ]
        ),
        sentiment(
            [
                (11, 1, D(2026, 1, 5), -0.8, "negative"),
                (12, 1, D(2026, 1, 5), 0.2, "positive"),
                (13, 3, D(2026, 1, 5), 0.0, "neutral"),
            ]
        ),
    ).set_index("customer_id")
    assert activity.loc[1, ["events", "logins", "purchases", "sessions"]].tolist() == [3, 1, 2, 2]
    assert activity.loc[1, "spend"] == pytest.approx(15.5)
    assert activity.loc[1, "plan"] == "enterprise"  # the latest event's plan
    assert activity.loc[1, ["tickets", "negative_tickets"]].tolist() == [2, 1]
    assert activity.loc[1, "mean_sentiment"] == pytest.approx(-0.3)
    assert pd.isna(activity.loc[2, "mean_sentiment"]) and activity.loc[2, "tickets"] == 0
    # A customer with a ticket but no events still gets a row.
    assert activity.loc[3, ["events", "tickets"]].tolist() == [0, 1]


def activity_rows(customer_id, days_events, tickets=None, cancel_day=None):
    rows = []
    for day, events in days_events.items():
        rows.append(
            {
                "customer_id": customer_id,
                "activity_date": day,
                "events": events,
                "logins": 0,
                "page_views": events,
                "feature_uses": 0,
                "support_visits": 0,
                "purchases": 0,
                "cancellations": int(day == cancel_day),
                "sessions": 1 if events else 0,
                "spend": 0.0,
                "plan": "pro" if events else None,
                "tickets": (tickets or {}).get(day, 0),
                "negative_tickets": 0,
                "mean_sentiment": -0.5 if (tickets or {}).get(day) else None,
                "min_sentiment": -0.5 if (tickets or {}).get(day) else None,
            }
        )
    return rows


def test_rolling_features_use_exactly_the_30_days_up_to_the_as_of_date():
    as_of = D(2026, 3, 1)
    days = {as_of - dt.timedelta(days=k): 1 for k in range(0, 40)}  # one event a day for 40 days
    frame = pd.DataFrame(activity_rows(1, days, tickets={as_of - dt.timedelta(days=3): 2}))
    features = compute_customer_features(frame, [as_of.isoformat()]).set_index("customer_id")
    row = features.loc[1]
    assert row["as_of_date"] == as_of
    assert (row["events_7d"], row["events_30d"]) == (7, 30)
    assert (row["active_days_7d"], row["active_days_30d"]) == (7, 30)
    assert (row["tickets_7d"], row["tickets_30d"]) == (2, 2)
    assert row["mean_sentiment_30d"] == pytest.approx(-0.5)
    assert row["days_since_last_event"] == 0
    assert row["activity_trend"] == pytest.approx(1.0)
    assert bool(row["is_active"]) and row["plan"] == "pro"


def test_recency_trend_and_churned_customers():
    as_of = D(2026, 3, 1)
    fading = {as_of - dt.timedelta(days=k): (0 if k < 10 else 2) for k in range(0, 30)}
    cancelled = {as_of - dt.timedelta(days=k): 1 for k in range(5, 30)}
    frame = pd.DataFrame(
        activity_rows(1, fading) + activity_rows(2, cancelled, cancel_day=as_of - dt.timedelta(days=5))
    )
    features = compute_customer_features(frame, [as_of.isoformat()]).set_index("customer_id")
    assert features.loc[1, "days_since_last_event"] == 10
    assert features.loc[1, "activity_trend"] == pytest.approx(0.0)
    assert pd.isna(features.loc[1, "mean_sentiment_30d"])  # no tickets: missing, not zero
    assert not features.loc[2, "is_active"]  # cancelled in the window


def test_several_as_of_dates_in_one_call_equal_one_by_one():
    as_of_dates = ["2026-03-01", "2026-03-02", "2026-03-03"]
    days = {D(2026, 3, 3) - dt.timedelta(days=k): (k % 4) for k in range(0, 40)}
    frame = pd.DataFrame(activity_rows(1, days) + activity_rows(2, {D(2026, 2, 20): 3}))
    together = compute_customer_features(frame, as_of_dates)
    separately = pd.concat([compute_customer_features(frame, [d]) for d in as_of_dates], ignore_index=True)
    pd.testing.assert_frame_equal(together, separately)
