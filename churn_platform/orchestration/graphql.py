"""A small client of the Dagster webserver's GraphQL API (what the UI itself calls)."""

from typing import Any

import httpx


class GraphQLError(RuntimeError):
    """The webserver could not be reached, or it rejected the request."""


def graphql(
    url: str, query: str, variables: dict[str, Any] | None = None, timeout: float = 60
) -> dict[str, Any]:
    """The ``data`` of one GraphQL request to the webserver at ``url``."""
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise GraphQLError(
            f"could not reach the Dagster webserver at {url} ({exc}); is `make dev` running?"
        ) from None
    body = response.json()
    if body.get("errors"):
        raise GraphQLError(f"the webserver rejected the request: {body['errors'][0].get('message')}")
    return body["data"]
