"""What a metadata snapshot holds: the Dagster instance's SQLite databases and the MLflow store
(its SQLite database and artifact directory), copied consistently while the platform runs.

SQLite files are copied with SQLite's online backup API (``sqlite3.Connection.backup``): each
copy is a consistent state of its database even while runs write to it, which a file copy is not.
Each database is consistent on its own; a run that finished while the snapshot was being taken
may be in ``runs.db`` without its last events, or the other way round.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Instance files worth restoring; compute logs and telemetry are not.
INSTANCE_DIRS = ("history", "schedules")
INSTANCE_FILES = ("dagster.yaml", "workspace.yaml")


class MetadataBackupError(RuntimeError):
    """The metadata cannot be backed up as configured (retrying will not help)."""


@dataclass(frozen=True)
class MetadataSource:
    """One directory tree to snapshot: ``name`` is its folder in the snapshot."""

    name: str
    root: Path
    files: list[Path]  # relative to root


def sqlite_online_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the backup API, page by page)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


# SQLite's write-ahead log, shared memory and rollback journal: the online backup copy already holds
# their committed content; a raw copy beside it would be replayed onto it on open and corrupt it.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def is_sqlite_sidecar(path: Path) -> bool:
    return path.name.endswith(SQLITE_SIDECARS)


def is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def instance_source(root: str | os.PathLike) -> MetadataSource:
    """The SQLite instance under ``root`` (DAGSTER_HOME): runs, event logs, schedules and ticks."""
    base = Path(root)
    files = [base / name for name in INSTANCE_FILES if (base / name).is_file()]
    for folder in INSTANCE_DIRS:
        files += sorted(p for p in (base / folder).rglob("*") if p.is_file() and not is_sqlite_sidecar(p))
    return MetadataSource("dagster", base, [p.relative_to(base) for p in files])


def mlflow_source(tracking_uri: str, artifact_location: str | None) -> list[MetadataSource]:
    """The MLflow store when it is local (a SQLite database and an artifact directory). A tracking
    server keeps its own store, which its database backups protect: refused here by name."""
    if not tracking_uri.startswith("sqlite:///"):
        raise MetadataBackupError(
            f"the MLflow store is a server ({tracking_uri.split('://')[0]}://...): back up its database "
            "and artifact store where the server runs; only a local SQLite store is copied here"
        )
    database = Path(tracking_uri[len("sqlite:///") :])
    sources = [MetadataSource("mlflow/db", database.parent, [Path(database.name)])]
    if artifact_location and "://" not in artifact_location and Path(artifact_location).is_dir():
        root = Path(artifact_location)
        files = sorted(
            p.relative_to(root) for p in root.rglob("*") if p.is_file() and not is_sqlite_sidecar(p)
        )
        sources.append(MetadataSource("mlflow/artifacts", root, files))
    return sources


def snapshot_files(sources: list[MetadataSource]) -> Iterator[tuple[str, bytes]]:
    """(path in the snapshot, bytes) for every file of every source; SQLite databases through the
    online backup API, other files as they are."""
    with tempfile.TemporaryDirectory() as scratch:
        for source in sources:
            for relative in source.files:
                path = source.root / relative
                if not path.exists():  # removed since it was listed (a run's scratch file)
                    continue
                name = f"{source.name}/{relative.as_posix()}"
                if is_sqlite(path):
                    copy = Path(scratch) / "copy.db"
                    copy.unlink(missing_ok=True)
                    sqlite_online_copy(path, copy)
                    yield name, copy.read_bytes()
                else:
                    yield name, path.read_bytes()
