"""Benchmark: the daily-activity feature aggregation on each engine, on ~10M interaction events.

Cases, each in a fresh process (so peak memory is its own), on the same Parquet input:
  1. platform_duckdb  - the platform's path: the feature SQL on the embedded engine (DuckDB),
                        scanning the day files the IO manager hands over (ParquetFiles); then
                        also timed with writing the result through ParquetIOManager
  1b. platform_duckdb_via_pandas - the earlier path: partitions loaded into pandas first
  2. platform_spark   - the same feature SQL on Spark local[2] through dagster-pyspark, Spark
                        scanning the files and writing the day files itself; cold (session
                        start included) and warm (second run in the same session)
  3. pandas           - a hand-written pandas groupby, the manual-script approach
  4. duckdb_raw       - one DuckDB SQL query straight on the Parquet files: the practical floor
Writes bench/results/features.{json,md}.

    .venv/bin/python bench/features.py [--events 10000000] [--days 60] [--smoke]

``--smoke``: 20,000 events over 3 days, every case (Spark included), results to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import add_smoke_flag, write_results  # noqa: E402 - the repository root is on the path first

EVENT_TYPES = np.array(
    ["login", "page_view", "feature_use", "support_visit", "purchase", "cancel_subscription"]
)
EVENT_P = np.array([0.2, 0.45, 0.25, 0.05, 0.049, 0.001])


def make_input(directory: Path, events: int, days: int, customers: int = 200_000) -> None:
    rng = np.random.default_rng(0)
    per_day = events // days
    for day in range(days):
        date = pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=day)
        customer = rng.integers(1, customers, per_day)
        etype = rng.choice(EVENT_TYPES, per_day, p=EVENT_P)
        offsets = rng.integers(0, 86_400, per_day)
        frame = pd.DataFrame(
            {
                "event_date": np.full(per_day, date.date(), dtype=object),
                "customer_id": customer,
                "event_type": etype,
                "timestamp": (date + pd.to_timedelta(offsets, unit="s")).astype("datetime64[us, UTC]"),
                "session_id": pd.Series(customer.astype(str))
                + "-"
                + pd.Series((offsets // 10_800).astype(str)),
                "plan": rng.choice(["basic", "pro", "enterprise"], per_day),
                "amount": np.where(etype == "purchase", rng.lognormal(3, 0.6, per_day), np.nan),
                "properties": "{}",
            }
        )
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False),
            directory / f"{date.date()}.parquet",
            coerce_timestamps="us",
        )
    tickets = max(1, events // 2000)
    sentiment = pd.DataFrame(
        {
            "ticket_id": np.arange(tickets),
            "customer_id": rng.integers(1, customers, tickets),
            "updated_date": (
                pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, days, tickets), unit="D")
            ).date,
            "sentiment": rng.uniform(-1, 1, tickets),
            "sentiment_label": "neutral",
        }
    )
    pq.write_table(pa.Table.from_pandas(sentiment, preserve_index=False), directory / "sentiment.parquet")


def load_inputs(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = sorted(p for p in directory.glob("2026-*.parquet"))
    logs = pd.concat([pq.read_table(p).to_pandas() for p in files], ignore_index=True)
    return logs, pq.read_table(directory / "sentiment.parquet").to_pandas()


def log_files(directory: Path):
    """The day files as ParquetIOManager hands them to the feature asset."""
    from upath import UPath

    from churn_platform.orchestration import asset_keys as keys
    from churn_platform.storage.parquet_files import ParquetFiles

    return ParquetFiles(
        keys.INTERACTION_LOGS.to_user_string(),
        tuple(UPath(str(p)) for p in sorted(directory.glob("2026-*.parquet"))),
    )


def write_activity(directory: Path, result: object) -> None:
    """Store the result as the asset's IO manager does: one file per day."""
    from churn_platform.orchestration import asset_keys as keys
    from churn_platform.storage.parquet_io_manager import ParquetIOManager

    manager = ParquetIOManager(base_path=str(directory / f"warehouse-{time.monotonic_ns()}"))
    partition_keys = sorted(p.stem for p in directory.glob("2026-*.parquet"))
    manager.write_partitions(keys.CUSTOMER_DAILY_ACTIVITY, partition_keys, result, "activity_date")


def case_platform_duckdb(directory: Path) -> dict:
    from churn_platform.engines.duckdb import DuckDBEngine
    from churn_platform.features.activity import compute_daily_activity

    started = time.perf_counter()
    sentiment = pq.read_table(directory / "sentiment.parquet").to_pandas()
    result = compute_daily_activity(log_files(directory), sentiment, DuckDBEngine().query_table)
    computed = time.perf_counter() - started
    write_activity(directory, result)
    return {
        "seconds": computed,
        "with_write_seconds": time.perf_counter() - started,
        "rows": result.num_rows,
        "events": pq.ParquetDataset(log_files(directory).uris).read(columns=[]).num_rows,
    }


