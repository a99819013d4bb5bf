"""The Zendesk simulator as real clients see it, over loopback HTTP: HTTP/1.1 keep-alive, a real
Zendesk client library (zenpy), Zendesk's ticket show/create/update semantics, persistence, and
signed webhooks delivered from a background thread with Zendesk's retries."""

import datetime as dt
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from churn_platform.cli.main import main
from churn_platform.crm import webhooks
from churn_platform.crm.export import read_export, write_export
from churn_platform.crm.simulator import FaultConfig, ZendeskSimulator
from churn_platform.crm.zendesk_api import CRMRequestRefused, RetrySettings, ZendeskAPI

TOKEN = "oauth-sim-token-5d2a"
SECRET = "webhook-signing-secret-7c1e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST = {"webhook_backoff_seconds": 0.01, "webhook_max_attempts": 5}


def make_ticket(ticket_id: int, **overrides: Any) -> dict[str, Any]:
    ticket = {
        "id": ticket_id,
        "url": f"https://example.zendesk.com/api/v2/tickets/{ticket_id}.json",
        "subject": f"ticket {ticket_id}",
        "description": f"first comment of {ticket_id}",
        "status": "open",
        "priority": "normal",
        "type": "question",
        "requester_id": 500 + ticket_id,
        "assignee_id": None,
        "tags": ["neutral"],
        "via": {"channel": "email"},
        "custom_fields": [],
        "satisfaction_rating": None,
        "created_at": "2026-01-05T10:00:00Z",
        "updated_at": "2026-01-05T12:00:00Z",
    }
    return ticket | overrides


@pytest.fixture
def tickets() -> list[dict[str, Any]]:
    return [
        make_ticket(1),
        make_ticket(2, tags=["neutral", "billing"], custom_fields=[{"id": 100, "value": "a"}]),
        make_ticket(3, status="closed"),
        make_ticket(4, generated_timestamp=1767614400),
    ]


def simulator(tickets: list[dict[str, Any]], **overrides: Any) -> ZendeskSimulator:
    return ZendeskSimulator(tickets, oauth_token=TOKEN, export_delay_seconds=0, **overrides)


class Receiver:
    """A webhook endpoint on loopback that records every request. ``answer(payload, attempt)`` gives
    the status (or ``(status, headers)``) for the ``attempt``-th request carrying that event id;
    while ``gate`` is set-able and unset, requests wait for it."""

    def __init__(
        self,
        answer: Callable[[dict[str, Any], int], int | tuple[int, dict[str, str]]] = lambda p, n: 200,
        gate: threading.Event | None = None,
    ) -> None:
        self.requests: list[dict[str, Any]] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if gate is not None:
                    gate.wait(10)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payload = json.loads(body)
                with receiver._lock:
                    receiver._seen[payload["id"]] += 1
                    attempt = receiver._seen[payload["id"]]
                answered = answer(payload, attempt)
                status, headers = answered if isinstance(answered, tuple) else (answered, {})
                with receiver._lock:
                    receiver.requests.append(
                        {"headers": dict(self.headers), "body": body, "payload": payload, "status": status}
                    )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/zendesk/events"

    def accepted(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["status"] < 300]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(*args: Any, **kwargs: Any) -> Receiver:
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield make
    for r in made:
        r.stop()


# -- HTTP/1.1 ---------------------------------------------------------------------------------------


