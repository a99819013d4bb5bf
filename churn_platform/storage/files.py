"""Reading and writing whole objects on local disk or object stores (fsspec via universal-pathlib)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import tempfile
from collections.abc import Sequence

from upath import UPath

_PARTITION_KEY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class StorageError(RuntimeError):
    """A storage problem a user can act on; the message names the URI."""


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def validate_partition_key(key: str) -> str:
    """Partition keys become path segments, so only real dates (YYYY-MM-DD) are accepted."""
    if not isinstance(key, str) or not _PARTITION_KEY.match(key):
        raise StorageError(f"partition key {key!r} is not a date of the form YYYY-MM-DD")
    try:
        dt.date.fromisoformat(key)
    except ValueError as exc:
        raise StorageError(f"partition key {key!r} is not a valid date: {exc}") from exc
    return key


def partition_path(
    root: UPath, asset_key_path: Sequence[str], partition_key: str | None, suffix: str
) -> UPath:
    """Where an asset's partition lives under ``root``: ``<asset key path>/<partition key><suffix>``,
    or ``<asset key path><suffix>`` when the asset is not partitioned."""
    if partition_key is None:
        *parents, name = asset_key_path
        return root.joinpath(*parents, f"{name}{suffix}")
    return root.joinpath(*asset_key_path, f"{validate_partition_key(partition_key)}{suffix}")


def protocol_of(path: UPath) -> str:
    """The object-store protocol of a path (``s3``, ``gs``, ...), or ``""`` for local disk."""
    return "" if path.protocol in ("", "file", "local") else path.protocol


def uri_of(path: UPath) -> str:
    """How a path is shown and recorded: a plain absolute path locally, a URI on object stores."""
    return str(path) if protocol_of(path) else path.path


def _remote_error(path: UPath, action: str, exc: Exception) -> StorageError:
    uri = uri_of(path)
    bucket = path.path.split("/", 1)[0]
    if isinstance(exc, PermissionError):
        return StorageError(
            f"access denied {action} {uri}: check the credentials configured for {path.protocol}:// "
            "(see README, Environments)"
        )
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"could not {action} {uri}: it or its bucket {bucket!r} does not exist ({exc})")
    return StorageError(f"could not {action} {uri}: {type(exc).__name__}: {exc}")


def _new_file_mode() -> int:
    """0666 less the process's umask, read from /proc (setting the umask to read it back would
    race with threads creating files meanwhile); 0644 where /proc does not say."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


NEW_FILE_MODE = _new_file_mode()


def write_bytes_atomic(path: UPath, data: bytes | memoryview) -> None:
    """Write an object so that readers see either the previous version or the whole new one.

    Local files: write a temporary file in the same directory, then rename over the target.
    Object stores: a single PUT (or a completed multipart upload) is already all-or-nothing.
    """
    if not protocol_of(path):
        target = path.path
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
        try:
            # mkstemp creates 0600; the file gets the mode any new file gets (0644 under the usual
            # umask), so Spark executors and backup jobs running as another user can read it.
            os.fchmod(fd, NEW_FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        try:
            path.fs.pipe_file(path.path, bytes(data))
        except Exception as exc:
            raise _remote_error(path, "write", exc) from exc


# Temporary names: a local atomic write's file, and a range's staged files (see stage/commit below).
TEMPORARY_PREFIXES = (".tmp-", ".staging-")
# A temporary file this old belongs to a writer that died (no write takes an hour): removed.
STALE_TEMPORARY_SECONDS = 3600


def remove_stale_temporaries(
    directory: UPath, now: float, older_than: float = STALE_TEMPORARY_SECONDS
) -> list[str]:
    """Delete temporary files left in ``directory`` by killed writers; returns their names. Recent
    ones are left alone: another writer may be using them right now."""
    fs = directory.fs
    try:
        entries = fs.ls(directory.path, detail=True)
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") == "directory" or not name.startswith(TEMPORARY_PREFIXES):
            continue
        staged_at = name.split("-")[1] if name.startswith(".staging-") else ""
        # A staged file's name carries its writer's clock (time.time()); a store's LastModified
        # would compare two clocks.
        modified = (
            int(staged_at)
            if staged_at.isdigit()
            else entry.get("mtime") or entry.get("LastModified") or entry.get("updated")
        )
        if isinstance(modified, str):
            modified = dt.datetime.fromisoformat(modified.replace("Z", "+00:00"))
        if isinstance(modified, dt.datetime):
            modified = modified.timestamp()
        if modified is not None and now - float(modified) > older_than:
            fs.rm(str(entry["name"]))
            removed.append(name)
    return removed


def commit_staged(staged: UPath, target: UPath) -> None:
    """Move a staged file over its target: a rename locally (atomic), a server-side copy then a
    delete on object stores (the target is the old or the whole new object at every moment)."""
    if not protocol_of(staged):
        os.replace(staged.path, target.path)
        return
    try:
        staged.fs.copy(staged.path, target.path)
        staged.fs.rm(staged.path)
    except Exception as exc:
        raise _remote_error(target, "write", exc) from exc


def object_version(path: UPath) -> str | None:
    """The object's version where the store keeps versions (S3 VersionId, GCS generation)."""
    if not protocol_of(path):
        return None
    info = path.fs.info(path.path)
    version = info.get("VersionId") or info.get("generation")
    return str(version) if version not in (None, "null") else None


def read_bytes(path: UPath) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise StorageError(f"{uri_of(path)} does not exist") from exc
    except Exception as exc:
        if not protocol_of(path):
            raise
        raise _remote_error(path, "read", exc) from exc
