"""Concurrency pools: steps that share a scarce outside capacity claim a slot of its pool (``pool=``
on the asset), across every run of the instance.

The production instance (deploy/dagster.yaml) gives every pool one slot (``concurrency.pools.
default_limit: 1``) per step (``granularity: op``); raise one with
``dagster instance concurrency set <pool> <limit>``. Without a limit (the local instance) a pool
does not hold anything back.
"""

# Steps that call the CRM (Zendesk) API, which rate-limits per account: raw/crm_tickets.
CRM_API = "crm_api"

# Steps that run feature SQL on DuckDB or Spark, each taking every core it is given:
# features/customer_daily_activity, features/customer_features, ml/churn_labels.
FEATURE_ENGINE = "feature_engine"

# Model training, the heaviest step, which also registers the version the gate compares: ml/churn_model.
TRAINING = "training"

ALL = (CRM_API, FEATURE_ENGINE, TRAINING)
