"""The backup location: separate from the platform's storage and written once per object."""

import dagster as dg
from pydantic import Field
from upath import UPath

from churn_platform.storage.connection import ObjectStoreConnection, open_path
from churn_platform.storage.files import (
    StorageError,
    read_bytes,
    sha256_hex,
    uri_of,
    write_bytes_atomic,
)


class BackupStore(dg.ConfigurableResource):
    """Write-once storage for backups (in production, a versioned bucket with Object Lock)."""

    base_path: str = Field(description="Local directory, s3://bucket/prefix or gs://bucket/prefix.")
    connection: ObjectStoreConnection | None = None

    def path(self, relative: str) -> UPath:
        return open_path(self.base_path, self.connection).joinpath(*relative.split("/"))

    def write_once(self, relative: str, data: bytes) -> str:
        """Store ``data`` at ``relative``; re-writing identical bytes is a no-op, different bytes
        are refused so that a backup can never be silently replaced."""
        path = self.path(relative)
        if path.exists():
            existing = read_bytes(path)
            if sha256_hex(existing) != sha256_hex(data):
                raise StorageError(f"refusing to overwrite backup {uri_of(path)} with different content")
            return uri_of(path)
        write_bytes_atomic(path, data)
        return uri_of(path)

    def uri(self, relative: str) -> str:
        return uri_of(self.path(relative))

    def read(self, relative: str) -> bytes:
        return read_bytes(self.path(relative))
