"""churn_platform: a Dagster data platform for customer-churn models."""
