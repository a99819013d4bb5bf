"""Benchmark: full backup and full restore of the demo's state, on local disk and on S3 (moto's
server), per component, against a plain copy of the same bytes (the floor).

The demo's state is built once (``churn-platform demo``'s steps on generated data, which end with
a model snapshot, a metadata backup and a restore drill). Then, for each store:
- backup: the metadata snapshot (Dagster instance + MLflow store, SQLite online copies, write-once
  objects with a manifest; on S3 with Object Lock) and the model snapshot (the registered version's
  files and the training data behind it);
- restore: every object of both snapshots verified and written into an empty directory;
- floor: the same bytes copied without the platform (shutil / one boto3 put and get per object).
Prints seconds, bytes and the ratio to the floor per component, the peak RSS, and writes
bench/results/restore.{json,md}.

    .venv/bin/python bench/restore.py [--days 120] [--customers 1000] [--smoke]

``--smoke``: 100 days x 200 customers, results to a temporary directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import add_smoke_flag, write_results
from churn_platform.backups.catalog import list_snapshots, read_verified, restore_snapshot
from churn_platform.backups.resources import BackupStore
from churn_platform.cli.demo import DemoPlan, run_demo
from churn_platform.definitions import build_definitions
from churn_platform.resources import build_resources
from churn_platform.settings import load_settings
from churn_platform.storage.connection import ObjectStoreConnection
from churn_platform.synthetic.generator import generate
from churn_platform.synthetic.writer import write_generated
from churn_platform_tests.support import servers

START = dt.date(2026, 1, 1)


def build_state(
    root: Path, days: int, customers: int, gate: dict | None
) -> tuple[object, object, dict[str, float]]:
    environ = {
        "CHURN_DATA_DIR": str(root / "data"),
        "CHURN_BACKUP_DIR": str(root / "backups"),
        "CHURN_START_DATE": START.isoformat(),
    }
    settings = load_settings(environ)
    landing = build_resources(settings)["landing_zone"]
    data = generate(START, days=days, customers=customers, seed=7)
    write_generated(data, landing, settings.storage.crm_export_path, landing.connection)
    defs = build_definitions(settings)
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        timings = run_demo(defs, instance, DemoPlan.for_days(START, days), gate=gate)
    return defs, settings, timings


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def copy_snapshots(source: BackupStore, target: BackupStore) -> dict[str, float]:
    """Write every object of the source's snapshots through the target's write-once path."""
    seconds = {}
    for snapshot in list_snapshots(source):
        contents, problems = read_verified(source, snapshot)
        assert not problems, problems
        manifest = source.read(f"{snapshot.prefix}/manifest.json")
        started = time.perf_counter()
        target.ensure_protected()
        for name, data in contents.items():
            target.write_once(f"{snapshot.prefix}/{name}", data)
        target.write_once(f"{snapshot.prefix}/manifest.json", manifest)
        seconds[snapshot.kind] = time.perf_counter() - started
    return seconds


def restore_all(store: BackupStore, scratch: Path) -> dict[str, dict]:
    """Restore the newest snapshot of each kind (the demo leaves one of each)."""
    results = {}
    for snapshot in {s.kind: s for s in list_snapshots(store)}.values():
        target = scratch / snapshot.prefix.replace("/", "_")
        folders = (
            ("model", "training")
            if snapshot.kind == "model"
            else ("dagster", "mlflow/db", "mlflow/artifacts")
        )
        seconds, written = timed(
            lambda s=snapshot, t=target, f=folders: restore_snapshot(store, s, {x: t / x for x in f})
        )
        results[snapshot.kind] = {"seconds": seconds, "files": len(written), "bytes": snapshot.bytes}
    return results


def floor_local(store_dir: Path, scratch: Path) -> float:
    seconds, _ = timed(lambda: shutil.copytree(store_dir, scratch / "floor"))
    return seconds


def floor_s3(client, bucket: str, local_dir: Path) -> tuple[float, float]:
    files = [p for p in local_dir.rglob("*") if p.is_file()]
    put, _ = timed(
        lambda: [
            client.put_object(Bucket=bucket, Key=f"floor/{p.relative_to(local_dir)}", Body=p.read_bytes())
            for p in files
        ]
    )
    get, _ = timed(
        lambda: [
            client.get_object(Bucket=bucket, Key=f"floor/{p.relative_to(local_dir)}")["Body"].read()
            for p in files
        ]
    )
    return put, get


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--customers", type=int, default=1000)
    add_smoke_flag(parser)
    args = parser.parse_args()
    days, customers = (100, 200) if args.smoke else (args.days, args.customers)

    with tempfile.TemporaryDirectory(prefix="bench-restore-") as tmp:
        root = Path(tmp)
        build_seconds, (defs, settings, timings) = timed(
            # A smoke-size model is weak: let it through the gate so that there is a model snapshot.
            lambda: build_state(
                root, days, customers, {"min_roc_auc": 0.5, "min_pr_auc_lift": 1.0} if args.smoke else None
            )
        )
        local = defs.resources["backup_store"]
        snapshots = {s.kind: s for s in list_snapshots(local)}
        assert set(snapshots) == {"model", "metadata"}, snapshots
        rows = []
        # Backup writes through the same write-once path for both stores: into a fresh local store here.
        local_copy = BackupStore(base_path=str(root / "backups_copy"))
        local_write = copy_snapshots(local, local_copy)
        local_restore = restore_all(local, root / "restored_local")
        local_floor = floor_local(Path(settings.storage.backup_dir), root)
        for kind, r in local_restore.items():
            rows.append(("local", kind, r["files"], r["bytes"], local_write.get(kind), r["seconds"]))

        s3 = servers.start_s3()
        try:
            bucket = s3.new_bucket(versioned=True, object_lock=True)
            connection = ObjectStoreConnection(
                endpoint_url=s3.endpoint,
                region="us-east-1",
                access_key_id="testing",
                secret_access_key="testing",
            )
            remote = BackupStore(
                base_path=f"s3://{bucket}/churn-platform",
                connection=connection,
                lock_mode="GOVERNANCE",
                archive_after_days=90,
            )
            write_seconds = copy_snapshots(local, remote)
            remote_restore = restore_all(remote, root / "restored_s3")
            s3_put, s3_get = floor_s3(s3.client(), bucket, Path(settings.storage.backup_dir))
            for kind, r in remote_restore.items():
                rows.append(
                    ("s3 (moto)", kind, r["files"], r["bytes"], write_seconds.get(kind), r["seconds"])
                )
        finally:
            s3.server.stop()

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = {store: sum(r[5] for r in rows if r[0] == store) for store in ("local", "s3 (moto)")}
    snapshots = sorted(snapshots)
    floors = {"local": local_floor, "s3 (moto)": s3_get}
    lines = [
        f"# Backup and restore of the demo's state ({days} days x {customers} customers)",
        "",
        f"Building the state (generate + the demo's jobs): {build_seconds:.1f} s, of which "
        f"`metadata_backup_job` (SQLite online copies + write-once objects, then the restore drill): "
        f"{timings['metadata_backup_job']:.2f} s.",
        "",
        "| store | snapshot | files | bytes | backup write: write-once objects (s) | restore: verify + write (s) |",
        "|---|---|---|---|---|---|",
    ]
    for store, kind, files, size, write, restore in rows:
        lines.append(f"| {store} | {kind} | {files} | {size:,} | {write:.2f} | {restore:.2f} |")
    lines += [
        "",
        "| store | full restore (s) | floor: plain copy of the same bytes (s) | ratio |",
        "|---|---|---|---|",
    ]
    for store in total:
        ratio = total[store] / floors[store] if floors[store] else float("nan")
        lines.append(f"| {store} | {total[store]:.2f} | {floors[store]:.2f} | {ratio:.1f}x |")
    lines += [
        "",
        f"S3 floor write (plain put_object per file): {s3_put:.2f} s. Peak RSS: {peak_mb:.0f} MB.",
        "",
    ]
    results = {
        "days": days,
        "customers": customers,
        "build_seconds": build_seconds,
        "metadata_job_seconds": timings["metadata_backup_job"],
        "rows": [
            dict(
                zip(
                    ("store", "snapshot", "files", "bytes", "write_seconds", "restore_seconds"),
                    r,
                    strict=True,
                )
            )
            for r in rows
        ],
        "full_restore_seconds": total,
        "floor_seconds": floors,
        "s3_floor_put_seconds": s3_put,
        "peak_rss_mb": peak_mb,
        "snapshots": sorted(snapshots),
    }
    write_results("restore", results, "\n".join(lines), smoke=args.smoke)


if __name__ == "__main__":
    main()
