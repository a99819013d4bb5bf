"""The columns of the derived tables (sentiment, labels, training set, scores, drift): what each
column means, for the catalog. Their producers are the platform's own code, so these declare no
row rules; the raw and feature contracts are where bad input is caught."""

from churn_platform.contracts.declare import Column, Contract
from churn_platform.contracts.features import CUSTOMER_FEATURES

_ID = Column("customer_id", "int64", "the customer", nullable=False)
_AS_OF = Column("as_of_date", "date", "the day the row describes the customer as of", nullable=False)

TICKET_SENTIMENT = Contract(
    asset="enriched/ticket_sentiment",
    keys=("ticket_id",),
    columns=(
        Column("ticket_id", "int64", "the CRM ticket", nullable=False, unique=True),
        _ID,
        Column(
            "updated_date",
            "date",
            "the UTC day of the ticket's latest update (its partition)",
            nullable=False,
        ),
        Column("sentiment", "float64", "VADER compound score of subject + description, -1 (angry) to 1"),
        Column("sentiment_label", "string", "negative (<= -0.05), neutral or positive (>= 0.05)"),
    ),
)

CHURN_LABELS = Contract(
    asset="ml/churn_labels",
    keys=("as_of_date", "customer_id"),
    columns=(
        _AS_OF,
        _ID,
        Column("churned", "bool", "cancelled within the 30 days after the as-of date", nullable=False),
        Column("churn_date", "date", "the day of the cancellation; null when the customer stayed"),
    ),
)

TRAINING_SET = Contract(
    asset="ml/training_set",
    keys=("as_of_date", "customer_id"),
    columns=(
        *(c for c in CUSTOMER_FEATURES.columns if c.name != "is_active"),
        Column(
            "churned", "bool", "the label: cancelled within the 30 days after the as-of date", nullable=False
        ),
    ),
)

CHURN_SCORES = Contract(
    asset="ml/churn_scores",
    keys=("as_of_date", "customer_id"),
    columns=(
        _AS_OF,
        _ID,
        Column(
            "churn_probability",
            "float64",
            "the champion's probability of churning within 30 days",
            nullable=False,
        ),
        Column("risk_rank", "int64", "1 = the customer most likely to churn that day", nullable=False),
        Column("model_version", "string", "the registered model version that scored the row", nullable=False),
    ),
)

FEATURE_DRIFT = Contract(
    asset="ml/feature_drift",
    keys=("as_of_date", "feature"),
    columns=(
        _AS_OF,
        Column("feature", "string", "the feature compared with the newest training set", nullable=False),
        Column("psi", "float64", "population stability index against the training set (> 0.2: drifted)"),
        Column("drifted", "bool", "psi above the run's threshold", nullable=False),
    ),
)

PREDICTION_DRIFT = Contract(
    asset="ml/prediction_drift",
    keys=("date",),
    columns=(
        Column("date", "string", "the day the predictions were served", nullable=False),
        Column("served_predictions", "int64", "predictions served by id or batch that day", nullable=False),
        Column("reference_customers", "int64", "customers in the batch scores compared with", nullable=False),
        Column("served_mean", "float64", "mean served probability; null when nothing was served"),
        Column("reference_mean", "float64", "mean batch probability of the day before"),
        Column("psi", "float64", "PSI of the served probabilities against the batch scores; null when none"),
        Column("psi_threshold", "float64", "the threshold of the drift check", nullable=False),
        Column("drifted", "bool", "psi above the threshold", nullable=False),
    ),
)
