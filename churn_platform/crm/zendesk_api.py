"""A client for the Zendesk Support API: cursor-based incremental ticket export, ticket creation,
reading one ticket and updating it.

Retries (tenacity): 429 waits for Retry-After; 5xx, connection errors, timeouts and malformed
pages back off exponentially with jitter; anything else fails at once (``CRMRequestRefused``:
4xx, redirects, which are never followed, and links to another host). Credentials travel only
in the Authorization header, only to the configured base URL's scheme, host and port, and never
appear in messages.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from churn_platform.crm.tickets import ticket_key, try_parse_ticket_time

EXPORT_PATH = "/api/v2/incremental/tickets/cursor.json"
TICKETS_PATH = "/api/v2/tickets.json"
TICKET_PATH = "/api/v2/tickets/{ticket_id}.json"  # GET (show) and PUT (update) one ticket
TICKET_COMMENTS_PATH = "/api/v2/tickets/{ticket_id}/comments.json"
MAX_PAGE_SIZE = 1000  # Zendesk's limit for incremental exports


class CRMAPIError(RuntimeError):
    """The CRM API failed in a way retries did not fix; the message names the URL and the problem."""


class CRMRequestRefused(CRMAPIError):
    """The CRM refused the request itself (credentials, permissions, a bad request): retrying the
    same request cannot succeed, so callers fail without retrying."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status that refused it, when there was one


