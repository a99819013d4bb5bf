"""How steps that call other systems retry."""

import dagster as dg

# Steps that call the CRM, the object stores or MLflow: transient faults (throttling, a node
# restarting) usually pass within seconds. Jitter keeps parallel retries from arriving together.
# Failures that retrying cannot fix raise dg.Failure(allow_retries=False) instead.
EXTERNAL_CALL_RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
