import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from upath import UPath

from churn_platform.alerts.resources import SlackWebhook
from churn_platform.alerts.sensors import build_retraining_notice_sensor
from churn_platform.cli.demo import DemoPlan
from churn_platform.definitions import build_definitions
from churn_platform.ml.drift import (
    DEFAULT_PSI_THRESHOLD,
    DRIFT_FEATURES,
    drift_streak,
    feature_drift,
    population_stability_index,
)
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.run_tags import (
    DRIFT_TRIGGER,
    TRIGGER_REASON_TAG,
    TRIGGER_TAG,
    partition_range_tags,
)
from churn_platform.settings import AlertSettings
from churn_platform.storage.files import sha256_hex
from churn_platform.storage.parquet_files import table_to_parquet
from churn_platform_tests.support.data import START, generate_into, settings_for
from churn_platform_tests.support.servers import WebhookReceiver


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.normal(0, 1, 5000))
    assert population_stability_index(reference, pd.Series(rng.normal(0, 1, 5000))) < 0.02
    assert population_stability_index(reference, pd.Series(rng.normal(1.0, 1, 5000))) > 0.25


def test_missing_values_count_as_a_bin_of_their_own():
    rng = np.random.default_rng(1)
    reference = pd.Series(rng.normal(0, 1, 2000))
    mostly_missing = pd.Series(np.where(rng.random(2000) < 0.5, np.nan, rng.normal(0, 1, 2000)))
    assert population_stability_index(reference, mostly_missing) > 0.25


def test_feature_drift_covers_the_requested_columns():
    frame = pd.DataFrame({"a": range(100), "b": [1.0] * 100})
    result = feature_drift(frame, frame, ["a", "b", "not_there"])
    assert set(result) == {"a", "b"} and all(v < 1e-6 for v in result.values())


# Largest PSI per day (threshold 0.25, 3 days needed) -> the streak's first day, or None.
STREAKS = [
    ({"2026-03-01": 0.3, "2026-03-02": 0.4, "2026-03-03": 0.5}, "2026-03-01"),
    ({"2026-02-28": 0.9, "2026-03-01": 0.3, "2026-03-02": 0.4, "2026-03-03": 0.5}, "2026-02-28"),
    ({"2026-03-01": 0.3, "2026-03-02": 0.4}, None),  # two days are not enough
    ({"2026-03-01": 0.3, "2026-03-02": 0.1, "2026-03-03": 0.5, "2026-03-04": 0.5}, None),  # broken
    ({"2026-03-01": 0.3, "2026-03-02": 0.4, "2026-03-04": 0.5}, None),  # a day not measured breaks it
    ({"2026-03-01": 0.3, "2026-03-02": 0.4, "2026-03-03": 0.25}, None),  # at the threshold is not above
    ({"2026-03-01": 0.3, "2026-03-02": 0.4, "2026-03-03": 0.5, "2026-03-04": 0.1}, None),  # it ended
]


@pytest.mark.parametrize(("max_psi", "start"), STREAKS)
def test_a_streak_is_the_consecutive_drifted_days_up_to_the_newest(max_psi, start):
    drifted = {day: ["events_7d"] for day in max_psi}
    streak = drift_streak(max_psi, drifted, threshold=0.25, min_days=3)
    assert (streak.start if streak else None) == start
    if streak:
        assert streak.end == max(max_psi) and streak.max_psi == max(max_psi[d] for d in max_psi if d >= start)
        assert f"{streak.days} consecutive days" in streak.reason() and "events_7d" in streak.reason()


def test_drift_retraining_off_when_zero_days_are_configured():
    assert drift_streak({"2026-03-01": 0.9}, {}, threshold=0.25, min_days=0) is None


# -- ml/feature_drift and its check, materialized on a small platform -------------------------------
DAYS, CUSTOMERS = 70, 200
DRIFT_OP = "ml__feature_drift"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """Ingested features, labels, and two training sets (each of one as-of date's active customers):
    the newer as-of date first, then the older one, so that the newest materialization is not the
    newest partition. Drift is measured on the days after the older one: the same population."""
    data_dir = tmp_path_factory.mktemp("drift") / "data"
    settings = settings_for(str(data_dir), CHURN_TRAINING_WINDOW_DAYS="7")
    generate_into(settings, days=DAYS, customers=CUSTOMERS, seed=11)
    defs = build_definitions(settings)
    plan = DemoPlan.for_days(START, DAYS)
    older = (dt.date.fromisoformat(plan.last_labelled_day) - dt.timedelta(days=7)).isoformat()
    with dg.instance_for_test() as instance:
        for job, tags in (
            ("daily_ingestion_job", partition_range_tags(plan.first_day, plan.last_day)),
            ("labels_job", partition_range_tags(plan.first_day, plan.last_labelled_day)),
        ):
            assert defs.resolve_job_def(job).execute_in_process(instance=instance, tags=tags).success
        for cutoff in (plan.last_labelled_day, older):
            assert (
                defs.resolve_job_def("training_job")
                .execute_in_process(
                    instance=instance, partition_key=cutoff, asset_selection=[keys.TRAINING_SET]
                )
                .success
            )
        yield settings, defs, instance, plan, older


