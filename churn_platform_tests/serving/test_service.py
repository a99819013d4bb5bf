"""`churn-platform serve` as a real process on a loopback port, with the Redis server on loopback, a
local MLflow store and the Zendesk simulator as its CRM: scores equal the batch path's, auth, the
4xx cases, stale features, a champion switch under continuous load without one failed request, the
CRM webhook loop (signature, write-back, redelivery) and the inference log."""

import datetime as dt
import json
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
from churn_platform.crm.sentiment import ticket_sentiment
from churn_platform.crm.simulator import ZendeskSimulator
from churn_platform.crm.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, timestamp_now
from churn_platform.definitions import build_definitions
from churn_platform.inference.log import InferenceLog, list_day_files, read_inference_files
from churn_platform.orchestration import asset_keys as keys
from churn_platform.resources import build_resources
from churn_platform.serving.webhooks import fold_in_ticket
from churn_platform.storage.connection import open_path
from churn_platform_tests.support.data import START, generate_into, settings_for
from churn_platform_tests.support.servers import free_port, wait_for_port
from churn_platform_tests.support.stack import PERMISSIVE_GATE

pytestmark = pytest.mark.slow

DAYS, CUSTOMERS = 60, 150
API_KEY = "test-key-" + uuid.uuid4().hex
WEBHOOK_SECRET = "whsec-" + uuid.uuid4().hex
RISK_FIELD = 360001  # the CRM's custom field for the churn probability
BIN = Path(sys.executable).parent


class Service:
    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
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
        run_demo(defs, instance, plan, gate=PERMISSIVE_GATE)
        result = defs.resolve_job_def("online_features_job").execute_in_process(
            instance=instance, partition_key=plan.last_day
        )
        assert result.success
    # The CRM: the Zendesk simulator as a server on loopback, sending signed webhooks to the service.
    port, crm_token = free_port(), uuid.uuid4().hex
    crm = ZendeskSimulator(
        [],
        oauth_token=crm_token,
        webhook_url=f"http://127.0.0.1:{port}/v1/webhooks/zendesk",
        webhook_secret=WEBHOOK_SECRET,
        webhook_backoff_seconds=0.2,
    ).start()
    crm_environ = {
        "CHURN_CRM_URL": crm.url,
        "ZENDESK_OAUTH_TOKEN": crm_token,
        "CHURN_CRM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CHURN_CRM_RISK_FIELD_ID": str(RISK_FIELD),
        "CHURN_INFERENCE_LOG_FLUSH_SECONDS": "1",
    }
    service = Service({**environ, **crm_environ}, root / "serve.log", port)
    try:
        yield settings, plan, service, environ, root, crm
    finally:
        service.stop()
        crm.stop()
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
    settings, plan, _, environ, root, _ = platform
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
    _, _, _, environ, _, _ = platform
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


# -- the CRM loop --------------------------------------------------------------------------------------
def signed_post(service: Service, body: bytes, secret: str = WEBHOOK_SECRET, timestamp: str | None = None):
    timestamp = timestamp or timestamp_now()
    return httpx.post(
        f"{service.url}/v1/webhooks/zendesk",
        content=body,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
        },
        timeout=30,
    )


def ticket_event(ticket_id: int, requester: int | None, kind: str = "ticket.created", **detail) -> bytes:
    return json.dumps(
        {
            "type": f"zen:event-type:{kind}",
            "account_id": 1,
            "id": uuid.uuid4().hex,
            "time": timestamp_now(),
            "zendesk_event_version": "2022-11-06",
            "subject": f"zen:ticket:{ticket_id}",
            "detail": {
                "id": str(ticket_id),
                "requester_id": None if requester is None else str(requester),
                "subject": "Cannot log in",
                "description": "It keeps failing and I am very unhappy.",
                "created_at": timestamp_now(),
                "updated_at": timestamp_now(),
                "tags": [],
                **detail,
            },
            "event": {},
        }
    ).encode()


def create_ticket(crm: ZendeskSimulator, requester: int, subject: str, body: str) -> dict:
    response = httpx.post(
        f"{crm.url}/api/v2/tickets.json",
        json={"ticket": {"subject": subject, "comment": {"body": body}, "requester_id": requester}},
        headers={"Authorization": f"Bearer {crm.oauth_token}"},
    )
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


def writes_to(crm: ZendeskSimulator, ticket_id: int) -> list[dict]:
    return [fields for updated, fields in crm.updates if updated == ticket_id]