class CRMForeignLink(CRMRequestRefused):
    """A URL the client was asked to follow (an export page's ``after_url``, a redirect) leads away
    from the configured CRM's scheme, host and port: it is not requested, so the credentials never
    leave for another host. The message names the foreign origin (without any user info)."""


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
        self._check_origin(url, "request URL")
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
        if 300 <= status < 400:
            location = response.headers.get("Location")
            target = _origin_text(self._resolve(url, location)) if location else "no Location"
            raise CRMRequestRefused(
                f"{url}: answered {status} redirecting to {target}; redirects are not followed"
            )
        if status in (401, 403):
            raise CRMRequestRefused(
                f"{url}: authentication failed ({status}); check CHURN_CRM_EMAIL and ZENDESK_API_TOKEN "
                "or ZENDESK_OAUTH_TOKEN",
                status=status,
            )
        if status >= 400:
            raise CRMRequestRefused(
                f"{url}: request refused ({status}): {response.text[:300]}", status=status
            )
        try:
            body = response.json()
        except ValueError:
            raise _Transient(url, f"response is not valid JSON ({len(response.content)} bytes)") from None
        if not isinstance(body, dict):
            raise _Transient(url, "response is not a JSON object")
        return body

    # -- endpoints ----------------------------------------------------------------------------------
    def _resolve(self, current: str, link: str) -> str:
        try:
            return str(httpx.URL(current).join(link))
        except (httpx.InvalidURL, TypeError, ValueError):
            raise CRMRequestRefused(f"{_strip_query(current)}: the page links to an invalid URL") from None

    def _check_origin(self, url: str, what: str) -> None:
        """Refuse (CRMForeignLink) a URL off the configured scheme, host and port."""
        try:
            foreign = _origin(httpx.URL(url)) != _origin(httpx.URL(self.base_url))
        except (httpx.InvalidURL, TypeError, ValueError):
            raise CRMForeignLink(f"{what} is not a valid URL; not requested") from None
        if foreign:
            raise CRMForeignLink(
                f"{what} leads to {_origin_text(url)}, not to the configured CRM "
                f"{_origin_text(self.base_url)}; not requested (credentials go to the configured host only)"
            )

    def export_tickets(self, start: dt.datetime, max_pages: int = 100_000) -> list[dict[str, Any]]:
        """Every ticket (current state) whose generated_timestamp is at or after ``start``, following
        the cursor until end_of_stream. Versions of one ticket (across pages) collapse to the newest
        by parsed ``updated_at`` (``tickets.parse_ticket_time``); a tie, or a version whose time
        does not parse, keeps the later-exported one (the export is ordered by change time), so a
        malformed version is quarantined downstream rather than dropped here. Tickets without a
        usable id are passed on as they are, for the same reason. ``after_url`` must stay on the
        configured scheme, host and port (else CRMForeignLink)."""
        start_time = int(start.timestamp())
        if start_time > time.time() - 60:
            raise ValueError("the export's start_time must be at least one minute in the past")
        url: str = f"{self.base_url}{EXPORT_PATH}"
        params: dict[str, Any] | None = {"start_time": start_time, "per_page": self.page_size}
        latest: dict[int, dict[str, Any]] = {}
        unkeyed: list[Any] = []  # tickets without a usable id: quarantined downstream
        for _ in range(max_pages):
            tickets, end_of_stream, after_url = self._request(
                "GET", url, validate=_validate_export_page, params=params
            )
            for ticket in tickets:
                key = ticket_key(ticket.get("id")) if isinstance(ticket, dict) else None
                if key is None:
                    unkeyed.append(ticket)
                elif key not in latest or _not_older(ticket, latest[key]):
                    latest[key] = ticket
            if end_of_stream:
                return list(latest.values()) + unkeyed
            # after_url carries the cursor; it must stay on the configured CRM.
            next_url = self._resolve(url, after_url)
            self._check_origin(next_url, f"{_strip_query(url)}: the export page's after_url")
            url, params = next_url, None
        raise CRMAPIError(f"{url}: export did not reach end_of_stream within {max_pages} pages")

    def create_ticket(
        self,
        subject: str,
        body: str,
        tags: list[str] | None = None,
        priority: str = "high",
        external_id: str | None = None,
    ) -> int:
        url = f"{self.base_url}{TICKETS_PATH}"
        payload: dict[str, Any] = {
            "ticket": {
                "subject": subject,
                "comment": {"body": body},
                "tags": tags or [],
                "priority": priority,
            }
        }
        if external_id is not None:
            payload["ticket"]["external_id"] = external_id
        response = self._request("POST", url, json=payload)
        try:
            return int(response["ticket"]["id"])
        except (KeyError, TypeError, ValueError):
            raise CRMAPIError(f"{url}: ticket creation returned no ticket id") from None

    def get_ticket(self, ticket_id: int) -> dict[str, Any]:
        """The ticket's current state; an unknown id is a CRMRequestRefused (404), not retried."""
        url = f"{self.base_url}{TICKET_PATH.format(ticket_id=int(ticket_id))}"
        return self._request("GET", url, validate=_validate_ticket)

    def update_ticket(self, ticket_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """PUT ``{"ticket": fields}`` (Zendesk's update: e.g. ``status``, ``additional_tags``,
        ``remove_tags``, ``custom_fields`` ``[{"id", "value"}]``, ``comment`` ``{"body", "public"}``)
        and return the updated ticket. Retried like every request: a comment is not idempotent, so an
        attempt whose answer was lost (a timeout) can add the comment twice."""
        url = f"{self.base_url}{TICKET_PATH.format(ticket_id=int(ticket_id))}"
        return self._request("PUT", url, validate=_validate_ticket, json={"ticket": fields})


def _validate_ticket(url: str, body: dict[str, Any]) -> dict[str, Any]:
    ticket = body.get("ticket")
    if not isinstance(ticket, dict) or "id" not in ticket:
        raise _Transient(url, "response lacks a 'ticket' object")
    return ticket


def _not_older(candidate: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether an exported version replaces the one kept so far: its parsed updated_at is not
    earlier (a tie keeps the later-exported version); when either time does not parse, the
    later-exported version wins."""
    new, old = (
        try_parse_ticket_time(candidate.get("updated_at")),
        try_parse_ticket_time(current.get("updated_at")),
    )
    return new is None or old is None or new >= old


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme)


def _origin_text(url: str) -> str:
    """scheme://host[:port] of a URL, never its user info, path or query."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "an invalid URL"
    host = parsed.host or "?"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{parsed.scheme}://{host}" + (f":{parsed.port}" if parsed.port else "")


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


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
    after_url = page.get("after_url")
    if not end_of_stream and not isinstance(after_url, str):
        raise _Transient(url, "export page has end_of_stream=false but no after_url")
    return tickets, end_of_stream, after_url or ""
