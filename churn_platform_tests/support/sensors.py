"""Sensor evaluations as the daemon makes them, for tests that tick a sensor by hand."""

from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg


def sensor_ticker(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any],
    defs: dg.Definitions,
) -> Callable[[], str | None]:
    """One evaluation per call, as the daemon makes it: the cursor is kept even when the tick raises."""
    cursor: dict[str, str | None] = {"value": None}

    def tick() -> str | None:
        with dg.build_sensor_context(
            instance=instance, resources=resources, definitions=defs, cursor=cursor["value"]
        ) as context:
            try:
                return sensor(context).skip_message
            finally:
                cursor["value"] = context.cursor

    return tick
