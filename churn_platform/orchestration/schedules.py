"""Partitioned schedules: yesterday's ingestion every day, retraining every week.

Partitions are UTC days; the schedules' cron and time zone are configuration (CHURN_INGESTION_CRON,
CHURN_RETRAINING_CRON, CHURN_SCHEDULE_TIMEZONE). Each tick requests the newest partition that
has closed at the tick's scheduled time, so a late or replayed tick still picks the right day.
"""

from typing import Any

import dagster as dg

from churn_platform.orchestration.jobs import daily_ingestion_job, training_job
from churn_platform.orchestration.partitions import PlatformPartitions
from churn_platform.settings import AutomationSettings


def newest_closed_partition(
    partitions: dg.TimeWindowPartitionsDefinition, context: dg.ScheduleEvaluationContext
) -> str | None:
    keys = partitions.get_partition_keys(current_time=context.scheduled_execution_time)
    return keys[-1] if keys else None


def _partitioned_schedule(
    name: str,
    job: Any,
    partitions: dg.TimeWindowPartitionsDefinition,
    cron: str,
    settings: AutomationSettings,
    description: str,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone=settings.schedule_timezone,
        description=description,
        default_status=dg.DefaultScheduleStatus.RUNNING
        if settings.running
        else dg.DefaultScheduleStatus.STOPPED,
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        partition = newest_closed_partition(partitions, context)
        if partition is None:
            return dg.SkipReason(
                f"no {job.name} partition has closed yet at {context.scheduled_execution_time}"
            )
        return dg.RunRequest(run_key=partition, partition_key=partition)

    return _schedule


def build_schedules(
    settings: AutomationSettings, partitions: PlatformPartitions
) -> list[dg.ScheduleDefinition]:
    return [
        _partitioned_schedule(
            "daily_ingestion_schedule",
            daily_ingestion_job,
            partitions.daily,
            settings.ingestion_cron,
            settings,
            "Yesterday's raw tickets and logs, sentiment, daily activity and customer features.",
        ),
        _partitioned_schedule(
            "weekly_retraining_schedule",
            training_job,
            partitions.labelled,
            settings.retraining_cron,
            settings,
            "Retrain on the newest labelled date (its 30-day outcome window has just closed); the "
            "promotion gate decides whether the new model serves.",
        ),
    ]
