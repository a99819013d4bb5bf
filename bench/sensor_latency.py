"""Landing sensor: how long from a file landing to its run being requested, started, and the
partition materialized, at the configured interval (a real `dagster dev`, local landing zone);
and what one sensor tick costs on S3 (moto's server) as the bucket grows, against a listing of
the whole prefix (dagster-aws `get_objects`), in one run.

    .venv/bin/python bench/sensor_latency.py [--samples 10] [--customers 200] [--smoke]

``--smoke``: one landed day of 20 customers, a 1 s sensor interval and a small bucket (3 and 6
days of 2 files), results to a temporary directory; most of its time is `dagster dev` starting
and one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import add_smoke_flag, write_results  # noqa: E402

LANDING_SENSOR = "interaction_logs_landing_sensor"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def latency(samples: int, customers: int, smoke: bool = False) -> dict:
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from churn_platform.orchestration import asset_keys as keys
    from churn_platform.resources import build_resources
    from churn_platform.settings import load_settings
    from churn_platform.synthetic.generator import generate
    from churn_platform.synthetic.writer import write_generated
    from churn_platform_tests.support.stack import DagsterDev, wait_until

    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=samples)
    root = Path(tempfile.mkdtemp(prefix="bench-sensor-"))
    env = {
        "CHURN_DATA_DIR": str(root / "data"),
        "CHURN_START_DATE": first.isoformat(),
        "CHURN_AUTOMATION_RUNNING": "1",
        "CHURN_LANDING_LOOKBACK_DAYS": str(samples + 1),
        # A smoke run checks the path, not the latency: tick every second.
        **({"CHURN_LANDING_SENSOR_INTERVAL": "1"} if smoke else {}),
    }
    settings = load_settings(env)
    zone = build_resources(settings)["landing_zone"]
    write_generated(
        generate(first, days=samples, customers=customers, seed=1),
        zone,
        settings.storage.crm_export_path,
        None,
    )
    held = {}
    for n in range(samples):  # everything lands during the measurement
        day = (first + dt.timedelta(days=n)).isoformat()
        held[day] = {p.name: p.read_bytes() for p in zone.files_for(day)}
        for path in zone.files_for(day):
            path.unlink()

    dev = DagsterDev(root / "dagster_home", env)
    rows = []
    try:  # whatever fails, even while it starts, stops `dagster dev` and everything it started
        dev.start()
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dev.home)))
        if not smoke:
            time.sleep(10)  # let the first ticks (empty landing zone) pass
        for day, files in held.items():
            landed = time.time()
            for name, content in files.items():
                zone.write_file(day, name, content.decode())
            runs = wait_until(
                lambda day=day: instance.get_run_records(
                    filters=dg.RunsFilter(
                        tags={"dagster/sensor_name": LANDING_SENSOR, "dagster/partition": day}
                    )
                ),
                120,
                f"the run for {day}",
                interval=0.1,
            )
            run_id = runs[0].dagster_run.run_id
            record = wait_until(
                lambda run_id=run_id: (r := instance.get_run_record_by_id(run_id)) and r.end_time and r,
                180,
                f"the run for {day} to finish",
                interval=0.2,
            )
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS, record.dagster_run.status
            materialized = (
                instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=keys.INTERACTION_LOGS, asset_partitions=[day]),
                    limit=1,
                )
                .records[0]
                .timestamp
            )
            rows.append(
                {
                    "day": day,
                    "requested": record.create_timestamp.timestamp() - landed,
                    "started": record.start_time - landed,
                    "materialized": materialized - landed,
                }
            )
            print(
                f"  {day}: requested {rows[-1]['requested']:.1f} s, started {rows[-1]['started']:.1f} s, "
                f"materialized {rows[-1]['materialized']:.1f} s",
                flush=True,
            )
    finally:
        dev.stop()
    if smoke:  # a full run keeps its instance and logs for a look afterwards
        shutil.rmtree(root, ignore_errors=True)
    summary = {
        stage: {
            "p50": statistics.median(r[stage] for r in rows),
            "p95": percentile([r[stage] for r in rows], 0.95),
        }
        for stage in ("requested", "started", "materialized")
    }
    return {
        "interval_seconds": settings.automation.landing_sensor_interval_seconds,
        "quiet_seconds": settings.automation.landing_quiet_seconds,
        "samples": rows,
        "summary": summary,
    }


def tick_cost(objects_per_day: int, days_list: list[int], lookback: int) -> list[dict]:
    """One tick's listing (the lookback's day prefixes) against a listing of the whole prefix,
    as the bucket grows: the tick should not grow with it."""
    from dagster_aws.s3.sensor import get_objects

    from churn_platform.logs.sensors import detect_changes
    from churn_platform.resources import build_resources
    from churn_platform.settings import load_settings
    from churn_platform_tests.support.servers import start_s3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    server = start_s3()
    rows = []
    try:
        client = server.client()
        bucket = server.new_bucket()
        env = {
            "CHURN_ENV": "s3",
            "CHURN_S3_BUCKET": bucket,
            "CHURN_S3_BACKUP_BUCKET": server.new_bucket(versioned=True, object_lock=True),
            "CHURN_S3_ENDPOINT_URL": server.endpoint,
            "AWS_REGION": "us-east-1",
        }
        settings = load_settings(env)
        zone = build_resources(settings)["landing_zone"]
        prefix = settings.storage.landing_dir.removeprefix(f"s3://{bucket}/") + "/interaction_logs/"
        end = dt.date(2026, 6, 30)
        written = 0
        for total_days in days_list:
            for n in range(written, total_days):
                day = (end - dt.timedelta(days=n)).isoformat()
                for k in range(objects_per_day):
                    client.put_object(
                        Bucket=bucket, Key=f"{prefix}date={day}/part-{k:04d}.jsonl", Body=b"{}\n"
                    )
            written = total_days
            days = [(end - dt.timedelta(days=n)).isoformat() for n in range(lookback)][::-1]
            started = time.perf_counter()
            for _ in range(3):
                detect_changes(zone, days, {})
            tick = (time.perf_counter() - started) / 3
            started = time.perf_counter()
            listed = len(get_objects(bucket, prefix, client=client))
            full = time.perf_counter() - started
            rows.append(
                {"objects": listed, "tick_seconds": tick, "full_listing_seconds": full, "ratio": full / tick}
            )
            print(
                f"  {listed} objects: tick {tick:.3f} s, full listing {full:.3f} s ({full / tick:.1f}x)",
                flush=True,
            )
    finally:
        server.server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--customers", type=int, default=200)
    add_smoke_flag(parser)
    args = parser.parse_args()
    print("landing -> run latency (dagster dev, local landing zone):", flush=True)
    if args.smoke:
        result = latency(samples=1, customers=20, smoke=True)
        per_day, days_list, lookback = 2, [3, 6], 2
    else:
        result = latency(args.samples, args.customers)
        per_day, days_list, lookback = 20, [30, 180, 730], 7
    print(
        f"tick cost on S3 (moto) as the bucket grows, {lookback}-day lookback, {per_day} files a day:",
        flush=True,
    )
    ticks = tick_cost(objects_per_day=per_day, days_list=days_list, lookback=lookback)
    s = result["summary"]
    lines = [
        "# Landing sensor latency and tick cost",
        "",
        f"`python bench/sensor_latency.py`: {len(result['samples'])} days landed one after another into a "
        f"local landing zone watched by a real `dagster dev` (sensor interval {result['interval_seconds']} s, "
        f"quiet period {result['quiet_seconds']} s, run queue polled every 1 s, in-process executor).",
        "",
        "| from a day's files landing to | p50 | p95 |",
        "|---|---|---|",
        *(
            f"| {label} | {s[k]['p50']:.1f} s | {s[k]['p95']:.1f} s |"
            for k, label in (
                ("requested", "run requested by the sensor"),
                ("started", "run started"),
                ("materialized", "partition materialized"),
            )
        ),
        "",
        f"One tick on S3 (moto's server over HTTP): the {lookback} day prefixes of the lookback, against one",
        "listing of the whole `interaction_logs/` prefix (what a `get_objects(since_last_modified=...)`",
        f"sensor does every tick), as the bucket grows at {per_day} files a day:",
        "",
        f"| objects in the bucket | tick ({lookback} prefixes) | whole-prefix listing | ratio |",
        "|---|---|---|---|",
        *(
            f"| {r['objects']} | {r['tick_seconds']:.3f} s | {r['full_listing_seconds']:.3f} s | {r['ratio']:.1f}x |"
            for r in ticks
        ),
        "",
    ]
    write_results(
        "sensor_latency", {"latency": result, "tick_cost": ticks}, "\n".join(lines), smoke=args.smoke
    )


if __name__ == "__main__":
    main()
