"""Freshness SLAs per partition: by when each daily partition of an asset must exist, and which
partitions are late.

Two layers, from one set of deadlines (``CHURN_FRESHNESS_*``, ``settings/freshness.py``):

- Dagster's own ``FreshnessPolicy`` (a cron deadline) on each asset, which the daemon evaluates per
  asset from its latest materialization. It cannot see partitions: a backfill of an old day at
  01:00 makes the asset look fresh while yesterday is missing.
- ``late_partitions``: a plain function over the partitions materialized, which lists every
  partition whose own deadline passed within the look-back and that does not exist. The
  ``partition_freshness`` sensor (``alerts/freshness.py``) records its answer as the asset check
  ``partitions_on_time`` and alerts each late partition once; the exporter counts them.

The deadlines travel with the definitions: ``with_freshness`` writes each one into its asset's
metadata (``partition_deadline``), from which the sensor and the exporter read them back
(``deadlines_from_graph``), so the three can never disagree.
"""

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from churn_platform.settings import FreshnessSettings
from churn_platform.settings.freshness import DEFAULT_DEADLINES, deadline_minutes

PARTITIONS_ON_TIME = "partitions_on_time"
if TYPE_CHECKING:
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

DEADLINE_METADATA = "partition_deadline"  # "HH:MM", UTC, after the partition closes
LOOKBACK_METADATA = "partition_deadline_lookback_days"
LATE_ALERT_PREFIX = "late:"  # alert ids: late:<asset>:<partition>
DAY = dt.timedelta(days=1)

# Every asset that can have a deadline carries the `partitions_on_time` check, whether its deadline
# is switched on or not: the jobs leave these checks out by key (jobs.py), so the keys are fixed.
DEADLINE_ASSETS = tuple(dg.AssetKey.from_user_string(asset) for asset in DEFAULT_DEADLINES)
DEADLINE_CHECK_KEYS = tuple(dg.AssetCheckKey(key, PARTITIONS_ON_TIME) for key in DEADLINE_ASSETS)


