"""The Zendesk-shaped ticket export file: JSON lines, one ticket object (current state) per line.

`churn-platform generate` writes it; the CRM simulator serves it over the Zendesk API.
"""

import json
from typing import Any

from churn_platform.storage.connection import ObjectStoreConnection, open_path
from churn_platform.storage.files import StorageError, read_bytes, uri_of, write_bytes_atomic


def read_export(path: str, connection: ObjectStoreConnection | None = None) -> list[dict[str, Any]]:
    target = open_path(path, connection)
    try:
        content = read_bytes(target).decode("utf-8")
    except StorageError as exc:
        raise StorageError(
            f"CRM export {uri_of(target)} does not exist; run `churn-platform generate` or configure CHURN_CRM_URL"
        ) from exc
    tickets = []
    for number, line in enumerate(content.splitlines(), start=1):
        if line.strip():
            try:
                tickets.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{uri_of(target)} line {number}: not valid JSON ({exc.msg})") from exc
    return tickets


def write_export(
    path: str, tickets: list[dict[str, Any]], connection: ObjectStoreConnection | None = None
) -> str:
    target = open_path(path, connection)
    write_bytes_atomic(
        target, "".join(json.dumps(t, separators=(",", ":")) + "\n" for t in tickets).encode("utf-8")
    )
    return uri_of(target)