def case_platform_duckdb_via_pandas(directory: Path) -> dict:
    """The previous path, for comparison: the partitions loaded into pandas first, then DuckDB."""
    from churn_platform.engines.duckdb import DuckDBEngine
    from churn_platform.features.activity import compute_daily_activity

    started = time.perf_counter()
    logs, sentiment = load_inputs(directory)
    rows = len(compute_daily_activity(logs, sentiment, DuckDBEngine().query_pandas))
    return {"seconds": time.perf_counter() - started, "rows": rows, "events": len(logs)}


def case_platform_spark(
    directory: Path, iterations: int = 2, shuffle_partitions: int = 8, extra_config: dict | None = None
) -> dict:
    from dagster_pyspark import LazyPySparkResource

    from churn_platform.engines.spark import SparkEngine, spark_config
    from churn_platform.features.activity import compute_daily_activity

    jvm_peak = watch_child_memory()
    started = time.perf_counter()
    engine = SparkEngine(
        pyspark=LazyPySparkResource(
            spark_config={**spark_config("local[2]", shuffle_partitions, "8g"), **(extra_config or {})}
        )
    )
    engine.pyspark.spark_session  # noqa: B018  (start the session)
    session_start = time.perf_counter() - started
    sentiment = pq.read_table(directory / "sentiment.parquet").to_pandas()
    runs = []
    for _ in range(iterations):  # cold, then warm (JIT, caches)
        began = time.perf_counter()
        # query_table: the engine-native result (a SparkTable), as the feature asset gets it.
        result = compute_daily_activity(log_files(directory), sentiment, engine.query_table)
        result.frame.write.format("noop").mode("overwrite").save()  # the whole query, no output
        computed = time.perf_counter() - began
        began = time.perf_counter()  # again, this time written: Spark writes the day files itself
        write_activity(directory, compute_daily_activity(log_files(directory), sentiment, engine.query_table))
        runs.append((computed, time.perf_counter() - began))
    rows = result.frame.count()
    engine.pyspark.spark_session.stop()
    return {
        "seconds": runs[-1][0],
        "with_write_seconds": runs[-1][1],
        "cold_seconds": session_start + runs[0][0],
        "session_start_seconds": session_start,
        "rows": rows,
        "jvm_peak_rss_mb": jvm_peak[0] / 2**20,
    }


