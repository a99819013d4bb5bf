"""The scoring service's fast path (serving/fast_path.py): the champion's pipeline compiled into numpy
operations must give the pipeline's probabilities bit for bit (`np.array_equal`, never approximately)
for every customer of a real day and for edge rows, must refuse what it does not reproduce, and the
service must use it when it is verified and the pipeline otherwise, answering the same either way."""

import json
import logging
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from churn_platform.cli.demo import DemoPlan, run_demo
from churn_platform.definitions import build_definitions
from churn_platform.ml.scoring import predict_with
from churn_platform.ml.training import make_pipeline, split_columns
from churn_platform.online.store import read_current_raw, rows_to_frame, write_version
from churn_platform.orchestration import asset_keys as keys
from churn_platform.resources import build_resources
from churn_platform.serving import fast_path
from churn_platform.serving.app import build_app
from churn_platform.serving.champion import ChampionFollower, ServingModel, serving_model
from churn_platform.serving.fast_path import (
    UnsupportedPipeline,
    compile_pipeline,
    prepare_fast_path,
    verification_records,
)
from churn_platform_tests.support.data import START, generate_into, settings_for, synthetic_table
from churn_platform_tests.support.stack import PERMISSIVE_GATE

DAYS, CUSTOMERS = 60, 150
API_KEY = "test-key-" + uuid.uuid4().hex


@dataclass
class Trained:
    """A real champion (the demo's graph on generated data) and the last day's features."""

    registry: Any
    pipeline: Any
    version: str
    sha256: str
    features: pa.Table  # the day's customer features, as online/customer_features loads them
    batch_scores: pd.DataFrame  # ml/churn_scores of that day (the batch path)
    day: str


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    root = tmp_path_factory.mktemp("fast-path")
    settings = settings_for(str(root / "data"), CHURN_TRAINING_WINDOW_DAYS="14")
    generate_into(settings, days=DAYS, customers=CUSTOMERS, seed=23)
    defs = build_definitions(settings)
    plan = DemoPlan.for_days(START, DAYS)
    with dg.instance_for_test() as instance:
        run_demo(defs, instance, plan, gate=PERMISSIVE_GATE)
    resources = build_resources(settings)
    registry = resources["mlflow_tracking"]
    pipeline, artifact = registry.load_champion()
    io_manager = resources["io_manager"]
    features = pq.read_table(io_manager.path_for(keys.CUSTOMER_FEATURES, plan.last_day).path)
    scores = pd.read_parquet(io_manager.path_for(keys.CHURN_SCORES, plan.last_day).path)
    return Trained(registry, pipeline, artifact.version, artifact.sha256, features, scores, plan.last_day)


