"""Snapshots in the backup store: listing, verifying and restoring them.

Every snapshot is a folder with a ``manifest.json`` whose ``objects`` maps each stored file (relative
to the folder) to its SHA-256 and size. Verification re-reads every object; a restore verifies
every object before it writes anything, and refuses to overwrite files unless told to.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from upath import UPath

from churn_platform.backups.metadata import DUMP_FILE, pg_restore, psycopg2_url, redacted
from churn_platform.backups.resources import BackupStore
from churn_platform.storage.files import StorageError, sha256_hex, uri_of, write_bytes_atomic

MANIFEST = "manifest.json"


class RestoreRefused(RuntimeError):
    """A restore that would lose data or restore damaged data (nothing was written)."""


@dataclass(frozen=True)
class Snapshot:
    prefix: str  # folder in the backup store
    kind: str  # model or metadata
    created: str
    objects: dict[str, dict]  # relative path -> {"sha256", "bytes"}

    @property
    def bytes(self) -> int:
        return sum(int(o["bytes"]) for o in self.objects.values())


def object_entries(files: Mapping[str, bytes]) -> dict[str, dict]:
    return {name: {"sha256": sha256_hex(data), "bytes": len(data)} for name, data in sorted(files.items())}


def list_snapshots(store: BackupStore) -> list[Snapshot]:
    """Every snapshot under the store's base path, oldest first."""
    root = store.path("")
    snapshots = []
    for manifest_path in root.rglob(MANIFEST):
        prefix = manifest_path.parent.relative_to(root).as_posix()
        try:
            manifest = json.loads(manifest_path.read_bytes())
        except (ValueError, OSError):  # listed as damaged: verify names it, the rest still lists
            snapshots.append(
                Snapshot(prefix, "damaged", "", {MANIFEST: {"sha256": "unreadable", "bytes": -1}})
            )
            continue
        snapshots.append(
            Snapshot(
                prefix,
                manifest.get("kind", "model"),
                str(manifest.get("created") or manifest.get("model", {}).get("materialized_at", "")),
                manifest.get("objects", {}),
            )
        )
    return sorted(snapshots, key=lambda s: (s.created, s.prefix))


def find_snapshot(store: BackupStore, prefix: str) -> Snapshot:
    matches = [s for s in list_snapshots(store) if s.prefix == prefix.strip("/")]
    if not matches:
        known = ", ".join(s.prefix for s in list_snapshots(store)[-5:]) or "none"
        raise RestoreRefused(f"no snapshot {prefix!r} in {store.uri('')} (newest: {known})")
    return matches[0]


def read_verified(store: BackupStore, snapshot: Snapshot) -> tuple[dict[str, bytes], list[str]]:
    """Every object's bytes, and a problem for each object that is missing or does not match its
    recorded SHA-256 or size (naming the object)."""
    contents, problems = {}, []
    for name, expected in snapshot.objects.items():
        uri = store.uri(f"{snapshot.prefix}/{name}")
        try:
            data = store.read(f"{snapshot.prefix}/{name}")
        except (StorageError, OSError) as exc:
            problems.append(f"{uri}: missing or unreadable ({exc.__class__.__name__})")
            continue
        if sha256_hex(data) != expected["sha256"] or len(data) != int(expected["bytes"]):
            problems.append(
                f"{uri}: SHA-256 {sha256_hex(data)} ({len(data)} bytes) does not match the manifest's "
                f"{expected['sha256']} ({expected['bytes']} bytes)"
            )
            continue
        contents[name] = data
    return contents, problems


def verify_snapshot(store: BackupStore, snapshot: Snapshot) -> list[str]:
    return read_verified(store, snapshot)[1]


def _files_to_write(plan: list[tuple], overwrite: bool, existing_files: str) -> list[tuple]:
    """The (path, bytes) of a restore that must be written: a file already holding the backup's
    bytes is not live data at risk and is left as it is; any other existing file refuses the whole
    restore unless ``overwrite``."""
    plan = [(path, data) for path, data in plan if not (path.is_file() and path.read_bytes() == data)]
    existing = [uri_of(UPath(path)) for path, _ in plan if path.exists()]
    if existing and not overwrite:
        raise RestoreRefused(
            f"{len(existing)} {existing_files}, e.g. {existing[0]}; nothing restored (pass --force to overwrite "
            "live data)"
        )
    return plan


