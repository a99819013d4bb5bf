"""A local simulator of the Zendesk Support API, serving tickets over real HTTP/1.1 on loopback.

Endpoints: the cursor-based incremental ticket export, the cursor-paginated ticket list, ticket
creation (``POST /api/v2/tickets.json``), one ticket (``GET``/``PUT /api/v2/tickets/{id}.json``) and
its comments (``GET /api/v2/tickets/{id}/comments.json``). Connections are kept alive like
Zendesk's, so a pooling client (requests, httpx, zenpy) reuses one. Auth is checked like Zendesk
does (OAuth bearer token or Basic ``{email}/token:{token}``). Faults can be injected by
configuration: 429 with Retry-After, 500/503, slow responses, truncated JSON, empty pages before
the end and tickets repeated across pages.

With ``webhook_url`` set, every ticket change is also sent as a signed Zendesk event-subscription
webhook (see ``ZendeskSimulator``), from one background thread, retried like Zendesk retries.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import itertools
import json
import queue
import random
import re
import secrets
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx

from churn_platform.crm import webhooks
from churn_platform.crm.zendesk_api import (
    EXPORT_PATH,
    MAX_PAGE_SIZE,
    TICKET_COMMENTS_PATH,
    TICKET_PATH,
    TICKETS_PATH,
    basic_auth_header,
)

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
PRIORITIES = (None, "low", "normal", "high", "urgent")
TYPES = (None, "problem", "incident", "question", "task")
# Scalar ticket properties a PUT may set besides status/priority/type (validated above) and the
# tags, custom fields and comment handled on their own. Read-only ones (id, description,
# created_at, ...) are ignored, as Zendesk ignores them.
_SCALARS = ("subject", "status", "priority", "type", "external_id", "requester_id", "assignee_id", "group_id")
NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
ZENDESK_EVENT_VERSION = "2022-11-06"
WEBHOOK_ACCOUNT_ID = 1
MAX_WEBHOOK_RETRY_AFTER_SECONDS = 60.0  # a longer Retry-After falls back to the exponential backoff

_TICKET_ROUTE = re.compile(
    "^" + re.escape(TICKET_PATH).replace(re.escape("{ticket_id}"), r"(?P<id>\d+)") + "$"
)
_COMMENTS_ROUTE = re.compile(
    "^" + re.escape(TICKET_COMMENTS_PATH).replace(re.escape("{ticket_id}"), r"(?P<id>\d+)") + "$"
)


@dataclass(frozen=True)
class FaultConfig:
    """Per-request probabilities of each fault, drawn from a seeded generator."""

    rate_limit: float = 0.0
    retry_after_seconds: int = 1
    server_error: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 1.0
    malformed: float = 0.0
    empty_page: float = 0.0
    duplicates: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, spec: str) -> FaultConfig:
        """From `name=value,...`, e.g. `rate_limit=0.1,server_error=0.05,seed=3`."""
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, raw = item.partition("=")
            if name not in cls.__dataclass_fields__:
                raise ValueError(f"unknown fault {name!r}; known: {sorted(cls.__dataclass_fields__)}")
            values[name] = int(raw) if name in ("seed", "retry_after_seconds") else float(raw)
        return cls(**values)


class _Invalid(Exception):
    """A request Zendesk would refuse with 422 RecordInvalid; the message is the field's error."""


def _epoch(ticket: dict[str, Any]) -> int:
    stamp = ticket.get("generated_timestamp")
    if isinstance(stamp, int):
        return stamp
    return int(dt.datetime.fromisoformat(str(ticket["updated_at"]).replace("Z", "+00:00")).timestamp())


def _encode(*parts: object) -> str:
    return base64.urlsafe_b64encode("|".join(map(str, parts)).encode()).decode()


def _decode(cursor: str) -> list[str]:
    return base64.urlsafe_b64decode(cursor.encode()).decode().split("|")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event_time() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _tags(value: Any) -> list[str]:
    """Zendesk takes tags as a list or a space-separated string; a ticket holds each tag once."""
    items = value.split() if isinstance(value, str) else list(value or [])
    return list(dict.fromkeys(str(tag) for tag in items))