def watch_child_memory() -> list[int]:
    """Peak RSS in bytes of this process's descendants (the Spark JVM), sampled from /proc."""
    import threading

    def descendants_rss() -> int:
        parents, rss = {}, {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                parents[int(stat.parent.name)] = int(fields[1])
                rss[int(stat.parent.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
        family = {os.getpid()}
        for _ in range(4):  # spark-submit -> java: a few generations
            family |= {pid for pid, parent in parents.items() if parent in family}
        return sum(rss[pid] for pid in family - {os.getpid()})

    peak = [0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], descendants_rss())
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    return peak


def case_pandas(directory: Path) -> dict:
    """A reasonably written manual script: groupby/unstack, categorical keys, no Python loops."""
    started = time.perf_counter()
    logs, sentiment = load_inputs(directory)
    keys = [logs["customer_id"], logs["event_date"]]
    counts = logs.groupby(keys + [logs["event_type"]], sort=False).size().unstack(fill_value=0)
    grouped = logs.groupby(keys, sort=False)
    activity = pd.DataFrame(
        {
            "events": grouped.size(),
            "sessions": grouped["session_id"].nunique(),
            "spend": logs["amount"]
            .where(logs["event_type"] == "purchase", 0.0)
            .groupby(keys, sort=False)
            .sum(),
            "plan": logs.sort_values("timestamp")
            .groupby(["customer_id", "event_date"], sort=False)["plan"]
            .last(),
        }
    ).join(counts)
    tickets = sentiment.groupby(["customer_id", "updated_date"]).agg(
        tickets=("ticket_id", "size"), mean_sentiment=("sentiment", "mean")
    )
    tickets.index.names = ["customer_id", "event_date"]
    result = activity.join(tickets, how="outer")
    return {"seconds": time.perf_counter() - started, "rows": len(result), "events": len(logs)}


def case_duckdb_raw(directory: Path) -> dict:
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect(config={"threads": 2})
    rows = (
        con.sql(f"""
        SELECT customer_id, event_date, COUNT(*) AS events,
               SUM(CASE WHEN event_type = 'login' THEN 1 ELSE 0 END) AS logins,
               SUM(CASE WHEN event_type = 'page_view' THEN 1 ELSE 0 END) AS page_views,
               SUM(CASE WHEN event_type = 'feature_use' THEN 1 ELSE 0 END) AS feature_uses,
               SUM(CASE WHEN event_type = 'support_visit' THEN 1 ELSE 0 END) AS support_visits,
               SUM(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
               SUM(CASE WHEN event_type = 'cancel_subscription' THEN 1 ELSE 0 END) AS cancellations,
               COUNT(DISTINCT session_id) AS sessions,
               SUM(CASE WHEN event_type = 'purchase' THEN amount ELSE 0 END) AS spend,
               MAX_BY(plan, "timestamp") AS plan
        FROM read_parquet('{directory}/2026-*.parquet') GROUP BY customer_id, event_date
    """)
        .to_arrow_table()
        .num_rows
    )
    return {"seconds": time.perf_counter() - started, "rows": rows}


CASES = {
    "platform_duckdb": case_platform_duckdb,
    "platform_duckdb_via_pandas": case_platform_duckdb_via_pandas,
    "platform_spark": case_platform_spark,
    "pandas": case_pandas,
    "duckdb_raw": case_duckdb_raw,
}

# A smoke run's Spark case: the cold run only, on fewer shuffle partitions (the data is tiny), with
# the JVM's quick (C1-only) JIT, which halves a cold query's time on tiny data.
SMOKE_OPTIONS = {
    "platform_spark": {
        "iterations": 1,
        "shuffle_partitions": 2,
        "extra_config": {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"},
    }
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--case", choices=CASES)
    parser.add_argument("--input")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.events, args.days = 20_000, 3
    if args.case:  # a child process: run one case, report it and its peak memory
        options = SMOKE_OPTIONS.get(args.case, {}) if args.smoke else {}
        result = CASES[args.case](Path(args.input), **options)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        make_input(directory, args.events, args.days)
        results = {}
        for case in (
            "duckdb_raw",
            "platform_duckdb",
            "platform_duckdb_via_pandas",
            "pandas",
            "platform_spark",
        ):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--case",
                    case,
                    "--input",
                    tmp,
                    *(["--smoke"] if args.smoke else []),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            if out.returncode:
                sys.stderr.write(out.stderr)
                raise SystemExit(f"case {case} failed with exit status {out.returncode} (its stderr above)")
            results[case] = json.loads(
                next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:]
            )
            print(case, results[case], flush=True)
    floor = results["duckdb_raw"]["seconds"]
    events = results["platform_duckdb"]["events"]
    rows = [
        ("4. raw DuckDB query on the Parquet files (floor)", "duckdb_raw", "seconds"),
        ("1. platform, embedded engine (DuckDB scans the partition files)", "platform_duckdb", "seconds"),
        (f"1. the same, plus writing the {args.days} day files", "platform_duckdb", "with_write_seconds"),
        (
            "1b. previous platform path: partitions loaded into pandas, then DuckDB",
            "platform_duckdb_via_pandas",
            "seconds",
        ),
        ("3. hand-written pandas", "pandas", "seconds"),
        ("2. platform on Spark local[2], warm", "platform_spark", "seconds"),
        (
            f"2. the same, plus Spark writing the {args.days} day files itself",
            "platform_spark",
            "with_write_seconds",
        ),
        ("2. platform on Spark local[2], cold (incl. session start)", "platform_spark", "cold_seconds"),
    ]
    lines = [
        (
            f"Daily-activity aggregation of {events:,} events into per-customer-per-day rows "
            f"({results['platform_duckdb']['rows']:,} rows):"
        ),
        "",
        "| case | seconds | events/s | x floor | peak RSS (MB) |",
        "|---|---|---|---|---|",
    ]
    for label, case, field in rows:
        seconds = results[case][field]
        memory = f"{results[case]['peak_rss_mb']:,.0f}"
        if "jvm_peak_rss_mb" in results[case]:
            memory += f" + JVM {results[case]['jvm_peak_rss_mb']:,.0f}"
        lines.append(
            f"| {label} | {seconds:.1f} | {events / seconds:,.0f} | {seconds / floor:.2f} | {memory} |"
        )
    lines.append("")
    lines.append(
        f"Spark session start: {results['platform_spark']['session_start_seconds']:.1f} s. "
        "Spark timings run the whole query (a `noop` sink) unless they say they write. Peak RSS: the "
        "case's Python process, plus for Spark the JVM's peak (sampled every 0.2 s)."
    )
    write_results("features", {"events": events, "cases": results}, "\n".join(lines) + "\n", smoke=args.smoke)


if __name__ == "__main__":
    main()
