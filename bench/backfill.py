"""Backfilling 90 and 365 days of the raw and feature assets through a real `dagster dev`:
single-run backfill policies (`churn-platform backfill`, an asset backfill as the UI launches it)
against one run per partition (`dagster job backfill`, which submits a run per partition), in one
run of the script, on the same data and instance.

    .venv/bin/python bench/backfill.py [--customers 200] [--sizes 90,365] [--smoke]

``--smoke``: 2 days of 20 customers, results to a temporary directory; most of its time is
`dagster dev` starting and the backfill daemon's 30 s loop. To spare one loop, a smoke run checks
the asset backfill's COMPLETED status at the end instead of before the second case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import add_smoke_flag, write_results  # noqa: E402


def last_run_end(instance, backfill_id: str) -> float:
    import dagster as dg

    records = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    return max(r.end_time for r in records)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--sizes", default="90,365")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.customers, args.sizes = 20, "2"
    sizes = [int(s) for s in args.sizes.split(",")]

    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from churn_platform.definitions import build_assets
    from churn_platform.orchestration.backfills import launch_backfill, wait_for_backfill
    from churn_platform.orchestration.jobs import daily_ingestion_job
    from churn_platform.orchestration.partitions import build_partitions
    from churn_platform.resources import build_resources
    from churn_platform.settings import load_settings
    from churn_platform.synthetic.generator import generate
    from churn_platform.synthetic.writer import write_generated
    from churn_platform_tests.support.stack import BIN, DagsterDev, wait_until

    days = max(sizes)
    last = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    first = last - dt.timedelta(days=days - 1)
    root = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    env = {"CHURN_DATA_DIR": str(root / "data"), "CHURN_START_DATE": first.isoformat()}
    settings = load_settings(env)
    zone = build_resources(settings)["landing_zone"]
    stats = write_generated(
        generate(first, days=days, customers=args.customers, seed=2),
        zone,
        settings.storage.crm_export_path,
        None,
    )
    print(f"generated {days} days for {args.customers} customers: {stats}", flush=True)

    # The assets of daily_ingestion_job (raw, enriched and feature groups), in lineage order: the
    # asset backfill and the per-partition job backfill cover the same assets.
    assets = build_assets(build_partitions(settings))
    selected = daily_ingestion_job.selection.resolve(assets)
    keys = [k for a in assets for k in a.keys if k in selected]
    results, unchecked = [], []

    dev = DagsterDev(root / "dagster_home", env)
    try:  # whatever fails, even while it starts, stops `dagster dev` and everything it started
        dev.start()
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dev.home)))
        for size in sizes:
            # From the first partition: rolling features need the 29 days before a range.
            partitions = [(first + dt.timedelta(days=n)).isoformat() for n in range(size)]

            # Both cases: from the launch to the end of the last run (the data is there); the
            # backfill's own COMPLETED status comes up to one daemon loop (30 s) later.
            started = time.time()
            backfill_id = launch_backfill(dev.url, keys, partitions[0], partitions[-1])
            if args.smoke:  # its runs finished is enough for now; the status is checked at the end
                backfill_filter = dg.RunsFilter(tags={"dagster/backfill": backfill_id})
                wait_until(
                    lambda f=backfill_filter: (
                        (runs := instance.get_runs(filters=f)) and all(r.is_finished for r in runs)
                    ),
                    600,
                    "the asset backfill's runs",
                    interval=1,
                )
                unchecked.append(backfill_id)
            else:
                wait_for_backfill(dev.url, backfill_id, timeout_seconds=3600, poll_seconds=1)
            single = last_run_end(instance, backfill_id) - started
            single_runs = len(
                instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            )
            print(f"  {size} days, single-run policy: {single:.1f} s in {single_runs} runs", flush=True)

            started = time.time()
            out = subprocess.run(
                [
                    str(BIN / "dagster"),
                    "job",
                    "backfill",
                    "-w",
                    str(ROOT / "workspace.yaml"),
                    "-j",
                    daily_ingestion_job.name,
                    "--partitions",
                    ",".join(partitions),
                    "--noprompt",
                ],
                cwd=dev.home,  # not the repository, whose ./.env Dagster would load
                env=dev.env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            job_backfill = re.search(r"Launched backfill job `([^`]+)`", out).group(1)
            run_filter = dg.RunsFilter(tags={"dagster/backfill": job_backfill})
            wait_until(
                lambda run_filter=run_filter: all(
                    r.is_finished for r in instance.get_runs(filters=run_filter)
                ),
                4 * 3600,
                "the per-partition runs",
                interval=2,
            )
            per_partition = last_run_end(instance, job_backfill) - started
            runs = instance.get_runs(filters=run_filter)
            failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
            assert not failed, f"{len(failed)} per-partition runs failed, e.g. {failed[0]}"
            print(
                f"  {size} days, one run per partition: {per_partition:.1f} s in {len(runs)} runs "
                f"({per_partition / single:.1f}x)",
                flush=True,
            )
            results.append(
                {
                    "days": size,
                    "single_run_seconds": single,
                    "single_run_runs": single_runs,
                    "per_partition_seconds": per_partition,
                    "per_partition_runs": len(runs),
                    "speedup": per_partition / single,
                }
            )
        for backfill_id in unchecked:  # smoke: now that the daemon has looped again
            wait_for_backfill(dev.url, backfill_id, timeout_seconds=120, poll_seconds=1)
    finally:
        dev.stop()
    if args.smoke:  # a full run keeps its instance and logs for a look afterwards
        shutil.rmtree(root, ignore_errors=True)

    lines = [
        "# Backfill: single-run policy against one run per partition",
        "",
        f"`python bench/backfill.py`: raw tickets and logs, sentiment, daily activity and rolling customer "
        f"features ({len(keys)} assets) for {args.customers} customers, through a real `dagster dev` "
        "(SQLite instance, at most 2 concurrent runs, in-process executor). Single-run: "
        "`churn-platform backfill` (asset backfill, the assets' `BackfillPolicy.single_run()`); per "
        "partition: `dagster job backfill -j daily_ingestion_job` (one queued run per day).",
        "",
        "| days | single-run policy | runs | one run per partition | runs | speed-up |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['days']} | {r['single_run_seconds']:.0f} s | {r['single_run_runs']} | "
            f"{r['per_partition_seconds']:.0f} s | {r['per_partition_runs']} | {r['speedup']:.1f}x |"
            for r in results
        ),
        "",
    ]
    write_results(
        "backfill",
        {"customers": args.customers, "assets": [k.to_user_string() for k in keys], "results": results},
        "\n".join(lines),
        smoke=args.smoke,
    )


if __name__ == "__main__":
    main()
