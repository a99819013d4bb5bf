"""Model artifacts (any picklable object) stored with joblib, on local disk or an object store.

Layout: ``<base_path>/<asset key path>/<partition key>.joblib`` (``.../<name>.joblib`` when
unpartitioned). Joblib files are pickles: only load artifacts from storage you control.
"""

import io
from typing import Any

import dagster as dg
import joblib
from pydantic import Field
from upath import UPath

from churn_platform.storage.connection import ObjectStoreConnection, open_path
from churn_platform.storage.files import (
    StorageError,
    object_version,
    partition_path,
    read_bytes,
    sha256_hex,
    uri_of,
    write_bytes_atomic,
)


def dump_artifact(obj: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer, compress=3)
    return buffer.getvalue()


def load_artifact_bytes(data: bytes) -> Any:
    return joblib.load(io.BytesIO(data))


class ArtifactStore(dg.ConfigurableResource):
    """Where model artifacts live. Assets that look artifacts up by URI (scoring, backups) use it."""

    base_path: str = Field(description="Local directory, s3://bucket/prefix or gs://bucket/prefix.")
    connection: ObjectStoreConnection | None = None

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> UPath:
        return partition_path(
            open_path(self.base_path, self.connection), asset_key.path, partition_key, ".joblib"
        )

    def read_uri(self, uri: str) -> bytes:
        return read_bytes(open_path(uri, self.connection))


class ArtifactIOManager(dg.ConfigurableIOManager):
    """Stores one joblib file per asset partition in an ArtifactStore."""

    store: ArtifactStore

    def _single_key(self, context: dg.InputContext | dg.OutputContext) -> str | None:
        if not context.has_asset_partitions:
            return None
        keys = list(context.asset_partition_keys)
        if len(keys) != 1:
            raise StorageError(
                f"{context.asset_key.to_user_string()}: an artifact belongs to one partition, "
                f"got {len(keys)}; run these partitions one at a time"
            )
        return keys[0]

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = self.store.path_for(context.asset_key, self._single_key(context))
        data = dump_artifact(obj)
        write_bytes_atomic(path, data)
        metadata = {
            "uri": dg.MetadataValue.path(uri_of(path)),
            "sha256": sha256_hex(data),
            "bytes": len(data),
        }
        version = object_version(path)
        if version:
            metadata["object_version"] = version
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> Any:
        path = self.store.path_for(context.asset_key, self._single_key(context))
        return load_artifact_bytes(read_bytes(path))
