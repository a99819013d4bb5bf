"""Observability: what operators see of the platform without opening runs.

``collector.py`` reads the Dagster instance and the MLflow registry at scrape time and turns them
into Prometheus metrics (runs by job and status, stale runs, per-asset materializations, rows,
bytes, durations and freshness, partitions past their deadline, asset check results, quarantined
rows, the champion model, PSI per feature, promotion-gate decisions): plain functions the tests call, and ``PlatformCollector``, a
``prometheus_client`` collector that runs them under a time budget. ``exporter.py`` serves it on
``/metrics`` (`churn-platform metrics serve`). ``push.py`` holds the job hooks with which each run
pushes its own step durations, outcomes, rows and bytes to a Pushgateway.

Metric names start with ``churn_`` and carry their unit; labels are bounded: Dagster job, run
status, asset key, check name, feature name, never a partition key or a run id.

May import: settings, storage, orchestration (the shared layers); never a stage: the stages' assets
and checks are known through ``orchestration.asset_keys`` and the definitions the CLI passes in.
"""

from churn_platform.observability.collector import PlatformCollector, Scope
from churn_platform.observability.push import build_push_hooks

__all__ = ["PlatformCollector", "Scope", "build_push_hooks"]