def test_a_new_ticket_gets_its_requesters_risk_written_back(platform):
    settings, plan, service, _, _, crm = platform
    features = pd.read_parquet(
        build_resources(settings)["io_manager"].path_for(keys.CUSTOMER_FEATURES, plan.last_day).path
    )
    customer = int(batch_scores(settings, plan.last_day)["customer_id"].iloc[3])
    subject, body = "Billing is wrong again", "This is terrible, I am furious and want to cancel."
    ticket = create_ticket(crm, customer, subject, body)
    crm.wait_for_webhooks(timeout=30)

    # What the agent sees: the risk tag and the probability, written once.
    [written] = writes_to(crm, ticket["id"])
    shown = httpx.get(
        f"{crm.url}/api/v2/tickets/{ticket['id']}.json",
        headers={"Authorization": f"Bearer {crm.oauth_token}"},
    ).json()["ticket"]
    [field] = [f for f in shown["custom_fields"] if f["id"] == RISK_FIELD]
    [tag] = [t for t in shown["tags"] if t.startswith("churn_risk_")]

    # The same score as the customer's stored features with this new ticket counted in, posted.
    row = features.set_index("customer_id", drop=False).loc[customer]
    stored = {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else str(v)) for k, v in row.items()}
    folded = fold_in_ticket(stored, ticket_sentiment(subject, body))
    assert folded["tickets_30d"] == stored["tickets_30d"] + 1
    expected = service.client.post("/v1/churn-scores/features", json={"features": folded}).json()
    assert field["value"] == round(expected["churn_probability"], 4)
    assert tag == written["additional_tags"][0]
    assert tag == (
        "churn_risk_high"
        if expected["churn_probability"] >= 0.5
        else "churn_risk_medium"
        if expected["churn_probability"] >= 0.2
        else "churn_risk_low"
    )
    # The write-back's own tag and field changes came back as webhooks and were ignored (no loop).
    kinds = [d["type"] for d in crm.webhook_deliveries if d["ticket_id"] == ticket["id"]]
    assert kinds[0].endswith("ticket.created") and len(kinds) > 1
    assert {d["status"] for d in crm.webhook_deliveries if d["ticket_id"] == ticket["id"]} == {200}


def test_a_redelivered_event_is_answered_again_but_written_once(platform):
    settings, plan, service, _, _, crm = platform
    customer = int(batch_scores(settings, plan.last_day)["customer_id"].iloc[5])
    ticket = create_ticket(crm, customer, "Question", "How do I export my data?")
    crm.wait_for_webhooks(timeout=30)
    assert len(writes_to(crm, ticket["id"])) == 1
    event = ticket_event(ticket["id"], customer, "ticket.comment_added")
    first, again = signed_post(service, event), signed_post(service, event)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["status"] == "scored" and again.json()["redelivery"] is True
    assert again.json()["churn_probability"] == first.json()["churn_probability"]
    crm.wait_for_webhooks(timeout=30)
    assert len(writes_to(crm, ticket["id"])) == 2  # the creation's and this event's, not a third


def test_webhooks_that_are_not_provably_from_the_crm_are_refused(platform):
    settings, plan, service, _, _, crm = platform
    customer = int(batch_scores(settings, plan.last_day)["customer_id"].iloc[9])
    ticket = create_ticket(crm, customer, "Hello", "A question")
    crm.wait_for_webhooks(timeout=30)
    before = len(crm.updates)
    event = ticket_event(ticket["id"], customer, "ticket.comment_added")  # would be scored if it were signed
    unsigned = httpx.post(f"{service.url}/v1/webhooks/zendesk", content=event)
    assert unsigned.status_code == 401 and "unsigned" in unsigned.text
    assert signed_post(service, event, secret="another-secret").status_code == 401
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stale = signed_post(service, event, timestamp=old)
    assert stale.status_code == 401 and "stale" in stale.text
    timestamp = timestamp_now()
    altered = httpx.post(
        f"{service.url}/v1/webhooks/zendesk",
        content=event.replace(b"Cannot log in", b"Cannot log on"),
        headers={SIGNATURE_HEADER: sign(WEBHOOK_SECRET, timestamp, event), TIMESTAMP_HEADER: timestamp},
    )
    assert altered.status_code == 401 and WEBHOOK_SECRET not in altered.text
    assert len(crm.updates) == before  # nothing was written


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 422, "not JSON"),
        (b'{"type": "zen:event-type:ticket.created", "id": "x"}', 422, "no 'detail'"),
        (ticket_event(7, None), 200, "no customer requester"),
        (ticket_event(7, 1, "ticket.tags_changed"), 200, "is not scored"),
        (ticket_event(7, 1, tags=["churn_platform_alert"]), 200, "an alert ticket the platform opened"),
        (ticket_event(7, 987654321), 200, "has no features"),
    ],
    ids=["not-json", "no-detail", "no-requester", "tags-changed", "platform-alert", "unknown-customer"],
)
def test_signed_events_the_service_cannot_or_should_not_score(platform, body, status, says):
    _, _, service, _, _, crm = platform
    before = len(crm.updates)
    response = signed_post(service, body)
    assert response.status_code == status and says in response.text
    assert len(crm.updates) == before


