"""The landing zone where product interaction logs arrive as JSON-lines files.

Layout: ``<base_path>/interaction_logs/date=YYYY-MM-DD/<any name>.jsonl`` (or ``.jsonl.gz``,
gzip-compressed). One folder per UTC day; any number of files per day. Names starting with a dot
are writes in progress and are not read; any other name is refused by name, never skipped
silently (an upper-case ``.JSONL`` or a ``.csv`` is a mistake to fix, not data to lose).
"""

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster_aws.s3.sensor import get_objects
from pydantic import Field
from upath import UPath

from churn_platform.storage.connection import S3_PROTOCOLS, ObjectStoreConnection, open_path
from churn_platform.storage.files import uri_of, validate_partition_key, write_bytes_atomic

LOGS_PREFIX = "interaction_logs"


@dataclass(frozen=True)
class LandedFile:
    """A file in a day's folder and its version: the S3 ETag, GCS generation or local mtime/size/inode,
    which changes whenever the file is written again under the same name."""

    name: str
    version: str
    modified: float  # seconds since the epoch, by the store's clock


LOG_SUFFIXES = (".jsonl", ".jsonl.gz")


def is_log_file(name: str) -> bool:
    return name.endswith(LOG_SUFFIXES) and not name.startswith(".")


class UnsupportedLandingFiles(ValueError):
    """A day folder holds files that are not interaction logs; the message names them."""


def fingerprint(files: list[LandedFile]) -> str:
    """One hash of a day's files and their versions: it changes when a file is added, re-written or removed."""
    lines = sorted(f"{f.name}\t{f.version}" for f in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _version(entry: dict[str, Any]) -> str:
    for field in ("ETag", "etag", "generation", "md5Hash"):
        if entry.get(field):
            return str(entry[field]).strip('"')
    # Local files: an atomic write (write + rename) always brings a new inode and mtime.
    return f"{entry.get('mtime')}:{entry.get('size')}:{entry.get('ino')}"


def _modified(entry: dict[str, Any]) -> float:
    for field in ("LastModified", "updated", "mtime"):
        value = entry.get(field)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, str):
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        if isinstance(value, (int, float)):
            return float(value)
    return 0.0


def day_folder(base_path: str, date: str, connection: ObjectStoreConnection | None = None) -> UPath:
    return open_path(base_path, connection).joinpath(LOGS_PREFIX, f"date={validate_partition_key(date)}")


class LandingZone(dg.ConfigurableResource):
    """Where interaction-log files land: a local folder, s3://bucket/prefix or gs://bucket/prefix."""

    base_path: str = Field(description="Root of the landing zone.")
    connection: ObjectStoreConnection | None = None

    def files_for(self, date: str) -> list[UPath]:
        """The day's log files, in name order; any other (visible) entry is refused by name."""
        folder = day_folder(self.base_path, date, self.connection)
        if not folder.exists():
            return []
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        unsupported = sorted(p.name for p in entries if not is_log_file(p.name) or p.is_dir())
        if unsupported:
            raise UnsupportedLandingFiles(
                f"{uri_of(folder)} holds {unsupported}: only *.jsonl and *.jsonl.gz files (lower case) "
                "may land there; move or rename them and re-run"
            )
        return sorted(entries, key=lambda p: p.name)

    def list_day(self, date: str) -> list[LandedFile]:
        """The day's log files with their versions, listed afresh (no client-side listing cache)."""
        folder = day_folder(self.base_path, date, self.connection)
        if folder.protocol in S3_PROTOCOLS:
            # dagster-aws's paginated listing (1,000 keys a page) of just this day's prefix.
            bucket, _, key_prefix = folder.path.partition("/")
            client = (self.connection or ObjectStoreConnection()).s3_client()
            entries = [
                {"name": o["Key"], "ETag": o["ETag"], "LastModified": o["LastModified"]}
                for o in get_objects(bucket, key_prefix + "/", client=client)
            ]
        else:
            fs = folder.fs
            fs.invalidate_cache(folder.path)
            try:
                entries = fs.ls(folder.path, detail=True)
            except FileNotFoundError:
                entries = []
        files = [
            LandedFile(str(e["name"]).rstrip("/").rsplit("/", 1)[-1], _version(e), _modified(e))
            for e in entries
        ]
        return sorted((f for f in files if is_log_file(f.name)), key=lambda f: f.name)

    def folder_uri(self, date: str) -> str:
        return uri_of(day_folder(self.base_path, date, self.connection))

    def write_file(self, date: str, name: str, content: str) -> str:
        path = day_folder(self.base_path, date, self.connection) / name
        write_bytes_atomic(path, content.encode("utf-8"))
        return uri_of(path)
