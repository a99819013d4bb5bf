"""How to reach an object store (S3 or GCS): endpoint and credentials, secrets via dagster.EnvVar.

Every location the platform reads or writes (warehouse, artifacts, landing zone, CRM export,
backups) is a ``base_path`` plus an optional connection. Local paths need no connection.
"""

from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath

from churn_platform.storage.credentials import reveal

S3_PROTOCOLS = ("s3", "s3a")
GCS_PROTOCOLS = ("gs", "gcs")


class ObjectStoreConnection(dg.ConfigurableResource):
    """Endpoint and credentials for S3-compatible or GCS storage.

    Unset fields fall back to the client library's own discovery (AWS/Google default credentials).
    """

    endpoint_url: str | None = Field(default=None, description="Custom endpoint (MinIO, moto, an emulator).")
    region: str | None = Field(default=None, description="S3 region.")
    access_key_id: str | None = Field(default=None, description="S3 access key id (use dg.EnvVar).")
    secret_access_key: str | None = Field(default=None, description="S3 secret key (use dg.EnvVar).")
    gcs_token: str | None = Field(
        default=None, description="GCS credentials: a service-account JSON path, 'google_default' or 'anon'."
    )
    gcs_project: str | None = Field(default=None, description="GCS project.")
    retries: int = Field(
        default=5, description="S3 (botocore) attempts on transient errors; gcsfs retries internally."
    )

    def storage_options(self, protocol: str) -> dict[str, Any]:
        if protocol in S3_PROTOCOLS:
            options: dict[str, Any] = {"version_aware": True}
            if self.access_key_id:
                options["key"] = reveal(self.access_key_id)
            if self.secret_access_key:
                options["secret"] = reveal(self.secret_access_key)
            if self.endpoint_url:
                options["endpoint_url"] = self.endpoint_url
            client_kwargs: dict[str, Any] = {}
            if self.region:
                client_kwargs["region_name"] = self.region
            options["client_kwargs"] = client_kwargs
            options["config_kwargs"] = {"retries": {"max_attempts": self.retries, "mode": "standard"}}
            return options
        if protocol in GCS_PROTOCOLS:
            options = {}
            if self.gcs_token:
                options["token"] = reveal(self.gcs_token)
            if self.gcs_project:
                options["project"] = self.gcs_project
            if self.endpoint_url:
                options["endpoint_url"] = self.endpoint_url
            return options
        return {}

    def s3_client(self) -> Any:
        """A boto3 S3 client with this connection's endpoint, credentials and retries."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=reveal(self.access_key_id),
            aws_secret_access_key=reveal(self.secret_access_key),
            config=Config(retries={"max_attempts": self.retries, "mode": "standard"}),
        )


def open_path(uri: str, connection: ObjectStoreConnection | None = None) -> UPath:
    """A UPath for a local path, s3:// or gs:// URI, configured with the connection's options."""
    protocol = uri.split("://", 1)[0] if "://" in uri else ""
    options = connection.storage_options(protocol) if connection is not None else {}
    return UPath(uri, **options)