def test_a_write_back_the_crm_refuses_is_final_not_retried(platform):
    settings, plan, service, _, _, crm = platform
    customer = int(batch_scores(settings, plan.last_day)["customer_id"].iloc[7])
    event = ticket_event(999_999, customer)  # no such ticket in the CRM: the update gets 404
    refused = signed_post(service, event)
    assert refused.status_code == 424 and "999999" in refused.text
    again = signed_post(service, event)
    assert again.status_code == 200 and again.json()["status"] == "refused" and again.json()["redelivery"]


# -- the inference log ------------------------------------------------------------------------------------
def test_every_prediction_lands_in_the_inference_log(platform):
    settings, plan, service, *_ = platform
    batch = batch_scores(settings, plan.last_day)
    caller = f"log-test-{uuid.uuid4().hex[:6]}"
    ids = batch["customer_id"].iloc[:3].tolist()
    single = service.client.get(f"/v1/customers/{ids[0]}/churn-score", headers={"X-Caller": caller}).json()
    many = service.client.post(
        "/v1/churn-scores", json={"customer_ids": ids}, headers={"X-Caller": caller}
    ).json()
    answered = [(single["request_id"], ids[0], single["churn_probability"])] + [
        (many["request_id"], s["customer_id"], s["churn_probability"]) for s in many["scores"]
    ]
    landing = open_path(settings.storage.landing_dir)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    deadline, logged = time.monotonic() + 20, pd.DataFrame()
    while time.monotonic() < deadline:  # flushed every second (CHURN_INFERENCE_LOG_FLUSH_SECONDS=1)
        table, _ = read_inference_files(today, list_day_files(landing, today))
        logged = table.to_pandas()
        logged = logged[logged["caller"] == caller]
        if len(logged) == len(answered):
            break
        time.sleep(0.5)
    assert sorted(
        zip(logged["request_id"], logged["customer_id"], logged["churn_probability"], strict=True)
    ) == sorted(answered)
    assert set(logged["model_version"]) == {single["model_version"]}
    assert {str(d) for d in logged["features_as_of"]} == {plan.last_day}
    assert set(logged["endpoint"]) == {"customer", "batch"} and (logged["latency_ms"] > 0).all()


def test_a_day_of_predictions_is_ingested_checked_for_drift_and_backed_up(platform):
    settings, plan, *_ = platform
    day = (dt.date.fromisoformat(plan.last_day) + dt.timedelta(days=1)).isoformat()
    batch = batch_scores(settings, plan.last_day)  # what the service serves from on `day`
    landing = open_path(settings.storage.landing_dir)
    # The service's log writer, its clock set to that day: two flushes, so two files.
    writer = InferenceLog(landing, 60, clock=lambda: dt.datetime.fromisoformat(f"{day}T12:00:00+00:00"))
    for number, (customer, probability) in enumerate(
        zip(batch["customer_id"], batch["churn_probability"], strict=True)
    ):
        writer.record(
            customer_ids=[int(customer)],
            churn_probabilities=[float(probability)],
            request_id=f"r{number}",
            model_version="1",
            model_sha256="0" * 64,
            features_as_of=plan.last_day,
            latency_ms=1.5,
            endpoint="customer",
            caller="test",
        )
        if number == 10:
            writer.flush()
    files = writer.flush()
    assert len(list_day_files(landing, day)) == 2 and files

    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        job = defs.resolve_job_def("inference_log_job")
        result = job.execute_in_process(instance=instance, partition_key=day, raise_on_error=False)
        assert result.success
        ingested = instance.get_latest_materialization_event(
            keys.INFERENCE_LOGS
        ).asset_materialization.metadata
        assert ingested["predictions"].value == len(batch) and ingested["inference_files"].value == 2
        drift = instance.get_latest_materialization_event(
            keys.PREDICTION_DRIFT
        ).asset_materialization.metadata
        # Every batch score served once: the served distribution is the reference's.
        assert drift["served_predictions"].value == len(batch) and drift["psi"].value < 0.01
        check = result.get_asset_check_evaluations()
        assert [c.passed for c in check if c.check_name == keys.PREDICTION_DRIFT_BELOW_THRESHOLD.name] == [
            True
        ]

        # The backup holds the day's files byte for byte.
        copies = build_resources(settings)["backup_store"]
        for path in list_day_files(landing, day):
            assert copies.read(f"inference_logs/date={day}/{path.name}") == path.read_bytes()

        # A landed file changed after ingestion is not backed up as if it were what was read.
        first = list_day_files(landing, day)[0]
        first.write_bytes(first.read_bytes().replace(b'"caller":"test"', b'"caller":"evil"', 1))
        again = (
            defs.resolve_job_def("inference_log_job")
            .get_subset(asset_selection={keys.INFERENCE_LOG_BACKUP})
            .execute_in_process(instance=instance, partition_key=day, raise_on_error=False)
        )
        assert not again.success
        [failure] = [e for e in again.all_events if e.is_step_failure]
        assert "changed since raw/inference_logs read it" in str(failure.step_failure_data.error)
