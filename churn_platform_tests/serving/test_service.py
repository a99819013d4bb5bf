"""`churn-platform serve` as a real process on a loopback port, with the Redis server on loopback
and a local MLflow store: scores equal the batch path's, auth, the 4xx cases, stale features, and a
champion switch under continuous load without one failed request."""

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import httpx
import pandas as pd
import pytest
import redis

from churn_platform.cli.demo import DemoPlan, run_demo
from churn_platform.definitions import build_definitions
from churn_platform.orchestration import asset_keys as keys
from churn_platform.resources import build_resources
from churn_platform_tests.support.data import START, generate_into, settings_for
from churn_platform_tests.support.servers import free_port, wait_for_port
from churn_platform_tests.support.stack import PERMISSIVE_GATE

pytestmark = pytest.mark.slow

DAYS, CUSTOMERS = 60, 150
API_KEY = "test-key-" + uuid.uuid4().hex
BIN = Path(sys.executable).parent


class Service:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process = subprocess.Popen(
            [str(BIN / "churn-platform"), "serve", "--port", str(self.port)],
            env={**os.environ, **env},
            stdout=open(log, "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, timeout=90)
        except TimeoutError:
            self.stop()
            raise RuntimeError(log.read_text()) from None
        self.client = httpx.Client(base_url=self.url, headers={"X-API-Key": API_KEY}, timeout=30)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    environ = {
        "CHURN_DATA_DIR": str(root / "data"),
        "CHURN_START_DATE": START.isoformat(),
        "CHURN_TRAINING_WINDOW_DAYS": "14",
        "CHURN_ONLINE_KEY_PREFIX": prefix,
        "CHURN_SERVING_API_KEY": API_KEY,
        "CHURN_SERVING_MODEL_POLL_SECONDS": "1",
        # The demo's data is from early 2026: fresh enough for these tests, not for the stale one.
        "CHURN_SERVING_MAX_FEATURE_AGE_DAYS": "100000",
    }
    settings = settings_for(environ["CHURN_DATA_DIR"], **environ)
    generate_into(settings, days=DAYS, customers=CUSTOMERS, seed=23)
    defs = build_definitions(settings)
    plan = DemoPlan.for_days(START, DAYS)
    with dg.instance_for_test() as instance:
        run_demo(defs, instance, plan, log=lambda *_: None, gate=PERMISSIVE_GATE)
        result = defs.resolve_job_def("online_features_job").execute_in_process(
            instance=instance, partition_key=plan.last_day
        )
        assert result.success
    service = Service(environ, root / "serve.log")
    try:
        yield settings, plan, service, environ, root
    finally:
        service.stop()
        connection = redis.Redis.from_url(settings.serving.redis_url)
        for key in connection.scan_iter(f"{prefix}:*"):
            connection.delete(key)


def batch_scores(settings, day: str) -> pd.DataFrame:
    path = build_resources(settings)["io_manager"].path_for(keys.CHURN_SCORES, day)
    return pd.read_parquet(path.path)


def test_online_scores_equal_the_batch_scores_for_every_customer_of_the_day(platform):
    settings, plan, service, *_ = platform
    batch = batch_scores(settings, plan.last_day)
    assert len(batch) > 50
    response = service.client.post("/v1/churn-scores", json={"customer_ids": batch["customer_id"].tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    online = {s["customer_id"]: s["churn_probability"] for s in body["scores"]}
    expected = dict(zip(batch["customer_id"], batch["churn_probability"], strict=True))
    assert online == expected  # identical floats, not approximately equal
    assert body["features_as_of"] == plan.last_day
    assert (
        {s["model_version"] for s in body["scores"]} == set(batch["model_version"]) == {body["model_version"]}
    )
    # One customer at a time gives the same, and says which model and features produced it.
    customer = int(batch["customer_id"].iloc[0])
    single = service.client.get(f"/v1/customers/{customer}/churn-score").json()
    assert single["churn_probability"] == expected[customer]
    assert single["features_as_of"] == plan.last_day and len(single["model_sha256"]) == 64


def test_requests_without_the_key_are_refused(platform):
    _, plan, service, *_ = platform
    for headers in ({}, {"X-API-Key": "wrong"}):
        response = httpx.get(f"{service.url}/v1/customers/1/churn-score", headers=headers)
        assert response.status_code == 401 and API_KEY not in response.text
    assert httpx.get(f"{service.url}/health").status_code == 200  # probes need no key


def test_mistakes_get_clear_4xx_answers(platform):
    _, plan, service, *_ = platform
    client = service.client
    unknown = client.get("/v1/customers/987654321/churn-score")
    assert (
        unknown.status_code == 404
        and f"customer 987654321 has no features as of {plan.last_day}" in unknown.text
    )
    assert client.get("/v1/customers/abc/churn-score").status_code == 422
    assert client.post("/v1/churn-scores", json={"customer_ids": []}).status_code == 422
    assert client.post("/v1/churn-scores", json={"customer_ids": ["x"]}).status_code == 422
    assert (
        client.post(
            "/v1/churn-scores", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    missing = client.post("/v1/churn-scores", json={"customer_ids": [1, 987654321]})
    assert missing.status_code == 404 and "987654321" in missing.text
    partial = client.post("/v1/churn-scores/features", json={"features": {"events_30d": 3}})
    assert partial.status_code == 422 and "feature(s) missing" in partial.text
    alien = client.post("/v1/churn-scores/features", json={"features": {"shoe_size": 44}})
    assert alien.status_code == 422 and "unknown feature(s) ['shoe_size']" in alien.text


def test_a_posted_feature_row_scores_as_the_stored_one(platform):
    settings, plan, service, *_ = platform
    batch = batch_scores(settings, plan.last_day)
    customer = int(batch["customer_id"].iloc[-1])
    features = build_resources(settings)["io_manager"].path_for(keys.CUSTOMER_FEATURES, plan.last_day)
    row = pd.read_parquet(features.path).set_index("customer_id", drop=False).loc[customer]
    posted = {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else str(v)) for k, v in row.items()}
    response = service.client.post("/v1/churn-scores/features", json={"features": posted})
    assert response.status_code == 200, response.text
    assert (
        response.json()["churn_probability"]
        == batch.set_index("customer_id").loc[customer, "churn_probability"]
    )


def test_stale_features_are_refused_not_scored(platform):
    settings, plan, _, environ, root = platform
    stale = Service({**environ, "CHURN_SERVING_MAX_FEATURE_AGE_DAYS": "2"}, root / "stale.log")
    try:
        response = stale.client.get("/v1/customers/1/churn-score")
        assert response.status_code == 409
        assert (
            f"as of {plan.last_day}" in response.text
            and "CHURN_SERVING_MAX_FEATURE_AGE_DAYS=2" in response.text
        )
        ready = httpx.get(f"{stale.url}/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
    finally:
        stale.stop()


def test_the_service_follows_the_champion_under_load_without_a_failed_request(platform):
    settings, plan, service, *_ = platform
    registry = build_resources(settings)["mlflow_tracking"]
    client = registry.client()
    champion = registry.champion_version()
    customer = int(batch_scores(settings, plan.last_day)["customer_id"].iloc[0])
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=service.url, headers={"X-API-Key": API_KEY}, timeout=30) as http:
            while not stop.is_set():
                response = http.get(f"/v1/customers/{customer}/churn-score")
                seen.append((response.status_code, response.json().get("model_version")))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        time.sleep(1)
        # A new version of the same files (what a retraining that passes the gate registers), promoted.
        current = client.get_model_version(registry.model_name, champion)
        new = client.create_model_version(registry.model_name, current.source, run_id=current.run_id)
        client.set_model_version_tag(
            registry.model_name, new.version, "model_sha256", current.tags["model_sha256"]
        )
        registry.promote(str(new.version), "switch test")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not seen or seen[-1][1] != str(new.version)):
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        worker.join(timeout=30)
    statuses = {status for status, _ in seen}
    versions = [version for _, version in seen]
    assert statuses == {200}, f"failed requests during the switch: {statuses}"
    assert versions[0] == champion and versions[-1] == str(new.version)
    assert len(seen) > 20
    metrics = httpx.get(f"{service.url}/metrics").text
    assert (
        f'churn_serving_model_info{{sha256="{current.tags["model_sha256"]}",version="{new.version}"}} 1.0'
        in metrics
    )
    assert (
        'churn_serving_request_duration_seconds_bucket{endpoint="/v1/customers/{customer_id}/churn-score"'
        in metrics
    )


def test_the_service_refuses_to_start_without_an_api_key(platform):
    _, _, _, environ, _ = platform
    env = {**os.environ, **environ}
    env.pop("CHURN_SERVING_API_KEY")
    result = subprocess.run(
        [str(BIN / "churn-platform"), "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert b"CHURN_SERVING_API_KEY must be set" in result.stdout + result.stderr
