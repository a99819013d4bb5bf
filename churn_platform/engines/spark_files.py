"""Spark reading and writing the warehouse itself (executors do the IO, not the driver).

Spark reaches local paths always, ``s3a://`` with the hadoop-aws connector and ``gs://`` with the
GCS connector on its classpath (``spark.jars.packages``, see README). Where the connector is
missing, callers fall back to moving the data through the driver as Arrow, and say so in the log.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from churn_platform.storage.connection import GCS_PROTOCOLS, S3_PROTOCOLS, ObjectStoreConnection
from churn_platform.storage.files import StorageError, protocol_of, uri_of, write_bytes_atomic
from churn_platform.storage.parquet_files import table_to_parquet

# Hadoop FileSystem scheme Spark uses for each fsspec protocol.
_SPARK_SCHEMES = {"": "file", **dict.fromkeys(S3_PROTOCOLS, "s3a"), **dict.fromkeys(GCS_PROTOCOLS, "gs")}
_PARTITION_DIR = "_churn_partition"


def spark_uri(path: UPath) -> str:
    """How Spark names a warehouse path: file:///..., s3a://bucket/..., gs://bucket/..."""
    scheme = _SPARK_SCHEMES.get(protocol_of(path))
    if scheme is None:
        raise StorageError(f"Spark cannot address {uri_of(path)}: unsupported protocol {path.protocol!r}")
    return f"file://{path.path}" if scheme == "file" else f"{scheme}://{path.path}"


def hadoop_options(connection: ObjectStoreConnection | None, protocol: str) -> dict[str, str]:
    """The connection's endpoint and credentials as Hadoop s3a settings (gs: endpoint only)."""
    if connection is None:
        return {}
    from churn_platform.storage.credentials import reveal

    if protocol in S3_PROTOCOLS:
        options = {
            "fs.s3a.access.key": reveal(connection.access_key_id),
            "fs.s3a.secret.key": reveal(connection.secret_access_key),
            "fs.s3a.endpoint.region": connection.region,
        }
        if connection.endpoint_url:  # MinIO, moto, a private endpoint: path-style addressing
            options |= {"fs.s3a.endpoint": connection.endpoint_url, "fs.s3a.path.style.access": "true"}
        return {k: v for k, v in options.items() if v}
    if protocol in GCS_PROTOCOLS and connection.endpoint_url:
        return {"fs.gs.storage.root.url": connection.endpoint_url}
    return {}


def spark_can_access(spark: Any, path: UPath, connection: ObjectStoreConnection | None = None) -> bool:
    """Whether this Spark session has a Hadoop FileSystem for the path (and configure it if so)."""
    scheme = _SPARK_SCHEMES.get(protocol_of(path))
    if scheme is None:
        return False
    if scheme == "file":
        return True
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    try:
        spark.sparkContext._jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(scheme, hadoop_conf)
    except Exception:
        return False
    for key, value in hadoop_options(connection, protocol_of(path)).items():
        hadoop_conf.set(key, value)
    return True


def write_partitions_with_spark(
    frame: Any, column: str, targets: dict[str, UPath], staging_root: UPath
) -> dict[str, UPath]:
    """Write a Spark DataFrame as one Parquet file per partition key, by the executors.

    Spark writes ``partitionBy`` folders into a staging folder beside the warehouse; every key is
    then checked before any file is moved to its place (a rename locally, a server-side copy on
    object stores). Keys without rows get an empty file with the output's schema. Returns the
    final path of each key. The staging folder is removed in every case.
    """
    from pyspark.sql import functions as F

    staging = staging_root / f"{uuid.uuid4().hex}"
    try:
        (
            frame.withColumn(_PARTITION_DIR, F.date_format(F.col(column), "yyyy-MM-dd"))
            .repartition(_PARTITION_DIR)
            # Rows in column order (the key columns come first): the same file from any run or range.
            .sortWithinPartitions(_PARTITION_DIR, *frame.columns)
            .write.mode("overwrite")
            .partitionBy(_PARTITION_DIR)
            .parquet(spark_uri(staging))
        )
        written = _staged_files(staging)
        unexpected = sorted(set(written) - set(targets))
        if unexpected:
            raise StorageError(
                f"column {column!r} holds values outside the partitions being written: {unexpected[:5]}"
            )
        schema = (
            pq.read_schema(written[next(iter(written))][0].path, filesystem=staging.fs) if written else None
        )
        if schema is None:
            schema = frame.limit(0).toArrow().schema
        for key, target in targets.items():
            _place(written.get(key, []), target, schema)
    finally:
        if staging.exists():
            staging.fs.rm(staging.path, recursive=True)
    return targets


def _staged_files(staging: UPath) -> dict[str, list[UPath]]:
    staging.fs.invalidate_cache()
    found: dict[str, list[UPath]] = {}
    for folder in staging.iterdir():
        if folder.name.startswith(f"{_PARTITION_DIR}="):
            key = folder.name.split("=", 1)[1]
            found[key] = sorted(p for p in folder.iterdir() if p.name.endswith(".parquet"))
    return found


def _place(parts: list[UPath], target: UPath, schema: pa.Schema) -> None:
    """Put one partition's staged output at its final path, atomically per file."""
    if len(parts) == 1:
        if protocol_of(target):
            target.fs.mv(parts[0].path, target.path)  # server-side copy: the object appears whole
        else:
            os.makedirs(os.path.dirname(target.path), exist_ok=True)
            os.replace(parts[0].path, target.path)
        return
    # No rows (no folder), or a key Spark split over several files: one file, through Arrow.
    tables = [pq.read_table(p.path, filesystem=p.fs) for p in parts]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    write_bytes_atomic(target, table_to_parquet(table))