def test_http11_keeps_one_connection_across_requests_errors_and_truncated_bodies(tickets):
    with simulator(tickets, faults=FaultConfig(malformed=0.5, seed=2)).running() as sim:
        conn = http.client.HTTPConnection("127.0.0.1", int(sim.url.rsplit(":", 1)[1]), timeout=5)
        bodies = []
        for method, path, body, headers in [
            ("GET", "/api/v2/tickets/1.json", None, AUTH),
            ("POST", "/api/v2/tickets.json", b'{"ticket": {"subject": "x"}}', {}),  # 401, body unread
            ("GET", "/api/v2/tickets/99.json", None, AUTH),
            ("GET", "/api/v2/nope.json", None, AUTH),
            ("GET", "/api/v2/tickets/2.json", None, AUTH),
            ("GET", "/api/v2/tickets/1.json", None, AUTH),
            ("GET", "/api/v2/tickets/2.json", None, AUTH),
        ]:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            assert response.version == 11 and response.getheader("Connection") != "close"
            data = response.read()
            assert len(data) == int(response.getheader("Content-Length"))
            bodies.append((response.status, data))
        conn.close()
        assert [s for s, _ in bodies] == [200, 401, 404, 404, 200, 200, 200]
        assert json.loads(bodies[2][1]) == {"error": "RecordNotFound", "description": "Not found"}
        assert sim.served["malformed"] >= 1  # some 200s were cut short, with a matching Content-Length

        def parses(data: bytes) -> bool:
            try:
                json.loads(data)
                return True
            except ValueError:
                return False

        assert sum(not parses(d) for s, d in bodies if s == 200) == sim.served["malformed"]
        assert sim.connections == 1 and sim.requests == 7


# -- zenpy ---------------------------------------------------------------------------------------------


def test_zenpy_creates_reads_and_updates_a_ticket_over_one_connection(tickets, monkeypatch):
    from zenpy import Zenpy
    from zenpy.lib.api_objects import Comment, CustomField, Ticket
    from zenpy.lib.exception import RecordNotFoundException

    with ZendeskSimulator(tickets, email="ops@example.com", api_token="zd-tok").running() as sim:
        # zenpy's supported override of https://{subdomain}.zendesk.com (zenpy PR #406)
        monkeypatch.setenv("ZENPY_FORCE_NETLOC", sim.url.removeprefix("http://"))
        monkeypatch.setenv("ZENPY_FORCE_SCHEME", "http")
        zen = Zenpy(subdomain="simulated", email="ops@example.com", token="zd-tok", disable_cache=True)

        created = zen.tickets.create(
            Ticket(
                subject="Cannot export invoices",
                requester_id=777,
                tags=["churn_risk", "vip"],
                comment=Comment(body="The export button does nothing."),
                custom_fields=[CustomField(id=100, value="enterprise")],
            )
        )
        ticket_id = created.ticket.id
        assert created.audit.ticket_id == ticket_id and created.audit.events[0]["type"] == "Comment"

        fetched = zen.tickets(id=ticket_id)
        assert (fetched.requester_id, fetched.tags, fetched.description) == (
            777,
            ["churn_risk", "vip"],
            "The export button does nothing.",
        )
        assert fetched.status == "new" and fetched.custom_fields == [{"id": 100, "value": "enterprise"}]

        fetched.tags.append("escalated")
        fetched.custom_fields.append(CustomField(id=200, value=3))
        fetched.status = "pending"
        fetched.comment = Comment(body="Looking into it.", public=False)
        updated = zen.tickets.update(fetched).ticket

        state = sim.created[0]
        assert state["tags"] == updated.tags == ["churn_risk", "vip", "escalated"]
        assert (
            state["custom_fields"]
            == updated.custom_fields
            == [
                {"id": 100, "value": "enterprise"},
                {"id": 200, "value": 3},
            ]
        )
        assert state["status"] == updated.status == "pending"
        comments = list(zen.tickets.comments(ticket=ticket_id))
        assert [(c.body, c.public) for c in comments] == [
            ("The export button does nothing.", True),
            ("Looking into it.", False),
        ]
        assert [tid for tid, _ in sim.updates] == [ticket_id]
        with pytest.raises(RecordNotFoundException):
            zen.tickets(id=9999)
        assert sim.connections == 1  # requests' pool kept the one HTTP/1.1 connection alive


# -- GET / PUT / POST semantics ------------------------------------------------------------------------


