"""The contract of raw/inference_logs: one row per prediction the scoring service answered."""

from churn_platform.contracts.declare import Column, Contract, Rule

INFERENCE_LOGS = Contract(
    asset="raw/inference_logs",
    columns=(
        Column(
            "request_id", "string", "the request that asked (a batch's predictions share it)", nullable=False
        ),
        Column("answered_at", "timestamp[us, UTC]", "when the service answered", nullable=False),
        Column("customer_id", "int64", "the customer scored (null: a posted feature row without an id)"),
        Column("model_version", "string", "the registered model version that scored", nullable=False),
        Column("model_sha256", "string", "SHA-256 of that version's files", nullable=False),
        Column("features_as_of", "date", "the online features' as-of date (null: posted features)"),
        Column("churn_probability", "float64", "the score", nullable=False, minimum=0),
        Column("latency_ms", "float64", "the request's time in the service", nullable=False, minimum=0),
        Column("endpoint", "string", "customer, batch, features or zendesk_webhook", nullable=False),
        Column("caller", "string", "X-Caller header, or api / zendesk-webhook", nullable=False),
    ),
    rules=(
        Rule("line_format", "request_id", "each line a JSON object of the request's fields and two lists"),
        Rule("customer_id_integer", "customer_id", "a JSON integer or null (never rounded)"),
        Rule("probability_range", "churn_probability", "a number in [0, 1]"),
        Rule("answered_on_day", "answered_at", "on the UTC day of the file's folder"),
    ),
)
