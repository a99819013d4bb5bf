"""When derived partitions refresh: the ``on upstream change`` condition and the sensor that
evaluates every asset's condition.

The other things that start runs: the landing sensor (``logs/sensors.py``) and the schedules
(``schedules.py``); failures are reported by ``alerts/sensors.py``.
"""

import datetime as dt
import json
from collections.abc import Sequence

import dagster as dg

from churn_platform.orchestration import kubernetes


def on_upstream_change(lookback: dt.timedelta, ignore: Sequence[dg.AssetKey] = ()) -> dg.AutomationCondition:
    """Materialize a partition when a partition it reads was updated (or it newly became missing
    with everything it reads present), not while its inputs are still being written.

    Blocking checks are not part of it: a single-run backfill records its checks' results without a
    partition, so "every upstream partition's blocking checks passed" would never hold for days
    that arrived in a range. Raw data that must not flow on fails its own materialization instead
    (the landing contract's quarantine limit, an unusual volume: logs/assets.py).

    Like ``AutomationCondition.eager()``, but looking back ``lookback`` instead of only the latest
    partition, so that late files for recent days flow downstream too. ``ignore``: dependencies
    that only point at "the latest" of something (the champion model, the newest training set); a
    new model does not re-score history.
    """
    deps_updated = dg.AutomationCondition.any_deps_updated()
    deps_missing = dg.AutomationCondition.any_deps_missing()
    deps_in_progress = dg.AutomationCondition.any_deps_in_progress()
    if ignore:
        ignored = dg.AssetSelection.assets(*ignore)
        deps_updated, deps_missing, deps_in_progress = (
            c.ignore(ignored) for c in (deps_updated, deps_missing, deps_in_progress)
        )
    return (
        dg.AutomationCondition.in_latest_time_window(lookback_delta=lookback)
        & (dg.AutomationCondition.newly_missing() | deps_updated).since_last_handled()
        & ~deps_missing
        & ~deps_in_progress
        & ~dg.AutomationCondition.in_progress()
    ).with_label("on upstream change")


def build_automation_sensor(
    minimum_interval_seconds: int, running: bool
) -> dg.AutomationConditionSensorDefinition:
    """Evaluates every asset's automation condition; replaces Dagster's default sensor so that the
    interval and the default status come from configuration."""
    return dg.AutomationConditionSensorDefinition(
        "churn_automation",
        target=dg.AssetSelection.all(),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status(running),
        description="Brings derived partitions up to date when the partitions they read change.",
        # Its runs may hold features or labels (Spark driver or DuckDB in the pod): size for those.
        run_tags=kubernetes.run_tags("spark_driver"),
    )


def default_status(running: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED


def read_json_cursor(context: dg.SensorEvaluationContext) -> dict:
    """A sensor's JSON-object cursor, or an empty one, with a warning, when it is anything else:
    an unreadable cursor must not fail every tick."""
    try:
        cursor = json.loads(context.cursor) if context.cursor else {}
        if isinstance(cursor, dict):
            return cursor
    except ValueError:
        pass
    context.log.warning(f"unreadable sensor cursor {context.cursor[:100]!r} reset")
    return {}