def test_put_tags_custom_fields_comments_and_404s(tickets):
    with simulator(tickets).running() as sim, httpx.Client(base_url=sim.url, headers=AUTH) as http:
        assert http.get("/api/v2/tickets/2.json").json()["ticket"]["tags"] == ["neutral", "billing"]
        for path in ("/api/v2/tickets/99.json", "/api/v2/tickets/99/comments.json"):
            missing = http.get(path)
            assert missing.status_code == 404 and missing.json()["error"] == "RecordNotFound"
        assert http.put("/api/v2/tickets/99.json", json={"ticket": {"status": "open"}}).status_code == 404

        answer = http.put(
            "/api/v2/tickets/2.json",
            json={
                "ticket": {
                    "additional_tags": ["churn_risk", "neutral"],
                    "remove_tags": ["billing"],
                    "custom_fields": [{"id": 100, "value": "b"}, {"id": 101, "value": True}],
                    "comment": {"body": "Escalated to retention.", "public": False},
                    "priority": "urgent",
                }
            },
        )
        assert answer.status_code == 200
        ticket, audit = answer.json()["ticket"], answer.json()["audit"]
        assert ticket["tags"] == ["neutral", "churn_risk"]
        assert ticket["custom_fields"] == [{"id": 100, "value": "b"}, {"id": 101, "value": True}]
        assert ticket["priority"] == "urgent" and ticket["updated_at"] > "2026-01-05T12:00:00Z"
        assert {"id", "ticket_id", "created_at", "author_id", "events"} <= audit.keys()
        assert audit["ticket_id"] == 2 and audit["author_id"] == sim.api_user_id
        changes = {
            e["field_name"]: (e["previous_value"], e["value"])
            for e in audit["events"]
            if e["type"] == "Change"
        }
        assert changes == {
            "priority": ("normal", "urgent"),
            "tags": (["neutral", "billing"], ["neutral", "churn_risk"]),
            "100": ("a", "b"),
            "101": (None, True),
        }
        comments = http.get("/api/v2/tickets/2/comments.json").json()["comments"]
        assert [(c["body"], c["public"]) for c in comments] == [
            ("first comment of 2", True),
            ("Escalated to retention.", False),
        ]
        assert comments[1]["audit_id"] == audit["id"]

        replaced = http.put("/api/v2/tickets/2.json", json={"ticket": {"tags": ["a", "b", "a"]}}).json()
        assert replaced["ticket"]["tags"] == ["a", "b"]
        # No change: counted as a request, but no audit and no new updated_at.
        same = http.put("/api/v2/tickets/2.json", json={"ticket": {"tags": ["a", "b"], "priority": "urgent"}})
        assert same.status_code == 200 and "audit" not in same.json()
        assert same.json()["ticket"]["updated_at"] == replaced["ticket"]["updated_at"]
        assert [tid for tid, _ in sim.updates] == [2, 2, 2]

        closed = http.put("/api/v2/tickets/3.json", json={"ticket": {"status": "open"}})
        assert closed.status_code == 422 and closed.json()["error"] == "RecordInvalid"
        invalid = http.put("/api/v2/tickets/1.json", json={"ticket": {"status": "done"}})
        assert invalid.status_code == 422
        assert [tid for tid, _ in sim.updates] == [2, 2, 2]  # refused updates are not applied
        assert tickets[1]["tags"] == ["neutral", "billing"]  # the caller's dicts are left alone


def test_updates_bump_updated_at_and_reach_the_incremental_export(tickets):
    with simulator(tickets).running() as sim, ZendeskAPI(sim.url, f"Bearer {TOKEN}") as api:
        before = {t["id"]: t for t in api.export_tickets(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))}
        assert sorted(before) == [1, 2, 3, 4]
        recent = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
        assert api.export_tickets(recent) == []

        api.update_ticket(1, {"status": "solved"})
        api.update_ticket(4, {"additional_tags": ["followed_up"]})
        changed = {t["id"]: t for t in api.export_tickets(recent)}
        assert sorted(changed) == [1, 4]
        assert changed[1]["status"] == "solved" and changed[1]["updated_at"] > before[1]["updated_at"]
        assert changed[4]["generated_timestamp"] > before[4]["generated_timestamp"]
        assert changed[4]["tags"] == ["neutral", "followed_up"]


