"""What the automation looks like to Dagster: sensors, schedules, conditions and retry policies,
all shaped by configuration only."""

import datetime as dt

import dagster as dg
import pytest

from churn_platform.definitions import build_definitions
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import build_partitions
from churn_platform.orchestration.schedules import newest_closed_partition
from churn_platform.settings import SettingsError, load_settings

AUTOMATED = [
    keys.TICKET_SENTIMENT,
    keys.CUSTOMER_DAILY_ACTIVITY,
    keys.CUSTOMER_FEATURES,
    keys.CHURN_LABELS,
    keys.CHURN_SCORES,
    keys.FEATURE_DRIFT,
    keys.ONLINE_CUSTOMER_FEATURES,
    keys.INFERENCE_LOGS,  # on a cron: the day's log is complete after midnight
    keys.PREDICTION_DRIFT,
    keys.INFERENCE_LOG_BACKUP,
]
RETRIED = [
    keys.CRM_TICKETS,
    keys.INTERACTION_LOGS,
    keys.CHURN_MODEL,
    keys.CHURN_SCORES,
    keys.MODEL_SNAPSHOT,
    keys.ONLINE_CUSTOMER_FEATURES,  # Redis
    keys.INFERENCE_LOGS,  # the landing zone
    keys.INFERENCE_LOG_BACKUP,  # the backup store
]


def definitions(**env: str) -> dg.Definitions:
    return build_definitions(load_settings(env))


def test_sensors_and_schedules_are_registered_and_stopped_by_default():
    repo = definitions().get_repository_def()
    sensors = {s.name: s for s in repo.sensor_defs}
    schedules = {s.name: s for s in repo.schedule_defs}
    assert set(sensors) == {
        "interaction_logs_landing_sensor",
        "churn_automation",
        "drift_retraining",
        "run_failure_alert",
        "alert_outbox",
        "retraining_notice",
        "metadata_backup_after_training",
        "partition_freshness",
        "check_failure_alert",
    }
    assert set(schedules) == {
        "daily_ingestion_schedule",
        "weekly_retraining_schedule",
        "metadata_backup_schedule",
    }
    for definition in [*sensors.values(), *schedules.values()]:
        assert definition.default_status.value == "STOPPED", definition.name


def test_configuration_sets_intervals_times_and_status():
    repo = definitions(
        CHURN_AUTOMATION_RUNNING="1",
        CHURN_LANDING_SENSOR_INTERVAL="17",
        CHURN_AUTOMATION_INTERVAL="45",
        CHURN_SCHEDULE_TIMEZONE="Europe/Berlin",
        CHURN_INGESTION_CRON="30 2 * * *",
    ).get_repository_def()
    sensors = {s.name: s for s in repo.sensor_defs}
    assert sensors["interaction_logs_landing_sensor"].minimum_interval_seconds == 17
    assert sensors["churn_automation"].minimum_interval_seconds == 45
    daily = repo.get_schedule_def("daily_ingestion_schedule")
    assert (daily.cron_schedule, daily.execution_timezone) == ("30 2 * * *", "Europe/Berlin")
    assert all(s.default_status.value == "RUNNING" for s in [*repo.sensor_defs, *repo.schedule_defs])


@pytest.mark.parametrize(
    "env, message",
    [
        ({"CHURN_SCHEDULE_TIMEZONE": "Mars/Olympus"}, "is not an IANA time zone"),
        ({"CHURN_INGESTION_CRON": "every day"}, "is not a five-field cron expression"),
        ({"CHURN_LANDING_SENSOR_INTERVAL": "0"}, "CHURN_LANDING_SENSOR_INTERVAL must be >= 1"),
        ({"CHURN_LANDING_LOOKBACK_DAYS": "week"}, "is not an integer"),
        ({"CHURN_AUTOMATION_RUNNING": "perhaps"}, "is not a boolean"),
    ],
)
def test_bad_automation_settings_are_refused_by_name(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_schedules_request_the_newest_closed_partition_at_their_tick():
    tick = dt.datetime(2026, 3, 10, 1, 0, tzinfo=dt.UTC)
    context = dg.build_schedule_context(scheduled_execution_time=tick)
    partitions = build_partitions(load_settings({}))
    assert newest_closed_partition(partitions.daily, context) == "2026-03-09"
    # Labels need 30 days after the as-of date.
    assert newest_closed_partition(partitions.labelled, context) == "2026-02-07"
    schedule = definitions().get_repository_def().get_schedule_def("daily_ingestion_schedule")
    request = schedule(context)
    assert request.partition_key == "2026-03-09" and request.run_key == "2026-03-09"


def test_derived_assets_are_automated_and_external_calls_retried():
    graph = definitions().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert (graph.get(key).automation_condition is not None) == (key in AUTOMATED), key
    defs = definitions()
    for key in RETRIED:
        policy = defs.get_assets_def(key).op.retry_policy
        assert policy is not None and policy.max_retries == 3, key
        assert policy.backoff == dg.Backoff.EXPONENTIAL and policy.jitter == dg.Jitter.PLUS_MINUS, key