def materialize_drift(platform, day, psi_threshold=None):
    _, defs, instance, _, _ = platform
    config = {} if psi_threshold is None else {"psi_threshold": psi_threshold}
    run_config = {"ops": {DRIFT_OP: {"config": config}}}
    result = defs.resolve_job_def("scoring_job").execute_in_process(
        instance=instance, partition_key=day, asset_selection=[keys.FEATURE_DRIFT], run_config=run_config
    )
    assert result.success  # a drift warning does not fail the run
    (materialization,) = result.get_asset_materialization_events()
    # A run selecting the asset also evaluates its partition deadline (partitions_on_time).
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.asset_check_key == keys.DRIFT_BELOW_THRESHOLD
    ]
    drift = pd.read_parquet(materialization.materialization.metadata["uri"].value)
    return drift, materialization.materialization.metadata, evaluation


def psi_by_hand(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    """PSI written out: decile bins of the reference (values outside clipped into the end bins),
    one bin for missing values, shares floored at 1e-4, sum of (a - e) * ln(a / e)."""
    reference = pd.to_numeric(reference, errors="coerce")
    current = pd.to_numeric(current, errors="coerce")
    edges = np.unique(np.quantile(reference.dropna(), np.linspace(0, 1, bins + 1)))

    def shares(values: pd.Series) -> np.ndarray:
        present = values.dropna().clip(edges[0], edges[-1])
        if len(edges) == 1:
            counts = [len(present)]
        else:
            counts = [
                int(((present >= lo) & (present < hi)).sum())
                for lo, hi in zip(edges[:-1], edges[1:], strict=True)
            ]
            counts[-1] += int((present == edges[-1]).sum())  # the last bin includes its upper edge
        counts.append(int(values.isna().sum()))
        return np.maximum(np.array(counts) / len(values), 1e-4)

    e, a = shares(reference), shares(current)
    return float(np.sum((a - e) * np.log(a / e)))


def latest_training_set(instance) -> dg.AssetMaterialization:
    return instance.fetch_materializations(keys.TRAINING_SET, limit=1).records[0].asset_materialization


def active_features(settings, day) -> pd.DataFrame:
    features = pd.read_parquet(
        UPath(settings.storage.warehouse_dir).joinpath(*keys.CUSTOMER_FEATURES.path, f"{day}.parquet").path
    )
    return features[features["is_active"]]


def day_after(day: str, days: int = 1) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=days)).isoformat()


def test_drift_is_measured_against_the_newest_materialized_training_set(platform):
    settings, _, instance, plan, older = platform
    day = day_after(older)
    drift, metadata, evaluation = materialize_drift(platform, day)

    newest = latest_training_set(instance)
    assert newest.partition == older != plan.last_labelled_day  # materialized last, not the last key
    assert metadata["reference"].value == newest.metadata["uri"].value
    reference_file = UPath(newest.metadata["uri"].value)
    assert sha256_hex(reference_file.read_bytes()) == newest.metadata["sha256"].value
    reference = pd.read_parquet(reference_file.path)

    current = active_features(settings, day)
    by_feature = drift.set_index("feature")["psi"]
    assert set(by_feature.index) == set(DRIFT_FEATURES)
    assert (drift["as_of_date"].astype(str) == day).all()
    for feature, psi in by_feature.items():
        assert psi == pytest.approx(psi_by_hand(reference[feature], current[feature]), abs=1e-4), feature
    assert float(metadata["max_psi"].value) == pytest.approx(by_feature.max())

    # Against the other training set the values differ: the comparison above tells the two apart.
    other = pd.read_parquet(
        UPath(settings.storage.warehouse_dir)
        .joinpath(*keys.TRAINING_SET.path, f"{plan.last_labelled_day}.parquet")
        .path
    )
    assert any(
        abs(psi - psi_by_hand(other[feature], current[feature])) > 1e-3 for feature, psi in by_feature.items()
    )


def test_a_feature_above_its_threshold_fails_the_drift_check_as_a_warning(platform):
    *_, older = platform
    day = day_after(older)
    drift, metadata, evaluation = materialize_drift(platform, day)
    max_psi = float(drift["psi"].max())
    # The next day's customers: a little drift (sampling noise), well below the default threshold.
    assert 0.01 < max_psi < DEFAULT_PSI_THRESHOLD
    assert evaluation.passed and not drift["drifted"].any()

    # Just above the largest PSI: every feature is below the threshold, the check passes.
    drift, metadata, evaluation = materialize_drift(platform, day, psi_threshold=max_psi + 0.001)
    assert evaluation.passed and not drift["drifted"].any()

    # Just below it: the largest feature is above the threshold, the check warns.
    threshold = round(max_psi - 0.001, 4)
    drift, metadata, evaluation = materialize_drift(platform, day, psi_threshold=threshold)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["max_psi"].value == pytest.approx(max_psi)
    assert f"threshold {threshold}" in evaluation.description
    assert metadata["psi_threshold"].value == threshold
    assert set(drift.loc[drift["drifted"], "feature"]) == set(drift.loc[drift["psi"] > threshold, "feature"])
    assert drift["drifted"].any()


