"""A client for the Zendesk Support API: cursor-based incremental ticket export and ticket creation.

Retries (tenacity): 429 waits for Retry-After; 5xx, connection errors, timeouts and malformed
pages back off exponentially with jitter; anything else fails at once. Credentials travel only
in the Authorization header and never appear in messages.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

EXPORT_PATH = "/api/v2/incremental/tickets/cursor.json"
TICKETS_PATH = "/api/v2/tickets.json"
MAX_PAGE_SIZE = 1000  # Zendesk's limit for incremental exports


class CRMAPIError(RuntimeError):
    """The CRM API failed in a way retries did not fix; the message names the URL and the problem."""


class CRMRequestRefused(CRMAPIError):
    """The CRM refused the request itself (credentials, permissions, a bad request): retrying the
    same request cannot succeed, so callers fail without retrying."""


class _Transient(Exception):
    def __init__(self, url: str, problem: str, retry_after: float | None = None):
        super().__init__(f"{url}: {problem}")
        self.url, self.problem, self.retry_after = url, problem, retry_after


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 8
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0


def basic_auth_header(email: str, api_token: str) -> str:
    raw = f"{email}/token:{api_token}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class ZendeskAPI:
    def __init__(
        self,
        base_url: str,
        authorization: str,
        timeout_seconds: float = 30.0,
        retry: RetrySettings = RetrySettings(),
        page_size: int = MAX_PAGE_SIZE,
    ):
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self.page_size = min(page_size, MAX_PAGE_SIZE)
        self._client = httpx.Client(
            headers={"Authorization": authorization, "Accept": "application/json"},
            timeout=timeout_seconds,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ZendeskAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests with retries --------------------------------------------------------------------
    def _wait(self, state) -> float:
        exc = state.outcome.exception()
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry.max_retry_after_seconds)
        return wait_random_exponential(
            multiplier=self.retry.backoff_base_seconds, max=self.retry.backoff_max_seconds
        )(state)

    def _request(self, method: str, url: str, validate=None, **kwargs: Any) -> Any:
        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=self._wait,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    body = self._once(method, url, **kwargs)
                    return validate(url, body) if validate else body
        except _Transient as exc:
            raise CRMAPIError(
                f"{exc.url}: {exc.problem} (gave up after {self.retry.max_attempts} attempts)"
            ) from None
        raise AssertionError("unreachable")

    def _once(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise _Transient(url, "timed out") from None
        except httpx.TransportError as exc:
            raise _Transient(url, f"connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429:
            raise _Transient(url, "rate limited (429)", retry_after=_retry_after(response))
        if status >= 500:
            raise _Transient(url, f"server error {status}")
        if status in (401, 403):
            raise CRMRequestRefused(
                f"{url}: authentication failed ({status}); check CHURN_CRM_EMAIL and ZENDESK_API_TOKEN "
                "or ZENDESK_OAUTH_TOKEN"
            )
        if status >= 400:
            raise CRMRequestRefused(f"{url}: request refused ({status}): {response.text[:300]}")
        try:
            body = response.json()
        except ValueError:
            raise _Transient(url, f"response is not valid JSON ({len(response.content)} bytes)") from None
        if not isinstance(body, dict):
            raise _Transient(url, "response is not a JSON object")
        return body

    # -- endpoints ----------------------------------------------------------------------------------
    def export_tickets(self, start: dt.datetime, max_pages: int = 100_000) -> list[dict[str, Any]]:
        """Every ticket (current state) whose generated_timestamp is at or after ``start``, following
        the cursor until end_of_stream; duplicates across pages are collapsed to the latest version."""
        start_time = int(start.timestamp())
        if start_time > time.time() - 60:
            raise ValueError("the export's start_time must be at least one minute in the past")
        url: str = f"{self.base_url}{EXPORT_PATH}"
        params: dict[str, Any] | None = {"start_time": start_time, "per_page": self.page_size}
        latest: dict[int, dict[str, Any]] = {}
        for _ in range(max_pages):
            tickets, end_of_stream, after_url = self._request(
                "GET", url, validate=_validate_export_page, params=params
            )
            for ticket in tickets:
                key = ticket["id"]
                if key not in latest or str(ticket.get("updated_at")) >= str(latest[key].get("updated_at")):
                    latest[key] = ticket
            if end_of_stream:
                return list(latest.values())
            url, params = after_url, None  # after_url carries the cursor
        raise CRMAPIError(f"{url}: export did not reach end_of_stream within {max_pages} pages")

    def create_ticket(
        self, subject: str, body: str, tags: list[str] | None = None, priority: str = "high"
    ) -> int:
        url = f"{self.base_url}{TICKETS_PATH}"
        payload = {
            "ticket": {
                "subject": subject,
                "comment": {"body": body},
                "tags": tags or [],
                "priority": priority,
            }
        }
        response = self._request("POST", url, json=payload)
        try:
            return int(response["ticket"]["id"])
        except (KeyError, TypeError, ValueError):
            raise CRMAPIError(f"{url}: ticket creation returned no ticket id") from None


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _validate_export_page(url: str, page: dict[str, Any]) -> tuple[list[dict[str, Any]], bool, str]:
    tickets = page.get("tickets")
    end_of_stream = page.get("end_of_stream")
    if not isinstance(tickets, list) or not isinstance(end_of_stream, bool):
        raise _Transient(url, "export page lacks a 'tickets' list or an 'end_of_stream' flag")
    if any(not isinstance(t, dict) or "id" not in t for t in tickets):
        raise _Transient(url, "export page holds a ticket without an id")
    after_url = page.get("after_url")
    if not end_of_stream and not isinstance(after_url, str):
        raise _Transient(url, "export page has end_of_stream=false but no after_url")
    return tickets, end_of_stream, after_url or ""
