"""Where the scoring service's inference log lands: the landing zone's root (any store)."""

import dagster as dg
from pydantic import Field
from upath import UPath

from churn_platform.storage.connection import ObjectStoreConnection, open_path


class InferenceLogStore(dg.ConfigurableResource):
    """The landing zone the service writes `inference_logs/date=<day>/` under: a local folder,
    s3://bucket/prefix or gs://bucket/prefix."""

    base_path: str = Field(description="Root of the landing zone.")
    connection: ObjectStoreConnection | None = None

    def root(self) -> UPath:
        return open_path(self.base_path, self.connection)