def format_offset(offset: dt.timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def humanize(delta: dt.timedelta) -> str:
    """``1d 4h 05m``: how late, for people."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    text = f"{rest // 60}h {rest % 60:02d}m"
    return f"{days}d {text}" if days else text


@dataclass(frozen=True)
class Deadline:
    """A partition of ``partitions_def`` must exist ``after_close`` after it closes; partitions whose
    deadline passed more than ``lookback_days`` ago are no longer evaluated."""

    after_close: dt.timedelta
    partitions_def: dg.TimeWindowPartitionsDefinition
    lookback_days: int = 7

    def __post_init__(self) -> None:
        if self.partitions_def.cron_schedule != "0 0 * * *" or self.partitions_def.timezone != "UTC":
            raise ValueError(f"partition deadlines need daily UTC partitions, not {self.partitions_def}")

    @property
    def label(self) -> str:
        return format_offset(self.after_close)

    @property
    def lead(self) -> dt.timedelta:
        """From the start of a partition to its deadline: its day, for partitions that exist only
        ``-end_offset`` days after their day (labelled dates) those days, then ``after_close``."""
        return DAY * (1 - self.partitions_def.end_offset) + self.after_close

    def due(self, partition: str) -> dt.datetime:
        start = dt.datetime.strptime(partition, self.partitions_def.fmt).replace(tzinfo=dt.UTC)
        return start + self.lead

    def due_partitions(self, now: dt.datetime) -> list[tuple[str, dt.datetime]]:
        """(partition, deadline) of every partition whose deadline fell in the look-back window
        (now - lookback_days, now], oldest first; none before the first partition."""
        since = now - DAY * self.lookback_days
        day = (since - self.lead).replace(hour=0, minute=0, second=0, microsecond=0)
        due = []
        while day + self.lead <= now:
            if day + self.lead > since and day >= self.partitions_def.start:
                due.append((day.strftime(self.partitions_def.fmt), day + self.lead))
            day += DAY
        return due

    def describe(self) -> str:
        when = "the day after the partition's day"
        if self.partitions_def.end_offset:
            when = "the day its outcome window has elapsed"
        return f"by {self.label} UTC, counted from 00:00 of {when}"


@dataclass(frozen=True)
class LatePartition:
    asset: dg.AssetKey
    partition: str
    deadline: dt.datetime
    late_by: dt.timedelta

    @property
    def alert_id(self) -> str:
        """Stable across ticks: the outbox stores and sends each late partition once."""
        return f"{LATE_ALERT_PREFIX}{self.asset.to_user_string()}:{self.partition}"


def late_partitions(
    deadlines: Mapping[dg.AssetKey, Deadline],
    materialized: Mapping[dg.AssetKey, AbstractSet[str]],
    now: dt.datetime,
) -> list[LatePartition]:
    """Every partition past its deadline (within the look-back) that is not materialized, per asset.
    Partition by partition: an old day backfilled today does not hide a missing recent one."""
    late = []
    for asset, deadline in deadlines.items():
        present = materialized.get(asset, frozenset())
        for partition, due in deadline.due_partitions(now):
            if partition not in present:
                late.append(LatePartition(asset, partition, due, now - due))
    return late


def held_by_upstream(
    late: Sequence[LatePartition],
    deadlines: Mapping[dg.AssetKey, Deadline],
    parents: Mapping[dg.AssetKey, AbstractSet[dg.AssetKey]],
    arrived_at: Callable[[dg.AssetKey, str], float | None],
    now: dt.datetime,
) -> dict[str, str]:
    """Late partitions not worth an alert of their own (alert id -> why): the same partition of a
    parent with a deadline (same partitions) is late too, and its alert names the cause; or the
    parent's partition arrived late and this one still has the time its deadline leaves after the
    parent's. One missing raw day is one alert, not one per asset downstream of it."""
    missing = {(item.asset, item.partition) for item in late}
    held = {}
    for item in late:
        deadline = deadlines[item.asset]
        for parent in sorted(parents.get(item.asset, ()), key=lambda key: key.to_user_string()):
            upstream = deadlines.get(parent)
            if upstream is None or upstream.partitions_def != deadline.partitions_def:
                continue
            if (parent, item.partition) in missing:
                held[item.alert_id] = f"{parent.to_user_string()} {item.partition} is late too"
                break
            arrived = arrived_at(parent, item.partition)
            due = upstream.due(item.partition)
            if arrived is None or arrived <= due.timestamp():
                continue
            until = dt.datetime.fromtimestamp(arrived, dt.UTC) + max(
                dt.timedelta(0), deadline.after_close - upstream.after_close
            )
            if now < until:
                held[item.alert_id] = (
                    f"{parent.to_user_string()} {item.partition} arrived late; "
                    f"waiting until {until:%Y-%m-%d %H:%M} UTC"
                )
                break
    return held


def materialized_partitions(
    instance: dg.DagsterInstance, keys: Iterable[dg.AssetKey]
) -> dict[dg.AssetKey, set[str]]:
    return {key: set(instance.get_materialized_partitions(key)) for key in keys}


def partition_arrival(instance: dg.DagsterInstance) -> Callable[[dg.AssetKey, str], float | None]:
    """When a partition was last materialized (Unix time), or None."""

    def arrived_at(key: dg.AssetKey, partition: str) -> float | None:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records
        return records[0].timestamp if records else None

    return arrived_at


# -- what the UI and the alerts show ------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    passed: bool
    description: str
    metadata: dict


def evaluate(deadline: Deadline, late: Sequence[LatePartition], now: dt.datetime) -> Evaluation:
    """The `partitions_on_time` result of one asset: passed when none is late; the late partitions
    (with their deadline and how late) in the metadata."""
    due = deadline.due_partitions(now)
    listed = [
        {
            "partition": item.partition,
            "deadline": item.deadline.isoformat(),
            "late_by": humanize(item.late_by),
            "late_by_hours": round(item.late_by.total_seconds() / 3600, 2),
        }
        for item in late
    ]
    metadata = {
        "late_partitions": dg.MetadataValue.json(listed),
        "late_count": len(late),
        "partitions_due": len(due),
        "deadline": f"{deadline.label} UTC after the partition closes",
        "lookback_days": deadline.lookback_days,
        "evaluated_at": dg.MetadataValue.timestamp(now.timestamp()),
    }
    if late:
        parts = ", ".join(f"{item.partition} (by {humanize(item.late_by)})" for item in late[:10])
        more = f" and {len(late) - 10} more" if len(late) > 10 else ""
        return Evaluation(False, f"{len(late)} partition(s) past their deadline: {parts}{more}", metadata)
    return Evaluation(
        True,
        f"all {len(due)} partition(s) due in the last {deadline.lookback_days} days exist",
        metadata,
    )


# -- the definitions -----------------------------------------------------------------------------------
def freshness_policy(deadline: Deadline) -> dg.FreshnessPolicy:
    """Dagster's per-asset view of the deadline: materialized between 00:00 and the deadline each
    day (a cron deadline looks back at most a day)."""
    time_of_day = dt.timedelta(seconds=deadline.after_close.total_seconds() % DAY.total_seconds())
    minutes = int(time_of_day.total_seconds() // 60)
    window = deadline.after_close if deadline.after_close < DAY else DAY
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"{minutes % 60} {minutes // 60} * * *",
        lower_bound_delta=max(window, dt.timedelta(minutes=1)),
        timezone="UTC",
    )


def build_deadlines(
    settings: FreshnessSettings, assets: Iterable[dg.AssetsDefinition]
) -> dict[dg.AssetKey, Deadline]:
    """The switched-on deadlines of the given assets, with each asset's own partitions."""
    minutes = {dg.AssetKey.from_user_string(k): v for k, v in settings.minutes_by_asset().items()}
    deadlines = {}
    for asset in assets:
        for key in asset.keys:
            if key in minutes:
                deadlines[key] = Deadline(
                    dt.timedelta(minutes=minutes[key]), asset.partitions_def, settings.lookback_days
                )
    return deadlines


def deadlines_from_graph(graph: "AssetGraph") -> dict[dg.AssetKey, Deadline]:
    """The deadlines the definitions carry (asset metadata written by ``with_freshness``)."""
    deadlines = {}
    for key in DEADLINE_ASSETS:
        if not graph.has(key):
            continue
        node = graph.get(key)
        label = getattr(node.metadata.get(DEADLINE_METADATA), "value", node.metadata.get(DEADLINE_METADATA))
        if not label:
            continue
        lookback = node.metadata.get(LOOKBACK_METADATA)
        deadlines[key] = Deadline(
            dt.timedelta(minutes=deadline_minutes(str(label), DEADLINE_METADATA)),
            node.partitions_def,
            int(getattr(lookback, "value", lookback) or 7),
        )
    return deadlines


def _with_deadline(spec: dg.AssetSpec, deadline: Deadline) -> dg.AssetSpec:
    return spec.replace_attributes(
        freshness_policy=freshness_policy(deadline),
        metadata={
            **spec.metadata,
            DEADLINE_METADATA: deadline.label,
            LOOKBACK_METADATA: deadline.lookback_days,
        },
    )


def build_deadline_checks(
    deadlines: Mapping[dg.AssetKey, Deadline], interval_seconds: int
) -> dg.AssetChecksDefinition:
    """The `partitions_on_time` check of every asset that can have a deadline. The
    `partition_freshness` sensor records its result every few minutes without a run; executing it
    (the UI's *Execute*, or materializing the asset from the UI) evaluates it now."""
    specs = []
    for key in DEADLINE_ASSETS:
        deadline = deadlines.get(key)
        what = (
            f"Every partition exists {deadline.describe()}; checked over the partitions whose deadline "
            f"passed in the last {deadline.lookback_days} days, every {interval_seconds} s by the "
            "`partition_freshness` sensor, which alerts each late partition once (Slack, CRM)."
            if deadline
            else "No deadline is set for this asset (CHURN_FRESHNESS_ENABLED / CHURN_FRESHNESS_DEADLINES)."
        )
        specs.append(dg.AssetCheckSpec(PARTITIONS_ON_TIME, asset=key, description=what))

    @dg.multi_asset_check(specs=specs, can_subset=True, name="partition_deadlines")
    def partition_deadlines(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        now = dt.datetime.now(dt.UTC)
        for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.to_user_string()):
            deadline = deadlines.get(check_key.asset_key)
            if deadline is None:
                yield dg.AssetCheckResult(
                    asset_key=check_key.asset_key,
                    check_name=PARTITIONS_ON_TIME,
                    passed=True,
                    description="no deadline is set for this asset",
                )
                continue
            materialized = materialized_partitions(context.instance, [check_key.asset_key])
            late = late_partitions({check_key.asset_key: deadline}, materialized, now)
            result = evaluate(deadline, late, now)
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=PARTITIONS_ON_TIME,
                passed=result.passed,
                description=result.description,
                metadata=result.metadata,
            )

    return partition_deadlines


def with_freshness(
    assets: Sequence[dg.AssetsDefinition], settings: FreshnessSettings
) -> list[dg.AssetsDefinition]:
    """The assets with their deadlines (a ``FreshnessPolicy`` and the ``partition_deadline``
    metadata), followed by the `partitions_on_time` checks."""
    deadlines = build_deadlines(settings, assets)
    with_policies = [
        asset.map_asset_specs(lambda spec: _with_deadline(spec, deadlines[spec.key]))
        if any(key in deadlines for key in asset.keys)
        else asset
        for asset in assets
    ]
    return [*with_policies, build_deadline_checks(deadlines, settings.interval_seconds)]
