"""drift_retraining: the retraining job, requested once when feature drift persists.

Weekly retraining (``orchestration/schedules.py``) stays; this sensor adds a run when
``ml/feature_drift`` was above its PSI threshold on ``CHURN_DRIFT_RETRAINING_DAYS`` consecutive days
up to the newest day measured. One streak of drifted days requests one run (run key
``drift:<first day>``; the cursor remembers the streak), trained on the newest labelled day. If a
model was already trained on that day, retraining could only repeat it: the sensor waits for the
next day's labels instead. The run carries its reason in tags, which the alerts post.
"""

import json

import dagster as dg

from churn_platform.ml.drift import DriftStreak, drift_streak
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.automation import default_status, read_json_cursor
from churn_platform.orchestration.jobs import training_job
from churn_platform.orchestration.run_tags import DRIFT_TRIGGER, TRIGGER_REASON_TAG, TRIGGER_TAG
from churn_platform.settings import AutomationSettings
from churn_platform.storage.materializations import latest_materialization

# How far back a streak is followed (the PSI of older days is read from the event log).
STREAK_LOOKBACK_DAYS = 90


def measured_drift(
    instance: dg.DagsterInstance, lookback_days: int = STREAK_LOOKBACK_DAYS
) -> tuple[dict[str, float], dict[str, list[str]], float | None]:
    """Each recently measured day's largest PSI and drifted features, from the newest
    materialization of its ``ml/feature_drift`` partition, and the threshold the newest day used."""
    measured = sorted(instance.get_materialized_partitions(keys.FEATURE_DRIFT))[-lookback_days:]
    if not measured:
        return {}, {}, None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=keys.FEATURE_DRIFT, asset_partitions=measured),
        limit=len(measured) * 4,
    ).records
    max_psi, drifted, threshold = {}, {}, None
    for record in records:  # newest first: the first record of a partition is its current state
        materialization = record.asset_materialization
        day, meta = materialization.partition, materialization.metadata
        if day in max_psi or "max_psi_by_day" not in meta:
            continue
        by_day = meta["max_psi_by_day"].value
        if day not in by_day:  # the day had no active customers
            continue
        max_psi[day] = float(by_day[day])
        drifted[day] = list(meta["drifted_features_by_day"].value.get(day, []))
        if day == measured[-1]:
            threshold = float(meta["psi_threshold"].value)
    return max_psi, drifted, threshold


def newest_labelled_day(instance: dg.DagsterInstance) -> str | None:
    """The newest as-of date with churn labels: the latest cutoff a model can be trained on."""
    labelled = instance.get_materialized_partitions(keys.CHURN_LABELS)
    return max(labelled) if labelled else None


def retraining_request(streak: DriftStreak, cutoff: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"drift:{streak.start}",
        partition_key=cutoff,
        tags={TRIGGER_TAG: DRIFT_TRIGGER, TRIGGER_REASON_TAG: streak.reason()[:1000]},
    )


def build_drift_retraining_sensor(settings: AutomationSettings) -> dg.SensorDefinition:
    min_days = settings.drift_retraining_days

    @dg.sensor(
        name="drift_retraining",
        job=training_job,
        minimum_interval_seconds=max(settings.automation_interval_seconds, 60),
        default_status=default_status(settings.running),
        description=f"Requests the retraining job once when feature drift stays above its threshold "
        f"for {min_days} consecutive days (CHURN_DRIFT_RETRAINING_DAYS; 0 turns it off).",
    )
    def drift_retraining(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        if min_days == 0:
            return dg.SkipReason("drift-triggered retraining is off (CHURN_DRIFT_RETRAINING_DAYS=0)")
        max_psi, drifted, threshold = measured_drift(context.instance)
        streak = drift_streak(max_psi, drifted, threshold or 0.0, min_days) if threshold is not None else None
        if streak is None:
            return dg.SkipReason(f"no feature drift above its threshold on {min_days} consecutive days")
        cursor = read_json_cursor(context)
        if cursor.get("requested_for_streak_from") == streak.start:
            return dg.SkipReason(f"retraining already requested for the drift since {streak.start}")
        cutoff = newest_labelled_day(context.instance)
        if cutoff is None:
            return dg.SkipReason(f"{streak.reason()}, but no day has churn labels to train on yet")
        if latest_materialization(context.instance, keys.CHURN_MODEL, cutoff) is not None:
            return dg.SkipReason(
                f"{streak.reason()}, but a model was already trained on the newest labelled day "
                f"{cutoff}; retraining waits for newer labels"
            )
        context.log.info(f"requesting retraining on {cutoff}: {streak.reason()}")
        return dg.SensorResult(
            run_requests=[retraining_request(streak, cutoff)],
            cursor=json.dumps({"requested_for_streak_from": streak.start}),
        )

    return drift_retraining
