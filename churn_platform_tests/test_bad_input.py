"""Bad input fails the run with an actionable message and leaves nothing for downstream to read."""

import json

import dagster as dg
from upath import UPath

from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.run_tags import partition_range_tags
from churn_platform.storage.files import sha256_hex

LOGS_STEP = "raw__interaction_logs"
DAY = "2026-01-10"


def run_logs(platform, day=DAY):
    return platform.defs.resolve_job_def("daily_ingestion_job").execute_in_process(
        instance=platform.instance,
        partition_key=day,
        asset_selection=[keys.INTERACTION_LOGS],
        raise_on_error=False,
    )


def ingest(platform, first: str, last: str) -> None:
    assert (
        platform.defs.resolve_job_def("daily_ingestion_job")
        .execute_in_process(instance=platform.instance, tags=partition_range_tags(first, last))
        .success
    )


def run_job(platform, job: str, partition: str):
    return platform.defs.resolve_job_def(job).execute_in_process(
        instance=platform.instance, partition_key=partition, raise_on_error=False
    )


def assert_failed_at_once(result, step: str) -> None:
    """The step ran exactly once and failed: no retry (bad input does not get better by retrying,
    and the step's retry policy would otherwise try it again, minutes later in production)."""
    events = [e for e in result.all_events if e.step_key == step]
    kinds = [e.event_type for e in events]
    assert kinds.count(dg.DagsterEventType.STEP_START) == 1, kinds
    assert kinds.count(dg.DagsterEventType.STEP_FAILURE) == 1, kinds
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds
    assert dg.DagsterEventType.STEP_RESTARTED not in kinds


def error_of(result) -> str:
    return "\n".join(e.event_specific_data.error.to_string() for e in result.get_step_failure_events())


def landing_file(platform, day=DAY):
    return (
        UPath(platform.settings.storage.landing_dir) / "interaction_logs" / f"date={day}" / "events-pm.jsonl"
    )


def output_file(platform, day=DAY):
    return UPath(platform.settings.storage.warehouse_dir).joinpath(
        *keys.INTERACTION_LOGS.path, f"{day}.parquet"
    )


def test_malformed_line_fails_naming_file_and_line_and_writes_nothing(small_platform):
    path = landing_file(small_platform)
    lines = path.read_text().splitlines()
    lines[4] = lines[4][:-7]  # truncated mid-object, as a crashed writer would leave it
    path.write_text("\n".join(lines) + "\n")
    result = run_logs(small_platform)
    assert not result.success
    assert f"{path.path} line 5: not valid JSON" in error_of(result)
    assert_failed_at_once(result, LOGS_STEP)
    assert not output_file(small_platform).exists()


def test_schema_drift_fails_naming_the_missing_field(small_platform):
    path = landing_file(small_platform)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        record["ts"] = record.pop("timestamp")  # an upstream rename
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run_logs(small_platform)
    assert not result.success
    assert "required field 'timestamp' is missing" in error_of(result) and path.path in error_of(result)
    assert_failed_at_once(result, LOGS_STEP)
    assert not output_file(small_platform).exists()


def test_a_failed_rerun_keeps_the_previous_good_partition(small_platform):
    assert run_logs(small_platform).success
    good = output_file(small_platform).read_bytes()
    landing_file(small_platform).write_text("not json at all\n")
    result = run_logs(small_platform)
    assert not result.success
    assert_failed_at_once(result, LOGS_STEP)
    assert sha256_hex(output_file(small_platform).read_bytes()) == sha256_hex(good)


def test_an_empty_landing_day_fails_with_what_to_do(small_platform):
    folder = landing_file(small_platform).parent
    for f in folder.iterdir():
        f.unlink()
    result = run_logs(small_platform)
    assert not result.success
    assert f"no interaction-log files for {DAY}" in error_of(
        result
    ) and "churn-platform generate" in error_of(result)
    assert_failed_at_once(result, LOGS_STEP)


def test_labels_refuse_to_run_before_their_30_future_days_exist(small_platform):
    # Only 40 days were generated and only ingested up to day 20: labels for day 1 need days 2..31.
    ingest(small_platform, "2026-01-01", "2026-01-20")
    result = run_job(small_platform, "labels_job", "2026-01-01")
    assert not result.success
    assert (
        f"{keys.CUSTOMER_DAILY_ACTIVITY.to_user_string()} partition 2026-01-21 is not materialized"
        in error_of(result)
    )
    assert_failed_at_once(result, "ml__churn_labels")
    assert not UPath(small_platform.settings.storage.warehouse_dir).joinpath(*keys.CHURN_LABELS.path).exists()


def test_scoring_without_a_model_says_to_train_one(small_platform):
    ingest(small_platform, "2026-01-01", "2026-01-05")
    result = run_job(small_platform, "scoring_job", "2026-01-05")
    assert not result.success
    assert "has no 'champion' alias" in error_of(result) and "promotion gate" in error_of(result)
    assert_failed_at_once(result, "ml__churn_scores")
