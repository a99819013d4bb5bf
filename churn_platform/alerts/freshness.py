"""partition_freshness: every few minutes, which daily partitions missed their deadline
(``orchestration/freshness.py``), recorded as each asset's `partitions_on_time` check and alerted
once per late partition through the durable outbox (``outbox.py``)."""

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

import dagster as dg

from churn_platform.alerts.messages import late_crm_ticket, late_slack_message
from churn_platform.alerts.resources import SlackWebhook
from churn_platform.alerts.sensors import outbox_for, payloads_for, raise_if_failed, senders
from churn_platform.crm.resources import CRMResource
from churn_platform.orchestration.automation import default_status, read_json_cursor
from churn_platform.orchestration.freshness import (
    LATE_ALERT_PREFIX,
    PARTITIONS_ON_TIME,
    Deadline,
    LatePartition,
    deadlines_from_graph,
    evaluate,
    held_by_upstream,
    late_partitions,
    materialized_partitions,
    partition_arrival,
)
from churn_platform.settings import AlertSettings, FreshnessSettings

if TYPE_CHECKING:
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph


def record_evaluations(
    instance: dg.DagsterInstance,
    deadlines: Mapping[dg.AssetKey, Deadline],
    late: Sequence[LatePartition],
    now: dt.datetime,
    recorded: Mapping[str, list],
) -> dict[str, list]:
    """Report each asset's `partitions_on_time` result without a run when it differs from the one
    recorded last (``recorded``: asset -> [late partitions, latest materialization]) or the asset was
    materialized since (the UI shows a check's result against the latest materialization). Returns
    what is recorded now."""
    latest = {
        record.asset_entry.asset_key: record.asset_entry.last_materialization_record
        for record in instance.get_asset_records(list(deadlines))
    }
    state = {}
    for asset, deadline in deadlines.items():
        mine = [item for item in late if item.asset == asset]
        materialization = latest.get(asset)
        fingerprint = [
            [item.partition for item in mine],
            materialization.storage_id if materialization else None,
        ]
        name = asset.to_user_string()
        state[name] = fingerprint
        if recorded.get(name) == fingerprint:
            continue
        result = evaluate(deadline, mine, now)
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=asset,
                check_name=PARTITIONS_ON_TIME,
                passed=result.passed,
                description=result.description,
                metadata=result.metadata,
                severity=dg.AssetCheckSeverity.ERROR,
                blocking=False,
            )
        )
    return state


def parents_of(graph: "AssetGraph", keys: AbstractSet[dg.AssetKey]) -> dict[dg.AssetKey, set[dg.AssetKey]]:
    return {key: set(graph.get(key).parent_keys) for key in keys}


def arrived_partitions(
    pending: Sequence[tuple[str, str, int, str | None]], materialized: Mapping[dg.AssetKey, AbstractSet[str]]
) -> set[str]:
    """Ids of pending late alerts whose partition has been materialized since."""
    arrived = set()
    for alert_id, *_ in pending:
        if not alert_id.startswith(LATE_ALERT_PREFIX):
            continue
        asset, _, partition = alert_id[len(LATE_ALERT_PREFIX) :].rpartition(":")
        if partition in materialized.get(dg.AssetKey.from_user_string(asset), ()):
            arrived.add(alert_id)
    return arrived


def build_partition_freshness_sensor(
    settings: FreshnessSettings,
    alerts: AlertSettings,
    running: bool,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    ui_url = alerts.dagster_ui_url

    @dg.sensor(
        name="partition_freshness",
        minimum_interval_seconds=settings.interval_seconds,
        default_status=default_status(running),
        description="Evaluates each daily partition against its asset's deadline (CHURN_FRESHNESS_*): "
        "records the `partitions_on_time` check and alerts each late partition once (Slack, CRM) "
        "through the durable alert outbox.",
    )
    def partition_freshness(
        context: dg.SensorEvaluationContext, slack: SlackWebhook, crm: CRMResource
    ) -> dg.SkipReason:
        graph = context.repository_def.asset_graph
        deadlines = deadlines_from_graph(graph)
        if not deadlines:
            return dg.SkipReason(
                "no partition deadlines (CHURN_FRESHNESS_ENABLED, CHURN_FRESHNESS_DEADLINES)"
            )
        instance, now = context.instance, dt.datetime.fromtimestamp(clock(), dt.UTC)
        materialized = materialized_partitions(instance, deadlines)
        late = late_partitions(deadlines, materialized, now)
        cursor = read_json_cursor(context)
        recorded = record_evaluations(instance, deadlines, late, now, cursor.get("recorded", {}))

        held = held_by_upstream(
            late, deadlines, parents_of(graph, set(deadlines)), partition_arrival(instance), now
        )
        outbox = outbox_for(instance, alerts)
        alerted = [item for item in late if item.alert_id not in held]
        for item in alerted:  # stored before any attempt, under a stable id: never lost, never doubled
            outbox.enqueue(
                item.alert_id,
                payloads_for(
                    slack, alerts.crm_tickets, late_slack_message(item, ui_url), late_crm_ticket(item, ui_url)
                ),
            )
        for alert_id in arrived_partitions(outbox.pending(), materialized):
            outbox.withdraw(alert_id, "the partition arrived before the alert was delivered")
        # The cursor only saves evaluations already recorded; the outbox holds the alerts.
        context.update_cursor(json.dumps({"recorded": recorded}))
        if late:
            context.log.warning(
                "late partitions: "
                + ", ".join(f"{item.asset.to_user_string()} {item.partition}" for item in late[:20])
                + (f" and {len(late) - 20} more" if len(late) > 20 else "")
            )
        for alert_id, why in sorted(held.items()):
            context.log.info(f"{alert_id} not alerted: {why}")
        report = outbox.deliver_due(senders(slack, crm, alerts, context.log))
        raise_if_failed(report)
        return dg.SkipReason(
            f"{len(late)} late partition(s) of {len(deadlines)} assets with deadlines; "
            f"{len(alerted)} alerted, {len(held)} waiting on upstream; delivered {len(report.delivered)}"
        )

    return partition_freshness