def _custom_field_values(value: Any) -> list[tuple[int, Any]]:
    if not isinstance(value, list) or not all(isinstance(f, dict) and "id" in f for f in value):
        raise _Invalid('custom_fields must be a list of {"id": N, "value": V}')
    return [(int(f["id"]), f.get("value")) for f in value]


def _validate(fields: dict[str, Any]) -> None:
    if "status" in fields and fields["status"] not in STATUSES:
        raise _Invalid(f"Status: {fields['status']!r} is not one of {', '.join(STATUSES)}")
    if "priority" in fields and fields["priority"] not in PRIORITIES:
        raise _Invalid(f"Priority: {fields['priority']!r} is not a valid priority")
    if "type" in fields and fields["type"] not in TYPES:
        raise _Invalid(f"Type: {fields['type']!r} is not a valid ticket type")


def _record_invalid(message: str) -> dict[str, Any]:
    return {
        "error": "RecordInvalid",
        "description": "Record validation errors",
        "details": {"base": [{"description": message, "error": "InvalidValue"}]},
    }


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _id_string(value: Any) -> str | None:
    return None if value is None else str(value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client (or stop()) closing a kept-alive connection is routine, not worth a traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


@dataclass
class ZendeskSimulator:
    """The simulated Zendesk account: ``tickets`` are its tickets at start-up.

    Changes are copy-on-write (an updated ticket replaces the dict in the simulator's own list), so
    the caller's ticket dicts are never modified. ``created`` holds the tickets created through
    the API, ``updates`` every applied PUT as ``(ticket_id, the request's ticket fields)``,
    ``comments`` the comments by ticket id. ``on_change`` is called with the full ticket list after
    every create and every update that changed something (e.g. to persist the export file).

    Webhooks: with ``webhook_url`` (and ``webhook_secret``) set, each change is POSTed as a Zendesk
    event-subscription payload (see ``_webhook_payload``) signed with ``webhooks.sign``, from one
    background thread in the order the changes happened. A failed attempt (connection error,
    timeout, 409, 429, 5xx) is retried with the same event id up to ``webhook_max_attempts`` times,
    ``webhook_backoff_seconds * 2**n`` apart (a Retry-After of at most 60 s on 429/503 is waited
    instead); any other 4xx is final. ``webhook_deliveries`` records each event's outcome.
    """

    tickets: list[dict[str, Any]]
    oauth_token: str | None = None
    email: str | None = None
    api_token: str | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    host: str = "127.0.0.1"
    port: int = 0
    on_change: Callable[[list[dict[str, Any]]], None] | None = None  # e.g. persist the export
    # Like Zendesk: changes of the last minute are not exported yet (tests set 0 to see them at once).
    export_delay_seconds: float = 60.0
    api_user_id: int = 10_000_000_001  # the agent the credentials belong to: author of API changes
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_max_attempts: int = 5
    webhook_backoff_seconds: float = 0.2
    webhook_timeout_seconds: float = 12.0  # Zendesk gives a webhook endpoint 12 s to answer
    webhook_id: str = field(default_factory=lambda: "01" + secrets.token_hex(12).upper())

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._persist_lock = threading.Lock()  # one on_change at a time, always the newest state
        self._rng = random.Random(self.faults.seed)
        self.tickets = list(self.tickets)
        self.created: list[dict[str, Any]] = []
        self.updates: list[tuple[int, dict[str, Any]]] = []
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.requests = 0
        self.connections = 0  # TCP connections accepted: keep-alive keeps this low
        self.served: Counter[str] = Counter()  # faults injected, by kind
        self.webhook_deliveries: list[dict[str, Any]] = []
        self._where: dict[int, tuple[list[dict[str, Any]], int]] = {
            t["id"]: (self.tickets, i) for i, t in enumerate(self.tickets)
        }
        self._ids = itertools.count(int(time.time()) * 1000)  # comment, audit and audit-event ids
        self._server: _Server | None = None
        self._sockets: set[socket.socket] = set()
        self._webhook_queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._webhook_idle = threading.Condition()
        self._webhook_pending = 0
        self._webhook_stop = threading.Event()
        self._webhook_thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "simulator not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> ZendeskSimulator:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("webhook_url needs webhook_secret: Zendesk signs every webhook request")
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length

            def setup(self) -> None:
                super().setup()
                with simulator._lock:
                    simulator.connections += 1
                    simulator._sockets.add(self.connection)

            def finish(self) -> None:
                with simulator._lock:
                    simulator._sockets.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:
                simulator._handle(self, "GET")

            def do_POST(self) -> None:
                simulator._handle(self, "POST")

            def do_PUT(self) -> None:
                simulator._handle(self, "PUT")

            def do_DELETE(self) -> None:
                simulator._handle(self, "DELETE")

            def do_PATCH(self) -> None:
                simulator._handle(self, "PATCH")

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        self._server = _Server((self.host, self.port), Handler)
        # A short poll interval makes stop() quick (shutdown waits for the loop's next poll).
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        if self.webhook_url:
            self._webhook_stop.clear()
            self._webhook_thread = threading.Thread(
                target=self._webhook_worker, name="zendesk-simulator-webhooks", daemon=True
            )
            self._webhook_thread.start()
        return self

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop serving (closing kept-alive connections too), then give queued webhooks up to
        ``drain_timeout`` seconds to be delivered; whatever is left is recorded as abandoned."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._lock:
                open_sockets = list(self._sockets)
            for sock in open_sockets:  # idle keep-alive connections would otherwise still be served
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._server = None
        if self._webhook_thread is not None:
            self.wait_for_webhooks(drain_timeout)
            self._webhook_stop.set()  # interrupts a backoff wait; the worker abandons the rest
            self._webhook_queue.put(None)
            self._webhook_thread.join(timeout=self.webhook_timeout_seconds + 1)
            self._webhook_thread = None

    @contextmanager
    def running(self) -> Iterator[ZendeskSimulator]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until every queued webhook has a final outcome; False if ``timeout`` ran out first."""
        with self._webhook_idle:
            return self._webhook_idle.wait_for(lambda: self._webhook_pending == 0, timeout)

    # -- request handling --------------------------------------------------------------------------------
    def _draw(self, probability: float, kind: str) -> bool:
        with self._lock:
            hit = probability > 0 and self._rng.random() < probability
            if hit:
                self.served[kind] += 1
            return hit

    def _authorized(self, header: str | None) -> bool:
        if header is None:
            return False
        if self.oauth_token and header == f"Bearer {self.oauth_token}":
            return True
        return bool(self.email and self.api_token and header == basic_auth_header(self.email, self.api_token))

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.requests += 1
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            request.close_connection = True  # the unread chunked body would corrupt the connection
            return self._send(request, 411, {"error": "LengthRequired"})
        # Read the body before any answer, even a refusal: on a kept-alive connection an unread
        # body would be taken for the next request.
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        parsed = urlparse(request.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        if not self._authorized(request.headers.get("Authorization")):
            return self._send(request, 401, {"error": "Couldn't authenticate you"})
        if self._draw(self.faults.rate_limit, "rate_limit"):
            return self._send(
                request,
                429,
                {"error": "TooManyRequests"},
                headers={"Retry-After": str(self.faults.retry_after_seconds)},
            )
        if self._draw(self.faults.server_error, "server_error"):
            return self._send(request, self._rng.choice([500, 503]), {"error": "InternalError"})
        if method == "GET" and self._draw(self.faults.slow, "slow"):
            time.sleep(self.faults.slow_seconds)
        ticket_route = _TICKET_ROUTE.match(parsed.path)
        comments_route = _COMMENTS_ROUTE.match(parsed.path)
        try:
            if method == "GET" and parsed.path == EXPORT_PATH:
                status, body = self._export(query)
            elif method == "GET" and parsed.path == TICKETS_PATH:
                status, body = self._list(query)
            elif method == "POST" and parsed.path == TICKETS_PATH:
                status, body = self._create(json.loads(raw or b"{}"))
            elif method == "GET" and ticket_route:
                status, body = self._show(int(ticket_route["id"]))
            elif method == "PUT" and ticket_route:
                status, body = self._update(int(ticket_route["id"]), json.loads(raw or b"{}"))
            elif method == "GET" and comments_route:
                status, body = self._comments(int(comments_route["id"]))
            else:
                status, body = 404, {"error": "InvalidEndpoint", "description": "Not found"}
        except _Invalid as exc:
            status, body = 422, _record_invalid(str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            status, body = 400, {"error": "InvalidValue", "description": str(exc)}
        truncate = method == "GET" and status == 200 and self._draw(self.faults.malformed, "malformed")
        self._send(request, status, body, truncate=truncate)

    def _send(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        truncate: bool = False,
    ) -> None:
        payload = json.dumps(body).encode()
        if truncate:
            # Content-Length announces the truncated length: the framing stays valid (the
            # connection survives), only the JSON is broken.
            payload = payload[: max(1, len(payload) // 2)]
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(payload)

    # -- reading -----------------------------------------------------------------------------------------
    def _all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.tickets) + list(self.created)

    def _find(self, ticket_id: int) -> dict[str, Any] | None:
        """The ticket's current version; the caller holds the lock."""
        where = self._where.get(ticket_id)
        return None if where is None else where[0][where[1]]

    def _sorted_since(self, start_time: int) -> list[dict[str, Any]]:
        horizon = time.time() - self.export_delay_seconds
        chosen = [t for t in self._all() if start_time <= _epoch(t) <= horizon]
        return sorted(chosen, key=lambda t: (_epoch(t), t["id"]))

    def _export(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if "cursor" in query:
            start_raw, offset_raw = _decode(query["cursor"])
            start_time, offset = int(start_raw), int(offset_raw)
        else:
            start_time, offset = int(query["start_time"]), 0
            if start_time > time.time() - 60:
                return 400, {
                    "error": "InvalidValue",
                    "description": "start_time must be more than a minute in the past",
                }
        per_page = min(int(query.get("per_page", MAX_PAGE_SIZE)), MAX_PAGE_SIZE)
        items = self._sorted_since(start_time)
        if self._draw(self.faults.empty_page, "empty_page") and offset < len(items):
            page, next_offset = [], offset  # an empty page that is not the end
        else:
            page, next_offset = items[offset : offset + per_page], min(offset + per_page, len(items))
            if offset and self._draw(self.faults.duplicates, "duplicates"):
                page = items[max(0, offset - 3) : offset] + page  # repeat the previous page's tail
        cursor = _encode(start_time, next_offset)
        end = next_offset >= len(items)
        return 200, {
            "tickets": page,
            "after_cursor": None if end else cursor,
            "after_url": None
            if end
            else f"{self.url}{EXPORT_PATH}?{urlencode({'cursor': cursor, 'per_page': per_page})}",
            "before_cursor": None,
            "before_url": None,
            "end_of_stream": end,
        }

    def _list(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        size = min(int(query.get("page[size]", 100)), 100)
        after = int(_decode(query["page[after]"])[0]) if "page[after]" in query else 0
        tickets = sorted(self._all(), key=lambda t: t["id"])
        page = [t for t in tickets if t["id"] > after][:size]
        has_more = bool(page) and page[-1]["id"] < tickets[-1]["id"]
        after_cursor = _encode(page[-1]["id"]) if page else None
        return 200, {
            "tickets": page,
            "meta": {
                "has_more": has_more,
                "after_cursor": after_cursor,
                "before_cursor": _encode(page[0]["id"]) if page else None,
            },
            "links": {
                "next": f"{self.url}{TICKETS_PATH}?{urlencode({'page[size]': size, 'page[after]': after_cursor})}"
                if has_more
                else None,
                "prev": None,
            },
        }

    def _show(self, ticket_id: int) -> tuple[int, dict[str, Any]]:
        with self._lock:
            ticket = self._find(ticket_id)
        return (200, {"ticket": ticket}) if ticket is not None else (404, NOT_FOUND)

    def _comments(self, ticket_id: int) -> tuple[int, dict[str, Any]]:
        with self._lock:
            ticket = self._find(ticket_id)
            if ticket is None:
                return 404, NOT_FOUND
            comments = list(self._comments_of(ticket))
        return 200, {"comments": comments, "next_page": None, "previous_page": None, "count": len(comments)}

    def _comments_of(self, ticket: dict[str, Any]) -> list[dict[str, Any]]:
        """The ticket's comments, the description being the first; for a ticket the simulator was
        started with, that first comment is made up from the ticket (the export has no comments)."""
        if ticket["id"] not in self.comments:
            self.comments[ticket["id"]] = [
                self._comment(
                    ticket.get("description") or "",
                    public=True,
                    author_id=ticket.get("submitter_id") or ticket.get("requester_id"),
                    created_at=ticket["created_at"],
                    audit_id=None,
                )
            ]
        return self.comments[ticket["id"]]

    def _comment(
        self, body: str, public: bool, author_id: Any, created_at: str, audit_id: int | None
    ) -> dict[str, Any]:
        return {
            "id": next(self._ids),
            "type": "Comment",
            "author_id": author_id,
            "body": body,
            "html_body": f'<div class="zd-comment"><p>{body}</p></div>',
            "plain_body": body,
            "public": public,
            "attachments": [],
            "audit_id": audit_id,
            "via": {"channel": "api"},
            "metadata": {"system": {}, "custom": {}},
            "created_at": created_at,
        }

    # -- writing -----------------------------------------------------------------------------------------
    def _audit(self, ticket_id: int, created_at: str) -> dict[str, Any]:
        return {
            "id": next(self._ids),
            "ticket_id": ticket_id,
            "created_at": created_at,
            "author_id": self.api_user_id,
            "metadata": {"system": {}, "custom": {}},
            "via": {"channel": "api"},
            "events": [],
        }

    def _audit_event(self, kind: str, name: str, value: Any, previous: Any = None) -> dict[str, Any]:
        event = {"id": next(self._ids), "type": kind, "field_name": name, "value": value}
        if kind == "Change":
            event["previous_value"] = previous
        return event

    def _comment_event(self, comment: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in comment.items() if k not in ("created_at", "metadata", "via")}

    def _create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Create a ticket like Zendesk's ``POST /api/v2/tickets.json``.

        ``description`` is read-only on a Zendesk ticket: it is the body of the first comment. The
        first comment comes from ``comment`` (``body``, else ``html_body``; ``public`` defaults to
        true, ``author_id`` to the submitter); without a comment body a ``description`` given in the
        request is taken as the first comment's body instead, and with neither the request is refused
        (422, "Description: cannot be blank"). ``requester_id`` defaults to the authenticated agent
        (``api_user_id``), who is also the submitter. ``subject``, ``status`` (default "new"),
        ``priority``, ``type``, ``tags``, ``custom_fields`` ``[{"id", "value"}]``, ``external_id``,
        ``assignee_id`` and ``group_id`` are taken as given. Answers 201 with the ticket and its
        audit (a Comment event and one Create event per property set).
        """
        fields = body["ticket"]
        if not isinstance(fields, dict):
            raise TypeError('the body must be {"ticket": {...}}')
        _validate(fields)
        comment_in = fields.get("comment") or {}
        text = comment_in.get("body") or comment_in.get("html_body") or fields.get("description")
        if not text:
            raise _Invalid("Description: cannot be blank")
        custom_fields = [
            {"id": i, "value": v} for i, v in _custom_field_values(fields.get("custom_fields", []))
        ]
        now = _now()
        with self._lock:
            ticket_id = max(self._where, default=0) + 1
            submitter_id = fields.get("submitter_id") or self.api_user_id
            audit = self._audit(ticket_id, now)
            first = self._comment(
                str(text),
                public=bool(comment_in.get("public", True)),
                author_id=comment_in.get("author_id") or submitter_id,
                created_at=now,
                audit_id=audit["id"],
            )
            ticket = {
                "id": ticket_id,
                "url": f"{self.url}{TICKET_PATH.format(ticket_id=ticket_id)}",
                "external_id": fields.get("external_id"),
                "subject": fields.get("subject"),
                "description": first["body"],
                "status": fields.get("status") or "new",
                "priority": fields.get("priority"),
                "type": fields.get("type"),
                "requester_id": fields.get("requester_id") or self.api_user_id,
                "submitter_id": submitter_id,
                "assignee_id": fields.get("assignee_id"),
                "organization_id": None,
                "group_id": fields.get("group_id"),
                "tags": _tags(fields.get("tags", [])),
                "via": {"channel": "api"},
                "custom_fields": custom_fields,
                "satisfaction_rating": None,
                "is_public": first["public"],
                "created_at": now,
                "updated_at": now,
            }
            audit["events"].append(self._comment_event(first))
            for name in ("subject", "status", "priority", "type", "requester_id", "tags", "external_id"):
                if ticket[name] not in (None, []):
                    audit["events"].append(self._audit_event("Create", name, ticket[name]))
            for item in custom_fields:
                audit["events"].append(self._audit_event("Create", str(item["id"]), item["value"]))
            self.created.append(ticket)
            self._where[ticket_id] = (self.created, len(self.created) - 1)
            self.comments[ticket_id] = [first]
            self._emit(ticket, [(webhooks.TICKET_CREATED, {})])
        self._persist()
        return 201, {"ticket": ticket, "audit": audit}

    def _update(self, ticket_id: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Update a ticket like Zendesk's ``PUT /api/v2/tickets/{id}.json`` with ``{"ticket": {...}}``.

        ``tags`` replaces the tags, then ``additional_tags`` adds and ``remove_tags`` removes some;
        ``custom_fields`` ``[{"id", "value"}]`` is merged by id; ``comment`` ``{"body", "public",
        "author_id"}`` adds a comment (``public`` defaults to the first comment's, as on Zendesk);
        the scalar properties in ``_SCALARS`` are set. A closed ticket cannot be updated (422).
        A change bumps ``updated_at`` (and ``generated_timestamp`` when the ticket has one, so the
        incremental export returns it again) and answers with the ticket and an audit of Change and
        Comment events. An update that changes nothing is recorded in ``updates`` but creates no
        audit, no webhook and no ``on_change`` call: the answer is the unchanged ticket without an
        ``audit`` key.
        """
        fields = body["ticket"]
        if not isinstance(fields, dict):
            raise TypeError('the body must be {"ticket": {...}}')
        _validate(fields)
        new_values = _custom_field_values(fields["custom_fields"]) if "custom_fields" in fields else []
        comment_in = fields.get("comment")
        if comment_in is not None and not (
            isinstance(comment_in, dict) and (comment_in.get("body") or comment_in.get("html_body"))
        ):
            raise _Invalid("Comment: body cannot be blank")
        now = _now()
        with self._lock:
            old = self._find(ticket_id)
            if old is None:
                return 404, NOT_FOUND
            if old["status"] == "closed":
                raise _Invalid("Status: closed prevents ticket update")
            self.updates.append((ticket_id, copy.deepcopy(fields)))
            ticket = copy.deepcopy(old)
            audit = self._audit(ticket_id, now)
            emitted: list[tuple[str, dict[str, Any]]] = []
            if comment_in is not None:
                first = self._comments_of(old)[0]
                comment = self._comment(
                    str(comment_in.get("body") or comment_in.get("html_body")),
                    public=bool(comment_in.get("public", first["public"])),
                    author_id=comment_in.get("author_id") or self.api_user_id,
                    created_at=now,
                    audit_id=audit["id"],
                )
                ticket["is_public"] = bool(old.get("is_public", True)) or comment["public"]
                audit["events"].append(self._comment_event(comment))
                emitted.append(
                    (
                        webhooks.TICKET_COMMENT_ADDED,
                        {
                            "comment": {
                                "id": str(comment["id"]),
                                "body": comment["body"],
                                "is_public": comment["public"],
                                "author": {
                                    "id": str(comment["author_id"]),
                                    "is_staff": comment["author_id"] == self.api_user_id,
                                },
                            }
                        },
                    )
                )
            for name in _SCALARS:
                if name in fields and fields[name] != old.get(name):
                    ticket[name] = fields[name]
                    audit["events"].append(self._audit_event("Change", name, fields[name], old.get(name)))
            old_tags = list(old.get("tags") or [])
            tags = _tags(fields["tags"]) if "tags" in fields else list(old_tags)
            tags += [t for t in _tags(fields.get("additional_tags", [])) if t not in tags]
            removed = set(_tags(fields.get("remove_tags", [])))
            tags = [t for t in tags if t not in removed]
            if set(tags) != set(old_tags):  # tags are a set: a new order alone is no change
                ticket["tags"] = tags
                audit["events"].append(self._audit_event("Change", "tags", tags, old_tags))
                emitted.append(
                    (
                        webhooks.TICKET_TAGS_CHANGED,
                        {
                            "tags_added": [t for t in tags if t not in old_tags],
                            "tags_removed": [t for t in old_tags if t not in tags],
                        },
                    )
                )
            custom = ticket.setdefault("custom_fields", [])
            for field_id, value in new_values:
                current = next((f for f in custom if f.get("id") == field_id), None)
                previous = None if current is None else current.get("value")
                if previous == value:  # includes clearing a field that was never set
                    continue
                if current is None:
                    custom.append({"id": field_id, "value": value})
                else:
                    current["value"] = value
                audit["events"].append(self._audit_event("Change", str(field_id), value, previous))
                emitted.append(
                    (
                        webhooks.TICKET_CUSTOM_FIELD_CHANGED,
                        {"current": value, "previous": previous, "custom_field": {"id": field_id}},
                    )
                )
            if ticket["status"] != old["status"]:
                emitted.append(
                    (
                        webhooks.TICKET_STATUS_CHANGED,
                        {"current": _upper(ticket["status"]), "previous": _upper(old["status"])},
                    )
                )
            if not audit["events"]:
                return 200, {"ticket": old}
            ticket["updated_at"] = now
            if "generated_timestamp" in ticket:
                ticket["generated_timestamp"] = int(time.time())
            container, index = self._where[ticket_id]
            container[index] = ticket
            if comment_in is not None:
                self.comments[ticket_id].append(comment)
            self._emit(ticket, emitted)
        self._persist()
        return 200, {"ticket": ticket, "audit": audit}

    def _persist(self) -> None:
        if self.on_change is None:
            return
        with self._persist_lock:  # the snapshot is taken inside, so the last write is the newest state
            self.on_change(self._all())

    # -- webhooks ----------------------------------------------------------------------------------------
    def _detail(self, ticket: dict[str, Any]) -> dict[str, Any]:
        """Zendesk's ``detail`` object of ticket events: ids as strings, status, priority and type in
        upper case (as Zendesk sends them). ``custom_fields`` is this simulator's addition."""
        return {
            "actor_id": str(self.api_user_id),
            "assignee_id": _id_string(ticket.get("assignee_id")),
            "created_at": ticket.get("created_at"),
            "custom_fields": copy.deepcopy(ticket.get("custom_fields") or []),
            "description": ticket.get("description"),
            "external_id": _id_string(ticket.get("external_id")),
            "group_id": _id_string(ticket.get("group_id")),
            "id": str(ticket["id"]),
            "is_public": bool(ticket.get("is_public", True)),
            "organization_id": _id_string(ticket.get("organization_id")),
            "priority": _upper(ticket.get("priority")),
            "requester_id": _id_string(ticket.get("requester_id")),
            "status": _upper(ticket.get("status")),
            "subject": ticket.get("subject"),
            "submitter_id": _id_string(ticket.get("submitter_id")),
            "tags": list(ticket.get("tags") or []),
            "type": _upper(ticket.get("type")),
            "updated_at": ticket.get("updated_at"),
            "via": {"channel": (ticket.get("via") or {}).get("channel")},
        }

    def _webhook_payload(self, ticket: dict[str, Any], kind: str, event: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": kind,
            "account_id": WEBHOOK_ACCOUNT_ID,
            "id": str(uuid.uuid4()),
            "time": _event_time(),
            "zendesk_event_version": ZENDESK_EVENT_VERSION,
            "subject": f"zen:ticket:{ticket['id']}",
            "detail": self._detail(ticket),
            "event": event,
        }

    def _emit(self, ticket: dict[str, Any], events: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue the webhooks of one change; the caller holds the lock, so queue order is change order."""
        if not self.webhook_url:
            return
        for kind, event in events:
            payload = self._webhook_payload(ticket, kind, event)
            with self._webhook_idle:
                self._webhook_pending += 1
            self._webhook_queue.put(
                {
                    "event_id": payload["id"],
                    "type": kind,
                    "ticket_id": ticket["id"],
                    "body": json.dumps(payload, separators=(",", ":")).encode(),
                }
            )

    def _webhook_worker(self) -> None:
        with httpx.Client(timeout=self.webhook_timeout_seconds, follow_redirects=False) as client:
            while True:
                item = self._webhook_queue.get()
                if item is None:
                    break
                if self._webhook_stop.is_set():
                    outcome = {"attempts": 0, "status": None, "delivered": False, "error": "abandoned"}
                else:
                    outcome = self._deliver(client, item["body"])
                with self._lock:
                    self.webhook_deliveries.append(
                        {"event_id": item["event_id"], "type": item["type"], "ticket_id": item["ticket_id"]}
                        | outcome
                    )
                with self._webhook_idle:
                    self._webhook_pending -= 1
                    self._webhook_idle.notify_all()

    def _deliver(self, client: httpx.Client, body: bytes) -> dict[str, Any]:
        assert self.webhook_url and self.webhook_secret
        attempts, status, error = 0, None, None
        while True:
            attempts += 1
            timestamp = webhooks.timestamp_now()  # signed afresh for each attempt, like Zendesk
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Zendesk Webhook",
                webhooks.WEBHOOK_ID_HEADER: self.webhook_id,
                webhooks.SIGNATURE_HEADER: webhooks.sign(self.webhook_secret, timestamp, body),
                webhooks.TIMESTAMP_HEADER: timestamp,
            }
            retry_after = None
            try:
                response = client.post(self.webhook_url, content=body, headers=headers)
            except httpx.TimeoutException:
                status, error = None, "timed out"
            except httpx.TransportError as exc:
                status, error = None, f"connection failed ({type(exc).__name__})"
            else:
                status, error = response.status_code, None
                if 200 <= status < 300:
                    return {"attempts": attempts, "status": status, "delivered": True, "error": None}
                if not (status in (409, 429) or status >= 500):
                    return {"attempts": attempts, "status": status, "delivered": False, "error": "refused"}
                if status in (429, 503):
                    retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempts >= self.webhook_max_attempts:
                return {
                    "attempts": attempts,
                    "status": status,
                    "delivered": False,
                    "error": error or "gave up",
                }
            delay = self.webhook_backoff_seconds * 2 ** (attempts - 1)
            if retry_after is not None and retry_after <= MAX_WEBHOOK_RETRY_AFTER_SECONDS:
                delay = retry_after
            if self._webhook_stop.wait(delay):
                return {"attempts": attempts, "status": status, "delivered": False, "error": "abandoned"}


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
