"""interaction_logs_landing_sensor: one run of raw/interaction_logs per day whose files changed.

Each tick lists only the day folders of the last ``lookback_days`` closed days (paginated, one
prefix per day), so a tick costs the same in a bucket of ten files or ten million. The cursor keeps
one fingerprint per day (file names and versions): a new file, a late file for a recent day, or a
file re-written under the same name (ETag/generation changes; dagster issue #22892 is exactly
this case for a since-key cursor) changes the fingerprint, and the run key
``<date>:<fingerprint>`` makes Dagster start one run per distinct state, however many ticks saw
it. A day is requested once its newest file is ``quiet_seconds`` old, so files uploaded together
make one run, not one per tick that caught part of the upload; a tick that finds a day still
settling waits out the rest of the quiet period and looks again, instead of a whole interval.
Nothing compares timestamps, so files written in the same second as the last tick are not lost
(``get_objects``'s strict ``>`` on one-second LastModified values would lose them).
"""

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg

from churn_platform.logs.assets import FINGERPRINTS_METADATA
from churn_platform.logs.landing_zone import LandingZone, fingerprint
from churn_platform.orchestration.asset_keys import INTERACTION_LOGS
from churn_platform.orchestration.automation import default_status, read_json_cursor
from churn_platform.settings import AutomationSettings
from churn_platform.storage.materializations import latest_materialization


@dataclass(frozen=True)
class LandingChanges:
    changed: dict[str, str]  # date -> new fingerprint, for days whose files changed
    cursor: dict[str, str]  # date -> fingerprint, for every day in the window that has files
    settling: dict[str, float] = field(default_factory=dict)  # date -> seconds until its files are quiet
    # date -> files whose modification time lies more than the quiet period ahead of this clock
    # (clock skew, a touched file): they do not hold their day back, and the sensor says so.
    future: dict[str, list[str]] = field(default_factory=dict)


def days_to_watch(
    daily: dg.TimeWindowPartitionsDefinition, now: dt.datetime, lookback_days: int
) -> list[str]:
    """The closed daily partitions of the last ``lookback_days`` days (a day's partition exists once it ends)."""
    return list(daily.get_partition_keys(current_time=now)[-lookback_days:])


def detect_changes(
    landing_zone: LandingZone,
    days: Sequence[str],
    cursor: dict[str, str],
    now: float | None = None,
    quiet_seconds: float = 0,
) -> LandingChanges:
    """Compare each day's fingerprint with the cursor's. Days without files are left out. A day
    whose newest file is younger than ``quiet_seconds`` is still arriving: it keeps its old cursor
    entry and is looked at again next tick, so a burst of files makes one run, not one per tick."""
    now = time.time() if now is None else now
    changed, current, settling, future = {}, {}, {}, {}
    for day in days:
        files = landing_zone.list_day(day)
        if not files:
            continue
        day_fingerprint = fingerprint(files)
        # A little ahead (skew within the quiet period) counts as "just now"; far ahead is ignored
        # here, or a file dated tomorrow would hold its day back until tomorrow.
        ahead = [f.name for f in files if f.modified > now + quiet_seconds]
        if ahead:
            future[day] = ahead
        recent = [min(f.modified, now) for f in files if f.name not in ahead]
        quiet_in = quiet_seconds - (now - max(recent)) if recent else 0.0
        if cursor.get(day) == day_fingerprint:
            current[day] = day_fingerprint
        elif quiet_in > 0:
            settling[day] = quiet_in
            if day in cursor:
                current[day] = cursor[day]
        else:
            changed[day] = current[day] = day_fingerprint
    return LandingChanges(changed, current, settling, future)


def already_materialized(instance: dg.DagsterInstance, day: str, day_fingerprint: str) -> bool:
    """Whether the latest materialization of the day read exactly these files (a lost or reset
    cursor then does not re-run every recent day)."""
    entry = latest_materialization(instance, INTERACTION_LOGS, day)
    if entry is None:
        return False
    metadata = entry.asset_materialization.metadata
    entry = metadata.get(FINGERPRINTS_METADATA)
    return entry is not None and entry.value.get(day) == day_fingerprint


def build_landing_sensor(
    settings: AutomationSettings, daily: dg.TimeWindowPartitionsDefinition
) -> dg.SensorDefinition:
    lookback_days, quiet_seconds = settings.landing_lookback_days, settings.landing_quiet_seconds

    @dg.sensor(
        name="interaction_logs_landing_sensor",
        target=[INTERACTION_LOGS],
        minimum_interval_seconds=settings.landing_sensor_interval_seconds,
        default_status=default_status(settings.running),
        description=(
            f"Requests raw/interaction_logs for each of the last {lookback_days} days whose landing "
            f"files were added, re-written or removed (once they have been quiet for {quiet_seconds} s); "
            "one run per day and state of its files."
        ),
    )
    def interaction_logs_landing_sensor(
        context: dg.SensorEvaluationContext, landing_zone: LandingZone
    ) -> dg.SensorResult:
        cursor = read_json_cursor(context)
        days = days_to_watch(daily, dt.datetime.now(dt.UTC), lookback_days)
        changes = detect_changes(landing_zone, days, cursor, quiet_seconds=quiet_seconds)
        if changes.settling:
            # Files are still arriving: wait out the quiet period (never longer) in this tick and
            # look again, rather than leaving the day for the next tick, a whole interval later. A
            # file landing meanwhile restarts the wait, for the next tick.
            time.sleep(min(max(changes.settling.values()), quiet_seconds))
            changes = detect_changes(landing_zone, days, cursor, quiet_seconds=quiet_seconds)
        for day, names in changes.future.items():
            context.log.warning(
                f"landing files for {day} are dated in the future ({', '.join(names[:5])}): not waited for"
            )
        requests = [
            dg.RunRequest(
                run_key=f"{day}:{day_fingerprint[:16]}",
                partition_key=day,
                asset_selection=[INTERACTION_LOGS],
            )
            for day, day_fingerprint in sorted(changes.changed.items())
            if not already_materialized(context.instance, day, day_fingerprint)
        ]
        skip = None if requests else dg.SkipReason(f"no new or changed files for {days[0]}..{days[-1]}")
        return dg.SensorResult(
            run_requests=requests, cursor=json.dumps(changes.cursor, sort_keys=True), skip_reason=skip
        )

    return interaction_logs_landing_sensor