def test_create_takes_the_description_like_zendesk(tickets):
    with simulator(tickets).running() as sim, httpx.Client(base_url=sim.url, headers=AUTH) as http:
        answer = http.post(
            "/api/v2/tickets.json",
            json={
                "ticket": {
                    "subject": "Refund",
                    "comment": {"body": "Please refund me."},
                    "description": "ignored: the comment is the first comment",
                    "requester_id": 321,
                    "external_id": "crm-321",
                    "tags": ["billing", "billing", "refund"],
                    "custom_fields": [{"id": 100, "value": "x"}],
                }
            },
        )
        assert answer.status_code == 201
        ticket, audit = answer.json()["ticket"], answer.json()["audit"]
        assert ticket["id"] == 5 and ticket["description"] == "Please refund me."
        assert (ticket["requester_id"], ticket["external_id"], ticket["tags"]) == (
            321,
            "crm-321",
            ["billing", "refund"],
        )
        assert ticket["custom_fields"] == [{"id": 100, "value": "x"}] and ticket["status"] == "new"
        assert audit["ticket_id"] == 5 and audit["events"][0]["type"] == "Comment"
        assert {e["field_name"] for e in audit["events"][1:]} >= {"subject", "status", "tags", "100"}
        assert http.get("/api/v2/tickets/5.json").json()["ticket"] == ticket

        only_description = http.post(
            "/api/v2/tickets.json", json={"ticket": {"subject": "s", "description": "From description."}}
        ).json()["ticket"]
        assert only_description["description"] == "From description."
        assert only_description["requester_id"] == sim.api_user_id  # the authenticated agent
        comments = http.get(f"/api/v2/tickets/{only_description['id']}/comments.json").json()["comments"]
        assert [c["body"] for c in comments] == ["From description."]

        blank = http.post("/api/v2/tickets.json", json={"ticket": {"subject": "no text"}})
        assert blank.status_code == 422 and "Description" in blank.text
        assert len(sim.created) == 2


def test_on_change_persists_creates_and_updates_to_the_export(tickets, tmp_path):
    path = str(tmp_path / "tickets.jsonl")
    write_export(path, tickets)
    sim = simulator(read_export(path), on_change=lambda all_tickets: write_export(path, all_tickets))
    with sim.running(), ZendeskAPI(sim.url, f"Bearer {TOKEN}") as api:
        new_id = api.create_ticket("Outage", "Nothing loads", tags=["alert"])
        api.update_ticket(1, {"comment": {"body": "Call scheduled"}, "additional_tags": ["called"]})
        api.update_ticket(1, {"tags": ["called", "neutral"]})  # no change: nothing to write
    stored = {t["id"]: t for t in read_export(path)}
    assert sorted(stored) == [1, 2, 3, 4, new_id]
    assert stored[1]["tags"] == ["neutral", "called"] and stored[new_id]["tags"] == ["alert"]


def test_zendesk_api_get_and_update_round_trip_and_a_404_is_refused_at_once(tickets):
    retry = RetrySettings(max_attempts=5, backoff_base_seconds=0.001, backoff_max_seconds=0.01)
    with simulator(tickets).running() as sim, ZendeskAPI(sim.url, f"Bearer {TOKEN}", retry=retry) as api:
        updated = api.update_ticket(
            2, {"custom_fields": [{"id": 100, "value": "z"}], "remove_tags": ["neutral"], "status": "pending"}
        )
        assert api.get_ticket(2) == updated
        assert (updated["status"], updated["tags"], updated["custom_fields"]) == (
            "pending",
            ["billing"],
            [{"id": 100, "value": "z"}],
        )
        requests = sim.requests
        with pytest.raises(CRMRequestRefused, match=r"tickets/404\.json: request refused \(404\)"):
            api.get_ticket(404)
        with pytest.raises(CRMRequestRefused, match=r"\(404\)"):
            api.update_ticket(404, {"status": "open"})
        assert sim.requests == requests + 2  # not retried


# -- webhooks ------------------------------------------------------------------------------------------


