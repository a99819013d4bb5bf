"""The landing zone where product interaction logs arrive as JSON-lines files.

Layout: ``<base_path>/interaction_logs/date=YYYY-MM-DD/<any name>.jsonl``. One folder per UTC day;
any number of files per day.
"""

from typing import Optional

import dagster as dg
from pydantic import Field
from upath import UPath

from churn_platform.storage.connection import ObjectStoreConnection, open_path
from churn_platform.storage.files import uri_of, validate_partition_key, write_bytes_atomic

LOGS_PREFIX = "interaction_logs"


def day_folder(base_path: str, date: str, connection: Optional[ObjectStoreConnection] = None) -> UPath:
    return open_path(base_path, connection).joinpath(
        LOGS_PREFIX, f"date={validate_partition_key(date)}"
    )


class LandingZone(dg.ConfigurableResource):
    """Where interaction-log files land: a local folder, s3://bucket/prefix or gs://bucket/prefix."""

    base_path: str = Field(description="Root of the landing zone.")
    connection: Optional[ObjectStoreConnection] = None

    def files_for(self, date: str) -> list[UPath]:
        folder = day_folder(self.base_path, date, self.connection)
        if not folder.exists():
            return []
        return sorted(p for p in folder.iterdir() if p.name.endswith(".jsonl") and not p.name.startswith("."))

    def folder_uri(self, date: str) -> str:
        return uri_of(day_folder(self.base_path, date, self.connection))

    def write_file(self, date: str, name: str, content: str) -> str:
        path = day_folder(self.base_path, date, self.connection) / name
        write_bytes_atomic(path, content.encode("utf-8"))
        return uri_of(path)
