"""What a metadata snapshot holds: the Dagster instance's storage and the MLflow store, copied
consistently while the platform runs.

Locally both are SQLite, copied with SQLite's online backup API (``sqlite3.Connection.backup``):
each copy is a consistent state of its database even while runs write to it, which a file copy is
not. Each database is consistent on its own; a run that finished while the snapshot was being
taken may be in ``runs.db`` without its last events, or the other way round. In production both
are PostgreSQL databases (the instance through dagster-postgres, the MLflow server's backend
store), dumped with ``pg_dump`` in its custom format: one consistent snapshot of each database
(pg_dump reads inside a single repeatable-read transaction), restored with ``pg_restore``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

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


@dataclass(frozen=True)
class DatabaseDump:
    """A PostgreSQL database to dump: ``<name>/database.pgdump`` in the snapshot."""

    name: str
    url: str = field(repr=False)  # may hold a password: only redacted() goes into messages and manifests

    @property
    def root(self) -> str:
        return redacted(self.url)


DUMP_FILE = "database.pgdump"
PG_TIMEOUT_SECONDS = 3600


def redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _libpq(url: str) -> tuple[list[str], dict[str, str]]:
    """Connection arguments for pg_dump/pg_restore: the URL as a libpq URI (host, port, user,
    database and every query parameter: sslmode, sslrootcert, a Unix-socket host ...) without its
    password, which goes in PGPASSWORD, so it is in neither the command line nor any message."""
    from sqlalchemy.engine import URL, make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql") or not parsed.database:
        raise MetadataBackupError(f"{redacted(url)} is not a PostgreSQL database URL")
    # (URL.set() ignores None: build the password-less URL anew.)
    bare = URL.create(
        "postgresql", parsed.username, None, parsed.host, parsed.port, parsed.database, parsed.query
    )
    uri = bare.render_as_string(hide_password=False)
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return [f"--dbname={uri}"], env


def _run_pg(command: Sequence[str], url: str, what: str, stdin: bytes | None = None) -> bytes:
    args, env = _libpq(url)
    try:
        result = subprocess.run(
            [*command, *args], input=stdin, capture_output=True, env=env, timeout=PG_TIMEOUT_SECONDS
        )
    except FileNotFoundError:
        raise MetadataBackupError(
            f"{command[0]} is not installed: it is needed to {what} (Debian: postgresql-client)"
        ) from None
    if result.returncode != 0:
        error = result.stderr.decode(errors="replace").strip().splitlines()
        raise MetadataBackupError(f"{command[0]} could not {what} {redacted(url)}: {' / '.join(error[-3:])}")
    return result.stdout


def pg_dump(url: str) -> bytes:
    """The database as one consistent pg_dump archive (custom format, no owners or grants, so it
    restores under another role)."""
    return _run_pg(["pg_dump", "--format=custom", "--no-owner", "--no-privileges"], url, "dump")


def pg_restore(dump: bytes, url: str, clean: bool = False) -> None:
    """Restore an archive from ``pg_dump`` into the database at ``url`` in one transaction (all or
    nothing); ``clean`` first drops the objects the archive holds (replacing live data)."""
    _run_pg(
        ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
        + (["--clean", "--if-exists"] if clean else []),
        url,
        "restore into",
        stdin=dump,
    )


def psycopg2_url(url: str) -> str:
    """The URL with the psycopg2 driver dagster-postgres installs (SQLAlchemy 2.1 would pick psycopg 3
    for a bare ``postgresql://``)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url`` (its credentials: they need CREATEDB),
    dropped afterwards; yields its URL."""
    import uuid

    import sqlalchemy
    from sqlalchemy.engine import make_url

    server = make_url(psycopg2_url(server_url))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        engine.dispose()
        reason = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0]
        raise MetadataBackupError(
            f"cannot create a scratch database on {redacted(str(server))} (the user needs CREATEDB): {reason}"
        ) from None
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def postgres_url_of(instance: dg.DagsterInstance) -> str | None:
    """The instance's database when its storage is PostgreSQL (dagster-postgres), else None."""
    urls = {
        getattr(storage, "postgres_url", None)
        for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
    }
    if urls == {None}:
        return None
    if len(urls) != 1:
        raise MetadataBackupError(
            "the instance keeps runs, event logs and schedules in different databases (or only some in "
            "PostgreSQL): configure one `storage: postgres:` block, as deploy/dagster.yaml does"
        )
    return urls.pop()


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


def instance_sources(instance: dg.DagsterInstance) -> list[MetadataSource | DatabaseDump]:
    """The instance: its SQLite files under DAGSTER_HOME, or its configuration there and a dump
    of its PostgreSQL database."""
    url = postgres_url_of(instance)
    if url is None:
        return [instance_source(instance.root_directory)]
    base = Path(instance.root_directory)
    files = [Path(name) for name in INSTANCE_FILES if (base / name).is_file()]
    return [MetadataSource("dagster", base, files), DatabaseDump("dagster/postgres", url)]


def mlflow_source(
    tracking_uri: str, artifact_location: str | None, database_url: str | None = None
) -> list[MetadataSource | DatabaseDump]:
    """The MLflow store: a local one (SQLite database and artifact directory), a PostgreSQL store
    the platform uses directly, or a tracking server's database (``database_url``). A server's
    artifact store is its own: model snapshots copy the files of every promoted version."""
    scheme = tracking_uri.split(":", 1)[0].split("+", 1)[0]
    if scheme == "postgresql":
        return [DatabaseDump("mlflow/postgres", tracking_uri)]
    if scheme in ("http", "https") and database_url:
        return [DatabaseDump("mlflow/postgres", database_url)]
    if not tracking_uri.startswith("sqlite:///"):
        raise MetadataBackupError(
            f"the MLflow store is a server ({scheme}://...): set CHURN_MLFLOW_DATABASE_URL to its PostgreSQL "
            "database so that its runs, versions and aliases are backed up (pg_dump)"
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


def snapshot_files(sources: Sequence[MetadataSource | DatabaseDump]) -> Iterator[tuple[str, bytes]]:
    """(path in the snapshot, bytes) for every file of every source; SQLite databases through the
    online backup API, PostgreSQL databases through pg_dump, other files as they are."""
    with tempfile.TemporaryDirectory() as scratch:
        for source in sources:
            if isinstance(source, DatabaseDump):
                yield f"{source.name}/{DUMP_FILE}", pg_dump(source.url)
                continue
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
