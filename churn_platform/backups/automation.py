"""When the metadata is backed up: every day (``metadata_backup_schedule``) and after every
successful retraining run (``metadata_backup_after_training``), so a promotion is in a backup
within minutes rather than by the next day."""

import dagster as dg

from churn_platform.orchestration.automation import default_status
from churn_platform.orchestration.jobs import metadata_backup_job, training_job
from churn_platform.settings import AutomationSettings


def build_metadata_backup_schedule(settings: AutomationSettings) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="metadata_backup_schedule",
        job=metadata_backup_job,
        cron_schedule=settings.metadata_backup_cron,
        execution_timezone=settings.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING
        if settings.running
        else dg.DefaultScheduleStatus.STOPPED,
        description="Daily copy of the Dagster instance and the MLflow store into the backup store.",
    )


def build_metadata_backup_sensor(settings: AutomationSettings) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        name="metadata_backup_after_training",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[training_job],
        request_job=metadata_backup_job,
        default_status=default_status(settings.running),
        description="Backs up the instance and the MLflow store after each successful retraining run.",
    )
    def metadata_backup_after_training(context: dg.RunStatusSensorContext) -> dg.RunRequest:
        return dg.RunRequest(run_key=f"after:{context.dagster_run.run_id}")

    return metadata_backup_after_training
