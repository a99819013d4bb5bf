"""The contract of raw/interaction_logs: the product events every later asset reads.

``EVENT_TYPES`` is the one declared list of event types: the landing rules accept only these, and
the features (daily counts, cancellations) and labels (a churner cancelled) are built on them, so a
renamed event upstream is quarantined and then fails the day instead of silently counting as
nothing.
"""

from churn_platform.contracts.declare import Column, Contract, Rule

LOGIN, PAGE_VIEW, FEATURE_USE, SUPPORT_VISIT, PURCHASE = (
    "login",
    "page_view",
    "feature_use",
    "support_visit",
    "purchase",
)
CANCEL_SUBSCRIPTION = "cancel_subscription"  # the event that makes a churner (ml/churn_labels)
EVENT_TYPES = (LOGIN, PAGE_VIEW, FEATURE_USE, SUPPORT_VISIT, PURCHASE, CANCEL_SUBSCRIPTION)
REQUIRED_FIELDS = ("customer_id", "event_type", "timestamp", "properties")

INTERACTION_LOGS = Contract(
    asset="raw/interaction_logs",
    columns=(
        Column(
            "event_date", "date", "UTC day of the event: the day folder the file landed in", nullable=False
        ),
        Column(
            "customer_id", "int64", 'the customer (a JSON integer: 12.7 or "12" is refused)', nullable=False
        ),
        Column("event_type", "string", f"one of {', '.join(EVENT_TYPES)}", nullable=False),
        Column(
            "timestamp",
            "timestamp[us, UTC]",
            "when it happened (ISO 8601; no zone means UTC)",
            nullable=False,
        ),
        Column("session_id", "string", "properties.session_id"),
        Column("plan", "string", "properties.plan (the customer's plan at the time)"),
        Column("amount", "float64", "properties.amount: money spent, for purchases (required there)"),
        Column(
            "properties", "string", "the event's original properties object, as JSON text", nullable=False
        ),
    ),
    rules=(
        *(Rule(f"{name}_required", name, "present and not null") for name in REQUIRED_FIELDS),
        Rule("properties_object", "properties", "a JSON object"),
        Rule("customer_id_integer", "customer_id", "a JSON integer (never rounded or parsed from text)"),
        Rule("timestamp_iso8601", "timestamp", "an ISO 8601 time"),
        Rule("timestamp_in_day", "timestamp", "on the UTC day of the file's folder"),
        Rule("event_type_known", "event_type", "one of the declared event types"),
        Rule("amount_number", "amount", "a JSON number when present"),
        Rule("amount_range", "amount", "between 0 and CHURN_MAX_EVENT_AMOUNT"),
        Rule("purchase_amount_required", "amount", "present on every purchase (a missing amount is not 0)"),
    ),
)


def rule_message(rule: str, value: object, day: str, amount_ceiling: int) -> str:
    """What a broken rule says about a row, naming the value (the messages the landing errors use)."""
    if rule.endswith("_required") and rule != "purchase_amount_required":
        field = rule.removesuffix("_required")
        return f"required field {field!r} is missing or null (every line needs {list(REQUIRED_FIELDS)})"
    return {
        "properties_object": "'properties' must be a JSON object",
        "customer_id_integer": f"customer_id {value!r} is not an integer",
        "timestamp_iso8601": f"timestamp {value!r} is not ISO 8601",
        "timestamp_in_day": (
            f"timestamp {value} is not on {day} (UTC); files must land in the folder of the day their events happened"
        ),
        "event_type_known": f"event_type {value!r} is not a declared event type {list(EVENT_TYPES)}",
        "amount_number": f"properties.amount {value!r} is not a number",
        "amount_range": f"properties.amount {value!r} is outside [0, {amount_ceiling}]",
        "purchase_amount_required": "a purchase without properties.amount (a missing amount is not 0)",
    }[rule]