@dataclass
class Online:
    client: Any
    prefix: str
    schema: pa.Schema
    customer_ids: list[int]
    rows: list[dict[str, Any]]  # every customer's stored row, as `json.loads` gives it

    def frame(self, rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
        """Rows read as the batch path and the service read them (a copy: dates are converted)."""
        return rows_to_frame([dict(r) for r in (self.rows if rows is None else rows)], self.schema)


@pytest.fixture(scope="module")
def online(trained) -> Online:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = f"test-fast-{uuid.uuid4().hex[:8]}"
    write_version(client, prefix, trained.day, trained.features, keep=2)
    ids = [int(c) for c in trained.features.column("customer_id").to_pylist()]
    _, schema, values = read_current_raw(client, prefix, ids)
    try:
        yield Online(client, prefix, schema, ids, [json.loads(v) for v in values])
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


# -- bit-equality on a real model ---------------------------------------------------------------------
def test_the_fast_path_equals_the_pipeline_bit_for_bit_for_every_customer_of_the_day(trained, online):
    fast = prepare_fast_path(trained.pipeline)
    assert fast.enabled, fast.reason
    assert fast.accepts(online.schema)
    frame = online.frame()
    expected = predict_with(trained.pipeline, frame)
    assert len(expected) == len(online.customer_ids) > 100 and len(set(expected.tolist())) > 50
    compiled = fast.compiled
    for engine in ("numpy", "classifier"):  # both ways of walking the trees
        assert np.array_equal(compiled.predict_records(online.rows, engine=engine), expected), engine
        assert np.array_equal(compiled.predict_frame(frame, engine=engine), expected), engine
    # One customer at a time, as the single-customer endpoint scores (numpy walk, stored JSON).
    singles = [fast.score_records([row], online.schema)[0] for row in online.rows]
    assert np.array_equal(singles, expected)
    # The batch path's own scores of the day (active customers) are the same floats.
    by_customer = dict(zip(frame["customer_id"].tolist(), singles, strict=True))
    batch = trained.batch_scores
    assert len(batch) > 50
    assert {c: by_customer[c] for c in batch["customer_id"]} == dict(
        zip(batch["customer_id"], batch["churn_probability"], strict=True)
    )


def edge_rows(compiled, base: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{**base, name: None} for name in compiled.numeric_columns]  # each numeric column missing
    rows.append({**base, **dict.fromkeys(compiled.numeric_columns)})  # every numeric column missing
    for name in compiled.categorical_columns:  # unseen, missing, empty and the fill value itself
        rows += [{**base, name: value} for value in ("a-plan-never-seen", None, "", "missing")]
    rows.append({**base, **dict.fromkeys(compiled.feature_names)})  # nothing known at all
    return rows


def test_edge_rows_score_as_the_pipeline_scores_them(trained, online):
    fast = prepare_fast_path(trained.pipeline)
    compiled = fast.compiled
    assert compiled.numeric_columns and compiled.categorical_columns
    expected_all, rows = [], []
    for base in online.rows[:5]:
        rows += edge_rows(compiled, base)
    expected = predict_with(trained.pipeline, online.frame(rows))
    assert len(set(expected.tolist())) > 10  # the edge values change the scores: they are exercised
    assert np.array_equal(fast.score_records(rows, online.schema), expected)
    assert np.array_equal([fast.score_records([r], online.schema)[0] for r in rows], expected)
    assert np.array_equal(fast.score_frame(online.frame(rows), online.schema), expected)
    # Frames typed otherwise than the online schema types them: float64 numbers with NaN, and
    # pandas' string dtype (pd.NA for missing) for the categories.
    frame = online.frame(rows)
    floats = frame.astype(dict.fromkeys(compiled.numeric_columns, "float64"))
    strings = frame.astype(dict.fromkeys(compiled.categorical_columns, "string"))
    for typed in (floats, strings):
        expected_all.append(predict_with(trained.pipeline, typed))
        assert np.array_equal(fast.score_frame(typed), expected_all[-1])
        assert np.array_equal(predict_with(trained.pipeline, typed, fast=fast.score_frame), expected_all[-1])


def test_what_the_pipeline_refuses_the_fast_path_does_not_answer(trained, online):
    fast = prepare_fast_path(trained.pipeline)
    name = fast.compiled.numeric_columns[0]
    frame = online.frame(online.rows[:3]).astype({name: "float64"})
    frame.loc[1, name] = np.inf
    assert fast.score_frame(frame) is None
    with pytest.raises(ValueError, match="infinity"):
        predict_with(trained.pipeline, frame, fast=fast.score_frame)


def test_the_verification_covers_missing_values_thresholds_and_unknown_categories(trained):
    compiled = compile_pipeline(trained.pipeline)
    records = verification_records(compiled)
    for name in compiled.numeric_columns:
        assert any(r[name] is None for r in records)
    thresholds = compiled.trees.split_thresholds(0)
    column = compiled.numeric_columns[0]
    assert len(thresholds) and set(thresholds.tolist()) <= {r[column] for r in records}
    for name in compiled.categorical_columns:
        values = {r[name] for r in records}
        assert {None, fast_path.UNSEEN_CATEGORY} <= values


def test_a_compiled_copy_that_is_not_bit_equal_is_not_served(trained, monkeypatch, caplog):
    walk = fast_path._Trees.raw
    # Off by about one part in 10^12: invisible to any tolerance, visible to np.array_equal.
    monkeypatch.setattr(fast_path._Trees, "raw", lambda self, X: walk(self, X) * (1 + 1e-12))
    with caplog.at_level(logging.WARNING, logger=fast_path.__name__):
        fast = prepare_fast_path(trained.pipeline, label="model v-test")
    assert not fast.enabled and "not bit-equal to the pipeline" in fast.reason
    [warning] = [r for r in caplog.records if r.name == fast_path.__name__]
    assert "model v-test: fast path off" in warning.getMessage() and fast.reason in warning.getMessage()
    assert fast.score_records([{}], pa.schema([])) is None


def test_a_feature_schema_is_checked_once_and_refused_if_the_fast_path_does_not_read_it(
    trained, online, caplog
):
    fast = prepare_fast_path(trained.pipeline)
    numeric = fast.compiled.numeric_columns
    table = trained.features
    # Other integer widths and floats for integers: read exactly like the stored schema.
    retyped = table.cast(
        pa.schema(
            [
                f.with_type(
                    pa.int32() if f.name == numeric[0] else pa.float64() if f.name == numeric[1] else f.type
                )
                for f in table.schema
            ]
        )
    )
    assert fast.accepts(retyped.schema)
    rows = retyped.to_pylist()
    for row in rows:
        row["as_of_date"] = row["as_of_date"].isoformat()
    expected = predict_with(trained.pipeline, rows_to_frame([dict(r) for r in rows], retyped.schema))
    assert np.array_equal(fast.score_records(rows, retyped.schema), expected)
    # float32 numbers are converted by the pipeline in float32: left to it, said once.
    float32 = pa.schema([f.with_type(pa.float32()) if f.name == numeric[-1] else f for f in table.schema])
    with caplog.at_level(logging.WARNING, logger=fast_path.__name__):
        assert not fast.accepts(float32)
        assert not fast.accepts(float32)
    [warning] = [r for r in caplog.records if r.name == fast_path.__name__]
    assert f"numeric feature {numeric[-1]!r} is float" in warning.getMessage()
    assert fast.score_records(online.rows[:1], float32) is None
    assert fast.score_frame(online.frame(online.rows[:1]), float32) is None


# -- what the compiler refuses ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic() -> tuple[pd.DataFrame, np.ndarray, list[str], list[str]]:
    table = synthetic_table(rows=600, seed=4)
    X = table.drop(columns=["account", "label"])
    numeric, categorical = split_columns(X)
    return X, table["label"].to_numpy(), numeric, categorical


def categorical_pipeline(**encoder: Any) -> Pipeline:
    return (
        make_pipeline([], ["segment"], 0)[0]
        .transformers[1][1]
        .set_params(**{f"encode__{k}": v for k, v in encoder.items()})
    )


def with_preprocess(
    numeric_transformer: Any, categorical_transformer: Any, numeric: list[str], **kw: Any
) -> Pipeline:
    pipeline = make_pipeline(numeric, ["segment"], 0)
    pipeline.steps[0] = (
        "preprocess",
        ColumnTransformer(
            [
                ("numeric", numeric_transformer, numeric),
                ("categorical", categorical_transformer, ["segment"]),
            ],
            **kw,
        ),
    )
    return pipeline


def refused_pipelines(numeric: list[str]) -> dict[str, tuple[Pipeline, str]]:
    imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    made = make_pipeline(numeric, ["segment"], 0)
    return {
        "scaled numbers": (
            with_preprocess(
                Pipeline([("impute", imputer), ("scale", StandardScaler())]), categorical_pipeline(), numeric
            ),
            "is not the categorical pipeline",
        ),
        "extra step": (
            Pipeline([made.steps[0], ("identity", FunctionTransformer()), made.steps[1]]),
            "not a two-step",
        ),
        "another model": (
            Pipeline([made.steps[0], ("model", LogisticRegression())]),
            "not a HistGradientBoostingClassifier",
        ),
        "dropped category": (
            with_preprocess(imputer, categorical_pipeline(drop="first"), numeric),
            "without dropped or infrequent categories",
        ),
        "infrequent categories": (
            with_preprocess(
                imputer, categorical_pipeline(handle_unknown="infrequent_if_exist", min_frequency=5), numeric
            ),
            "without dropped or infrequent categories",
        ),
        "other missing values": (
            with_preprocess(SimpleImputer(missing_values=-1.0), categorical_pipeline(), numeric),
            "imputes -1.0, not NaN",
        ),
        "passthrough": (
            with_preprocess(imputer, categorical_pipeline(), numeric[:1], remainder="passthrough"),
            "is not supported",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "scaled numbers",
        "extra step",
        "another model",
        "dropped category",
        "infrequent categories",
        "other missing values",
        "passthrough",
    ],
)
def test_pipelines_with_other_steps_are_served_as_they_are(synthetic, case, caplog):
    X, y, numeric, _ = synthetic
    pipeline, says = refused_pipelines(numeric)[case]
    pipeline.fit(X.fillna({"mood": -1.0}) if case == "other missing values" else X, y)
    with pytest.raises(UnsupportedPipeline, match=says):
        compile_pipeline(pipeline)
    with caplog.at_level(logging.WARNING, logger=fast_path.__name__):
        fast = prepare_fast_path(pipeline, label=f"model {case}")
    assert not fast.enabled and says in fast.reason
    [warning] = [r for r in caplog.records if r.name == fast_path.__name__]
    assert says in warning.getMessage()
    model = ServingModel(pipeline, "1", "0" * 64, fast)
    assert not model.fast_path and model.fast_path_reason == fast.reason
    assert fast.score_frame(X) is None


def test_other_pipelines_make_pipeline_builds_compile_and_verify(synthetic):
    X, y, numeric, categorical = synthetic
    X = X.assign(never_known=np.nan)  # a column without any value at fit (kept as 0 or dropped)
    numbers_only = make_pipeline([*numeric, "never_known"], [], 0).fit(X, y)
    dropped = make_pipeline([*numeric, "never_known"], categorical, 0)
    dropped.set_params(
        preprocess__numeric__keep_empty_features=False, preprocess__numeric__add_indicator=False
    )
    dropped.fit(X, y)
    for pipeline in (numbers_only, dropped, make_pipeline(numeric, categorical, 0).fit(X, y)):
        fast = prepare_fast_path(pipeline)
        assert fast.enabled, fast.reason
        unseen = X.assign(segment=["brand-new", None, "smb"] * (len(X) // 3)).astype({"segment": object})
        for frame in (X, unseen):
            assert np.array_equal(fast.score_frame(frame), predict_with(pipeline, frame))


# -- the service ----------------------------------------------------------------------------------------
def service(model: ServingModel, online: Online) -> TestClient:
    follower = SimpleNamespace(model=model, last_error=None)
    app = build_app(follower, online.client, online.prefix, API_KEY, max_feature_age_days=100_000)
    return TestClient(app, headers={"X-API-Key": API_KEY})


def assert_answers_like_the_batch_path(client: TestClient, online: Online, expected: np.ndarray) -> None:
    by_customer = dict(zip(online.customer_ids, expected.tolist(), strict=True))
    response = client.post("/v1/churn-scores", json={"customer_ids": online.customer_ids})
    assert response.status_code == 200, response.text
    assert {s["customer_id"]: s["churn_probability"] for s in response.json()["scores"]} == by_customer
    for customer in online.customer_ids:
        single = client.get(f"/v1/customers/{customer}/churn-score")
        assert single.status_code == 200 and single.json()["churn_probability"] == by_customer[customer]
    customer, row = online.customer_ids[-1], dict(online.rows[-1])
    posted = client.post("/v1/churn-scores/features", json={"features": row})
    assert posted.status_code == 200 and posted.json()["churn_probability"] == by_customer[customer]


def test_the_service_scores_with_the_verified_fast_path(trained, online, monkeypatch):
    follower = ChampionFollower(trained.registry, poll_seconds=60)
    assert follower.refresh()  # loads the champion and prepares its fast path
    model = follower.model
    assert model.fast_path and "bit-equal to the pipeline" in model.fast_path_reason
    expected = predict_with(trained.pipeline, online.frame())
    calls = []
    predict_proba = model.pipeline.predict_proba
    monkeypatch.setattr(model.pipeline, "predict_proba", lambda X: calls.append(len(X)) or predict_proba(X))
    client = service(model, online)
    info = client.get("/v1/model")
    assert info.status_code == 200 and info.json()["fast_path"] is True
    assert info.json()["model_version"] == trained.version and "bit-equal" in info.json()["fast_path_reason"]
    assert client.get("/v1/model", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/ready").json()["fast_path"] is True
    client.get(f"/v1/customers/{online.customer_ids[0]}/churn-score")  # the schema's check: once
    assert len(calls) == 1
    calls.clear()
    assert_answers_like_the_batch_path(client, online, expected)
    assert calls == []  # every score came from the fast path


def test_a_pipeline_the_fast_path_does_not_support_is_served_as_it_is(trained, online):
    preprocess, hgb = trained.pipeline[0], trained.pipeline[-1]
    identity = FunctionTransformer().fit(
        preprocess.transform(online.frame()[list(trained.pipeline.feature_names_in_)])
    )
    pipeline = Pipeline([("preprocess", preprocess), ("identity", identity), ("model", hgb)])
    model = serving_model(pipeline, "7", "0" * 64)
    assert not model.fast_path and "not a two-step" in model.fast_path_reason
    client = service(model, online)
    info = client.get("/v1/model").json()
    assert info["fast_path"] is False and "not a two-step" in info["fast_path_reason"]
    assert client.get("/ready").json()["fast_path"] is False
    assert_answers_like_the_batch_path(client, online, predict_with(trained.pipeline, online.frame()))