def test_shifted_features_drift_past_the_default_threshold(platform):
    settings, *_, older = platform
    day = day_after(older, 2)
    drift, _, evaluation = materialize_drift(platform, day)
    assert evaluation.passed and drift["psi"].max() < DEFAULT_PSI_THRESHOLD  # before the shift

    path = UPath(settings.storage.warehouse_dir).joinpath(*keys.CUSTOMER_FEATURES.path, f"{day}.parquet")
    features = pd.read_parquet(path.path)
    # Every customer suddenly five times as active: a different population.
    for column in ("events_7d", "events_30d", "sessions_30d"):
        features[column] = features[column] * 5 + 20
    path.write_bytes(table_to_parquet(pa.Table.from_pandas(features, preserve_index=False)).to_pybytes())

    drift, metadata, evaluation = materialize_drift(platform, day)
    assert metadata["psi_threshold"].value == DEFAULT_PSI_THRESHOLD
    shifted = drift.set_index("feature").loc[["events_7d", "events_30d", "sessions_30d"]]
    assert (shifted["psi"] > DEFAULT_PSI_THRESHOLD).all() and shifted["drifted"].all()
    assert not drift.set_index("feature").drop(shifted.index)["drifted"].any()  # the others did not move
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["max_psi"].value == pytest.approx(drift["psi"].max())


def shift_features(settings, day: str) -> None:
    path = UPath(settings.storage.warehouse_dir).joinpath(*keys.CUSTOMER_FEATURES.path, f"{day}.parquet")
    features = pd.read_parquet(path.path)
    for column in ("events_7d", "events_30d", "sessions_30d"):
        features[column] = features[column] * 5 + 20
    path.write_bytes(table_to_parquet(pa.Table.from_pandas(features, preserve_index=False)).to_pybytes())


def test_drift_on_three_consecutive_days_requests_exactly_one_retraining_run_that_says_why(platform):
    """Runs last in this module: it trains a model on the newest labelled day."""
    settings, defs, instance, plan, _ = platform
    sensor = defs.get_sensor_def("drift_retraining")
    assert settings.automation.drift_retraining_days == 3  # the default
    days = [day_after(plan.last_day, -k) for k in (2, 1, 0)]
    cursor, requests = None, []

    def tick():
        nonlocal cursor
        with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as context:
            data = sensor.evaluate_tick(context)
        cursor = data.cursor or cursor
        requests.extend(data.run_requests or [])
        return data

    for i, day in enumerate(days):
        shift_features(settings, day)
        materialize_drift(platform, day)
        data = tick()
        assert len(requests) == (1 if i == 2 else 0), (day, data.skip_message)
    again = tick()  # the streak goes on, but it has had its run
    assert not again.run_requests and "already requested" in again.skip_message

    [request] = requests
    assert request.partition_key == plan.last_labelled_day  # the newest day with labels
    assert request.run_key == f"drift:{days[0]}"
    reason = request.tags[TRIGGER_REASON_TAG]
    assert request.tags[TRIGGER_TAG] == DRIFT_TRIGGER
    assert f"on 3 consecutive days ({days[0]}..{days[-1]}" in reason and "events_7d" in reason

    # The requested run is the retraining job; when it starts, the notice says why on Slack.
    result = defs.resolve_job_def(request.job_name or "training_job").execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
    )
    assert any(e.asset_key == keys.CHURN_MODEL for e in result.get_asset_materialization_events())
    run = instance.get_run_by_id(result.run_id)
    started = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_START)
    receiver = WebhookReceiver()
    try:
        notice = build_retraining_notice_sensor(AlertSettings(dagster_ui_url="http://ui"), running=False)
        with dg.build_run_status_sensor_context(
            sensor_name=notice.name,
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=started,
            resources={"slack": SlackWebhook(webhook_url=receiver.url)},
        ) as context:
            notice(context)
    finally:
        receiver.stop()
    [posted] = receiver.bodies
    assert reason in posted["text"] and plan.last_labelled_day in posted["text"]
    assert f"http://ui/runs/{run.run_id}" in posted["text"]

    # Forgetting the cursor does not retrain on the same labels again: a model exists for that day.
    cursor = None
    skipped = tick()
    assert not skipped.run_requests and "already trained on the newest labelled day" in skipped.skip_message