def test_create_and_update_send_signed_events_in_order(tickets, receiver):
    endpoint = receiver()
    sim = simulator(tickets, webhook_url=endpoint.url, webhook_secret=SECRET, **FAST)
    with sim.running(), httpx.Client(base_url=sim.url, headers=AUTH) as http:
        created = http.post(
            "/api/v2/tickets.json",
            json={"ticket": {"subject": "Slow app", "comment": {"body": "It lags"}, "requester_id": 42}},
        ).json()["ticket"]
        http.put(
            f"/api/v2/tickets/{created['id']}.json",
            json={
                "ticket": {
                    "comment": {"body": "Sorry about that", "public": True},
                    "additional_tags": ["churn_risk"],
                    "custom_fields": [{"id": 100, "value": "high"}, {"id": 101, "value": 2}],
                    "status": "open",
                }
            },
        )
        assert sim.wait_for_webhooks(5)

    payloads = [r["payload"] for r in endpoint.requests]
    assert [p["type"] for p in payloads] == [
        webhooks.TICKET_CREATED,
        webhooks.TICKET_COMMENT_ADDED,
        webhooks.TICKET_TAGS_CHANGED,
        webhooks.TICKET_CUSTOM_FIELD_CHANGED,
        webhooks.TICKET_CUSTOM_FIELD_CHANGED,
        webhooks.TICKET_STATUS_CHANGED,
    ]
    assert len({p["id"] for p in payloads}) == 6
    first = payloads[0]
    assert first["account_id"] == 1 and first["zendesk_event_version"] == "2022-11-06"
    assert first["subject"] == f"zen:ticket:{created['id']}" and first["event"] == {}
    assert first["time"].endswith("Z") and dt.datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    detail = first["detail"]
    assert (detail["id"], detail["requester_id"], detail["status"]) == (str(created["id"]), "42", "NEW")
    assert (detail["subject"], detail["description"], detail["tags"]) == ("Slow app", "It lags", [])
    assert detail["via"] == {"channel": "api"} and detail["custom_fields"] == []
    comment = payloads[1]["event"]["comment"]
    assert (comment["body"], comment["is_public"], comment["author"]["id"]) == (
        "Sorry about that",
        True,
        str(sim.api_user_id),
    )
    assert payloads[2]["event"] == {"tags_added": ["churn_risk"], "tags_removed": []}
    assert payloads[3]["event"] == {"current": "high", "previous": None, "custom_field": {"id": 100}}
    assert payloads[4]["event"] == {"current": 2, "previous": None, "custom_field": {"id": 101}}
    assert payloads[5]["event"] == {"current": "OPEN", "previous": "NEW"}
    assert payloads[5]["detail"]["custom_fields"] == [{"id": 100, "value": "high"}, {"id": 101, "value": 2}]

    for request in endpoint.requests:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["content-type"] == "application/json" and headers["user-agent"] == "Zendesk Webhook"
        assert headers["x-zendesk-webhook-id"] == sim.webhook_id
        signed = (headers["x-zendesk-webhook-signature-timestamp"], request["body"])
        webhooks.verify(SECRET, signed[0], signed[1], headers["x-zendesk-webhook-signature"])
        with pytest.raises(webhooks.WebhookRejected):
            webhooks.verify("another-secret", signed[0], signed[1], headers["x-zendesk-webhook-signature"])
    assert [d["attempts"] for d in sim.webhook_deliveries] == [1] * 6
    assert all(d["delivered"] and d["status"] == 200 for d in sim.webhook_deliveries)


def test_api_answers_without_waiting_for_the_delivery(tickets, receiver):
    gate = threading.Event()
    endpoint = receiver(gate=gate)
    sim = simulator(tickets, webhook_url=endpoint.url, webhook_secret=SECRET, **FAST)
    with sim.running(), httpx.Client(base_url=sim.url, headers=AUTH) as http:
        started = time.monotonic()
        assert http.put("/api/v2/tickets/1.json", json={"ticket": {"status": "pending"}}).status_code == 200
        assert time.monotonic() - started < 1 and sim.webhook_deliveries == []
        assert not sim.wait_for_webhooks(0.1)
        gate.set()
        assert sim.wait_for_webhooks(5)
    assert [d["type"] for d in sim.webhook_deliveries] == [webhooks.TICKET_STATUS_CHANGED]


