"""A local simulator of the Zendesk Support API, serving tickets over real HTTP on loopback.

Endpoints: the cursor-based incremental ticket export, the cursor-paginated ticket list and ticket
creation. Auth is checked like Zendesk does (OAuth bearer token or Basic `{email}/token:{token}`).
Faults can be injected by configuration: 429 with Retry-After, 500/503, slow responses, truncated
JSON, empty pages before the end and tickets repeated across pages.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from churn_platform.crm.zendesk_api import (
    EXPORT_PATH,
    MAX_PAGE_SIZE,
    TICKETS_PATH,
    basic_auth_header,
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


def _epoch(ticket: dict[str, Any]) -> int:
    stamp = ticket.get("generated_timestamp")
    if isinstance(stamp, int):
        return stamp
    return int(dt.datetime.fromisoformat(str(ticket["updated_at"]).replace("Z", "+00:00")).timestamp())


def _encode(*parts: object) -> str:
    return base64.urlsafe_b64encode("|".join(map(str, parts)).encode()).decode()


def _decode(cursor: str) -> list[str]:
    return base64.urlsafe_b64decode(cursor.encode()).decode().split("|")


@dataclass
class ZendeskSimulator:
    tickets: list[dict[str, Any]]
    oauth_token: str | None = None
    email: str | None = None
    api_token: str | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    host: str = "127.0.0.1"
    port: int = 0
    on_create: Callable[[list[dict[str, Any]]], None] | None = None  # e.g. persist the export

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self.created: list[dict[str, Any]] = []
        self.requests = 0
        self.served: Counter[str] = Counter()  # faults injected, by kind
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "simulator not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> ZendeskSimulator:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                simulator._handle(self, "GET")

            def do_POST(self) -> None:
                simulator._handle(self, "POST")

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def running(self) -> Iterator[ZendeskSimulator]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

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
        try:
            if method == "GET" and parsed.path == EXPORT_PATH:
                status, body = self._export(query)
            elif method == "GET" and parsed.path == TICKETS_PATH:
                status, body = self._list(query)
            elif method == "POST" and parsed.path == TICKETS_PATH:
                length = int(request.headers.get("Content-Length", "0"))
                status, body = self._create(json.loads(request.rfile.read(length) or b"{}"))
            else:
                status, body = 404, {"error": "InvalidEndpoint"}
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
            payload = payload[: max(1, len(payload) // 2)]
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(payload)

    # -- endpoints ---------------------------------------------------------------------------------------
    def _sorted_since(self, start_time: int) -> list[dict[str, Any]]:
        horizon = time.time() - 60  # like Zendesk: changes of the last minute are not exported yet
        with self._lock:
            tickets = list(self.tickets) + list(self.created)
        chosen = [t for t in tickets if start_time <= _epoch(t) <= horizon]
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
        with self._lock:
            tickets = sorted(list(self.tickets) + list(self.created), key=lambda t: t["id"])
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

    def _create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        fields = body["ticket"]
        subject = fields["subject"]
        comment = (fields.get("comment") or {}).get("body", "")
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            ticket_id = max([t["id"] for t in self.tickets + self.created], default=0) + 1
            ticket = {
                "id": ticket_id,
                "url": f"{self.url}/api/v2/tickets/{ticket_id}.json",
                "subject": subject,
                "description": comment,
                "status": "new",
                "priority": fields.get("priority"),
                "type": fields.get("type"),
                "requester_id": fields.get("requester_id"),
                "tags": fields.get("tags", []),
                "via": {"channel": "api"},
                "custom_fields": [],
                "satisfaction_rating": None,
                "created_at": now,
                "updated_at": now,
            }
            self.created.append(ticket)
            snapshot = list(self.tickets) + list(self.created)
        if self.on_create is not None:
            self.on_create(snapshot)
        return 201, {"ticket": ticket}