def restore_snapshot(
    store: BackupStore,
    snapshot: Snapshot,
    targets: Mapping[str, Path],
    overwrite: bool = False,
    databases: Mapping[str, str] | None = None,
) -> list[Path | str]:
    """Write the snapshot's objects into local directories: ``targets`` maps a folder of the
    snapshot (``dagster``, ``mlflow/db``, ...) to where its files go; ``databases`` maps a folder
    holding a pg_dump archive (``dagster/postgres``, ``mlflow/postgres``) to the PostgreSQL database
    it is restored into. Every object is verified first; with any damaged object, or any existing
    file that differs or database that holds runs, events or models (unless ``overwrite``),
    nothing is written.
    Returns the files written and the databases restored (redacted URLs)."""
    contents, problems = read_verified(store, snapshot)
    if problems:
        raise RestoreRefused(
            f"snapshot {snapshot.prefix} is damaged; nothing restored:\n" + "\n".join(problems)
        )
    databases = databases or {}
    dumps = {
        folder: contents.pop(f"{folder}/{DUMP_FILE}")
        for folder in databases
        if f"{folder}/{DUMP_FILE}" in contents
    }
    for folder, url in databases.items():
        if folder not in dumps:
            raise RestoreRefused(
                f"snapshot {snapshot.prefix} holds no {folder}/{DUMP_FILE}; nothing restored"
            )
        rows = live_rows(url)
        if rows and not overwrite:
            raise RestoreRefused(
                f"{redacted(url)} holds {rows} row(s) of runs, events or models (live data); nothing restored "
                "(pass --force to replace them)"
            )
    plan: list[tuple[Path, bytes]] = []
    for name, data in contents.items():
        folder = next((f for f in sorted(targets, key=len, reverse=True) if name.startswith(f + "/")), None)
        if folder is None:
            continue
        root = Path(targets[folder]).resolve()
        path = (root / name[len(folder) + 1 :]).resolve()
        if not path.is_relative_to(root):  # a manifest naming ../ or an absolute path
            raise RestoreRefused(
                f"snapshot {snapshot.prefix}: object {name!r} would be written outside {root}"
            )
        plan.append((path, data))
    plan = _files_to_write(plan, overwrite, "file(s) exist")

    for path, data in plan:
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm", "-journal"):  # a stale log beside a restored database is replayed
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        write_bytes_atomic(UPath(path), data)
    for folder, dump in dumps.items():
        # --clean: the schema Dagster or MLflow may already have created is replaced by the archive's.
        pg_restore(dump, databases[folder], clean=True)
    return [path for path, _ in plan] + [redacted(databases[folder]) for folder in dumps]


TRAINING_FOLDER = "training"


def restore_training_data(
    store: BackupStore,
    snapshot: Snapshot,
    path_for: Callable[[dg.AssetKey, str], UPath],
    overwrite: bool = False,
) -> list[str]:
    """Put a model snapshot's training data (``training/<asset>/<partition>.parquet``) back where
    the warehouse keeps those partitions (``path_for``: the IO manager's layout, local or remote).
    Every object is verified first; with any damaged object, or any existing file that differs
    (unless ``overwrite``), nothing is written. Returns the files written."""
    contents, problems = read_verified(store, snapshot)
    if problems:
        raise RestoreRefused(
            f"snapshot {snapshot.prefix} is damaged; nothing restored:\n" + "\n".join(problems)
        )
    plan: list[tuple[UPath, bytes]] = []
    for name, data in contents.items():
        if not name.startswith(f"{TRAINING_FOLDER}/"):
            continue
        asset, _, file = name.removeprefix(f"{TRAINING_FOLDER}/").rpartition("/")
        parts = asset.split("/")
        if not file.endswith(".parquet") or any(part in ("", ".", "..") for part in parts):
            raise RestoreRefused(
                f"snapshot {snapshot.prefix}: object {name!r} is not an asset partition's file"
            )
        try:
            plan.append((path_for(dg.AssetKey(parts), file.removesuffix(".parquet")), data))
        except StorageError as exc:  # not a YYYY-MM-DD partition key: a manifest naming a path
            raise RestoreRefused(f"snapshot {snapshot.prefix}: object {name!r}: {exc}") from None
    if not plan:
        raise RestoreRefused(f"snapshot {snapshot.prefix} holds no training data")
    plan = _files_to_write(plan, overwrite, "warehouse file(s) exist with other content")
    for path, data in plan:
        write_bytes_atomic(path, data)
    return [uri_of(path) for path, _ in plan]


# Tables whose rows are the platform's history (Dagster's runs and event log, MLflow's runs and
# models). Opening a database with Dagster or MLflow creates the schema and a few bookkeeping rows;
# that is not data a restore may destroy.
CONTENT_TABLES = ("runs", "event_logs", "registered_models")


def live_rows(url: str) -> int:
    """Rows in the database's content tables (0 for an empty or freshly initialised database)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(psycopg2_url(url))
    try:
        with engine.connect() as connection:
            present = set(sqlalchemy.inspect(connection).get_table_names())
            return sum(
                connection.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in CONTENT_TABLES
                if table in present
            )
    finally:
        engine.dispose()


def snapshots_to_expire(
    snapshots: list[Snapshot], keep_daily: int, keep_weekly: int, now: dt.datetime
) -> list[Snapshot]:
    """Metadata snapshots outside the retention: kept are the newest of each of the last
    ``keep_daily`` days and of each of the last ``keep_weekly`` ISO weeks (UTC), and always the
    newest of all. Model snapshots are never expired (a version that served stays restorable)."""
    metadata = sorted((s for s in snapshots if s.kind == "metadata"), key=lambda s: s.created)
    if not metadata:
        return []
    keep = {metadata[-1].prefix}
    newest_of_day: dict[dt.date, Snapshot] = {}
    newest_of_week: dict[tuple[int, int], Snapshot] = {}
    for snapshot in metadata:  # oldest first: later ones replace earlier ones
        created = dt.datetime.fromisoformat(snapshot.created)
        newest_of_day[created.date()] = snapshot
        newest_of_week[created.isocalendar()[:2]] = snapshot
    today = now.date()
    keep |= {s.prefix for day, s in newest_of_day.items() if (today - day).days < keep_daily}
    this_week = dt.date.fromisocalendar(*today.isocalendar()[:2], 1)
    keep |= {
        s.prefix
        for (year, week), s in newest_of_week.items()
        if (this_week - dt.date.fromisocalendar(year, week, 1)).days // 7 < keep_weekly
    }
    return [s for s in metadata if s.prefix not in keep]
