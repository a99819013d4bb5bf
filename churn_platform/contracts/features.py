"""The contracts of the feature assets: one row per customer and day (or as-of date), counts and
money never negative, ids never null, and a ceiling on how much of a column may be missing."""

from churn_platform.contracts.declare import Column, Contract

_COUNT = "int64"


def _counts(*names_and_meanings: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(
        Column(name, _COUNT, meaning, nullable=False, minimum=0) for name, meaning in names_and_meanings
    )


CUSTOMER_DAILY_ACTIVITY = Contract(
    asset="features/customer_daily_activity",
    keys=("customer_id", "activity_date"),
    columns=(
        Column("customer_id", _COUNT, "the customer", nullable=False),
        Column("activity_date", "date", "the UTC day", nullable=False),
        *_counts(
            ("events", "events of any type that day"),
            ("logins", "login events"),
            ("page_views", "page_view events"),
            ("feature_uses", "feature_use events"),
            ("support_visits", "support_visit events"),
            ("purchases", "purchase events"),
            ("cancellations", "cancel_subscription events (what makes a churner)"),
            ("sessions", "distinct sessions"),
        ),
        Column("spend", "float64", "sum of purchase amounts", nullable=False, minimum=0),
        Column("plan", "string", "the plan of the day's last event with one (null: no event that day)"),
        *_counts(
            ("tickets", "support tickets last updated that day"), ("negative_tickets", "of which negative")
        ),
        Column("mean_sentiment", "float64", "mean VADER sentiment of the day's tickets (null: no ticket)"),
        Column("min_sentiment", "float64", "lowest VADER sentiment of the day's tickets (null: no ticket)"),
    ),
)

CUSTOMER_FEATURES = Contract(
    asset="features/customer_features",
    keys=("customer_id", "as_of_date"),
    columns=(
        Column("as_of_date", "date", "the day the features describe (its last 30 days)", nullable=False),
        Column("customer_id", _COUNT, "the customer", nullable=False),
        *_counts(
            ("events_7d", "events in the last 7 days"),
            ("events_30d", "events in the last 30 days"),
            ("sessions_7d", "sessions in the last 7 days"),
            ("sessions_30d", "sessions in the last 30 days"),
            ("active_days_7d", "days with events in the last 7"),
            ("active_days_30d", "days with events in the last 30"),
            ("feature_uses_30d", "feature uses in the last 30 days"),
            ("support_visits_30d", "support visits in the last 30 days"),
            ("purchases_30d", "purchases in the last 30 days"),
            ("tickets_7d", "tickets in the last 7 days"),
            ("tickets_30d", "tickets in the last 30 days"),
            ("negative_tickets_30d", "negative tickets in the last 30 days"),
        ),
        Column("spend_7d", "float64", "money spent in the last 7 days", nullable=False, minimum=0),
        Column("spend_30d", "float64", "money spent in the last 30 days", nullable=False, minimum=0),
        Column("mean_sentiment_30d", "float64", "mean ticket sentiment over 30 days (null: no ticket)"),
        Column("min_sentiment_30d", "float64", "lowest ticket sentiment over 30 days (null: no ticket)"),
        Column(
            "days_since_last_event",
            "float64",
            "days since the last day with events (null: none in 30 days)",
            minimum=0,
        ),
        Column(
            "activity_trend",
            "float64",
            "daily events of the last 7 days over those of the 23 before (null: idle before)",
            minimum=0,
        ),
        Column(
            "plan",
            "string",
            "the customer's latest known plan",
            max_null_fraction=0.5,  # most customers have events with a plan; far more nulls is a broken feed
        ),
        Column(
            "is_active",
            "bool",
            "used the product in the window and has not cancelled: scored",
            nullable=False,
        ),
    ),
)