def test_a_refused_delivery_is_retried_with_the_same_event_id_until_accepted(tickets, receiver):
    endpoint = receiver(lambda payload, attempt: (503, {"Retry-After": "0"}) if attempt <= 2 else 200)
    sim = simulator(tickets, webhook_url=endpoint.url, webhook_secret=SECRET, **FAST)
    with sim.running(), ZendeskAPI(sim.url, f"Bearer {TOKEN}") as api:
        api.update_ticket(1, {"additional_tags": ["retry_me"]})
        assert sim.wait_for_webhooks(5)
    assert [r["status"] for r in endpoint.requests] == [503, 503, 200]
    assert len({r["payload"]["id"] for r in endpoint.requests}) == 1
    assert len(endpoint.accepted()) == 1
    for request in endpoint.requests:  # each attempt is signed (afresh) over the same body
        headers = {k.lower(): v for k, v in request["headers"].items()}
        webhooks.verify(
            SECRET,
            headers["x-zendesk-webhook-signature-timestamp"],
            request["body"],
            headers["x-zendesk-webhook-signature"],
        )
    (delivery,) = sim.webhook_deliveries
    assert delivery["event_id"] == endpoint.requests[0]["payload"]["id"]
    assert (delivery["type"], delivery["ticket_id"]) == (webhooks.TICKET_TAGS_CHANGED, 1)
    assert (delivery["attempts"], delivery["status"], delivery["delivered"]) == (3, 200, True)


def test_a_400_is_final_and_an_unreachable_endpoint_gives_up_after_max_attempts(tickets, receiver):
    endpoint = receiver(lambda payload, attempt: 400)
    sim = simulator(tickets, webhook_url=endpoint.url, webhook_secret=SECRET, **FAST)
    with sim.running(), ZendeskAPI(sim.url, f"Bearer {TOKEN}") as api:
        api.update_ticket(1, {"status": "hold"})
        assert sim.wait_for_webhooks(5)
    assert len(endpoint.requests) == 1
    assert sim.webhook_deliveries[0] | {"event_id": None} == {
        "event_id": None,
        "type": webhooks.TICKET_STATUS_CHANGED,
        "ticket_id": 1,
        "attempts": 1,
        "status": 400,
        "delivered": False,
        "error": "refused",
    }

    gone = receiver()
    gone.stop()  # nothing listens there any more
    sim = simulator(
        tickets, webhook_url=gone.url, webhook_secret=SECRET, **FAST | {"webhook_max_attempts": 3}
    )
    with sim.running(), ZendeskAPI(sim.url, f"Bearer {TOKEN}") as api:
        api.update_ticket(1, {"status": "hold"})
        assert sim.wait_for_webhooks(5)
    (delivery,) = sim.webhook_deliveries
    assert delivery["attempts"] == 3 and not delivery["delivered"]
    assert delivery["error"].startswith("connection failed")


def test_stop_abandons_pending_retries_without_hanging(tickets, receiver):
    endpoint = receiver(lambda payload, attempt: 503)
    sim = simulator(
        tickets,
        webhook_url=endpoint.url,
        webhook_secret=SECRET,
        webhook_backoff_seconds=30,
        webhook_max_attempts=5,
    )
    sim.start()
    with ZendeskAPI(sim.url, f"Bearer {TOKEN}") as api:
        api.update_ticket(1, {"status": "pending", "additional_tags": ["x"]})  # two events queued
    deadline = time.monotonic() + 5
    while not endpoint.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    sim.stop(drain_timeout=0.1)
    assert time.monotonic() - started < 2
    assert [d["error"] for d in sim.webhook_deliveries] == ["abandoned", "abandoned"]
    assert [d["attempts"] for d in sim.webhook_deliveries] == [1, 0]


def test_webhooks_need_a_signing_secret(tickets, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="webhook_secret"):
        simulator(tickets, webhook_url="http://127.0.0.1:9/hook").start()
    monkeypatch.setenv("ZENDESK_OAUTH_TOKEN", TOKEN)
    monkeypatch.delenv("CHURN_CRM_WEBHOOK_SECRET", raising=False)
    result = CliRunner().invoke(
        main,
        ["crm-simulator", "--export", str(tmp_path / "none.jsonl"), "--webhook-url", "http://127.0.0.1:9/"],
    )
    assert result.exit_code == 2 and "set CHURN_CRM_WEBHOOK_SECRET" in result.output
