"""Benchmark: parsing interaction logs (raw/interaction_logs' reading and validation) against the
floor of a bare DuckDB `read_json` of the same files with the same columns, side by side in one run.

Generates the landing files (``churn-platform generate``'s code), then times, on the same files:
- floor: one DuckDB query, `read_json` of every file with the four fields typed, to Arrow;
- platform: `parse_landing_files` over the whole range, as the asset reads it (one multi-threaded
  query that parses, types and validates every rule, to Arrow);
- the per-file parser the platform uses only to locate a bad line (what every day went through
  before), for reference.
Prints seconds, events/s, the ratio to the floor and the peak RSS of each (each measured in a
fresh process, so one does not inherit the other's memory), and writes bench/results/parsing.{json,md}.

    .venv/bin/python bench/parsing.py [--days 120] [--customers 20000] [--smoke]

``--smoke``: 3 days x 300 customers, results to a temporary directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import add_smoke_flag, write_results

START = dt.date(2026, 1, 1)
REPEAT = 3  # runs per reader, in one process: the median is reported (and the best)
# The floor reads the same four fields with their final types (what the issue measured: "same typed
# columns"); the platform also extracts three properties, checks every rule and keeps the day.
COLUMNS = "{customer_id: 'BIGINT', event_type: 'VARCHAR', timestamp: 'TIMESTAMPTZ', properties: 'JSON'}"


def measure(kind: str, landing: str, days: int) -> dict:
    """One reader, REPEAT times, in this (fresh) process."""
    from churn_platform.logs.landing_zone import LandingZone

    zone = LandingZone(base_path=landing)
    dates = [(START + dt.timedelta(days=d)).isoformat() for d in range(days)]
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        rows = read_once(kind, zone, dates)
        times.append(time.perf_counter() - started)
    return {
        "seconds": statistics.median(times),
        "best_seconds": min(times),
        "runs": times,
        "rows": rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def read_once(kind: str, zone, dates: list[str]) -> int:
    from churn_platform.logs.parsing import combine_logs, parse_landing_files, parse_log_file

    if kind == "floor":
        import duckdb

        files = [str(f) for date in dates for f in zone.files_for(date)]
        with duckdb.connect() as con:
            query = f"SELECT * FROM read_json({files!r}, format = 'newline_delimited', columns = {COLUMNS})"
            return con.sql(query).to_arrow_table().num_rows
    if kind == "platform":  # as raw/interaction_logs reads a range: every day's files, one query
        return parse_landing_files({date: zone.files_for(date) for date in dates}).num_rows
    return sum(  # the per-file parser
        len(combine_logs([parse_log_file(str(f), f.read_bytes(), date) for f in zone.files_for(date)]))
        for date in dates
    )


def generate_landing(landing: str, days: str, customers: str) -> None:
    from churn_platform.logs.landing_zone import LandingZone
    from churn_platform.synthetic.generator import generate
    from churn_platform.synthetic.writer import write_generated

    data = generate(START, days=int(days), customers=int(customers), seed=7)
    write_generated(data, LandingZone(base_path=landing), str(Path(landing).parent / "crm.jsonl"), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--measure", nargs=3, metavar=("KIND", "LANDING", "DAYS"), help=argparse.SUPPRESS)
    parser.add_argument("--landing", help="reuse a landing zone generated with the same --days/--customers")
    parser.add_argument(
        "--generate", nargs=3, metavar=("LANDING", "DAYS", "CUSTOMERS"), help=argparse.SUPPRESS
    )
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.generate:
        generate_landing(*args.generate)
        return
    if args.measure:
        kind, landing, days = args.measure
        print(json.dumps(measure(kind, landing, int(days))))
        return
    if args.smoke:
        args.days, args.customers = 3, 300

    root = Path(tempfile.mkdtemp(prefix="bench-parsing-"))
    landing = args.landing or str(root / "landing")
    started = time.perf_counter()
    # In its own process: this one stays small, so the measurements' peak RSS is theirs alone
    # (Linux keeps a process's peak RSS across fork and exec).
    if not args.landing:
        subprocess.run(
            [sys.executable, __file__, "--generate", landing, str(args.days), str(args.customers)], check=True
        )
    generated = time.perf_counter() - started
    size = sum(f.stat().st_size for f in Path(landing).rglob("*.jsonl"))
    results: dict = {
        "days": args.days,
        "customers": args.customers,
        "bytes": size,
        "generate_seconds": generated,
    }
    kinds = ["floor", "platform", "per-file parser"]
    for kind in kinds:
        output = subprocess.run(
            [sys.executable, __file__, "--measure", kind, landing, str(args.days)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results[kind] = json.loads(output.strip().splitlines()[-1])
    events = results["floor"]["rows"]
    assert results["platform"]["rows"] == results["per-file parser"]["rows"] == events, results
    floor = results["floor"]["seconds"]
    lines = [
        f"{args.days} days x {args.customers:,} customers: {events:,} events in "
        f"{sum(1 for _ in Path(landing).rglob('*.jsonl'))} files, {size / 2**20:,.0f} MiB "
        f"(generated in {generated:.1f} s).",
        "",
        f"| reader | seconds, median of {REPEAT} (best) | events/s | vs floor (medians) | vs floor (best runs) | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        r = results[kind]
        lines.append(
            f"| {kind} | {r['seconds']:.2f} ({r['best_seconds']:.2f}) | {events / r['seconds']:,.0f} | "
            f"{r['seconds'] / floor:.2f}x | {r['best_seconds'] / results['floor']['best_seconds']:.2f}x | "
            f"{r['peak_rss_mb']:,.0f} MB |"
        )
    lines += [
        "",
        "floor: one DuckDB `read_json` of every file with the four fields typed (BIGINT, VARCHAR, TIMESTAMPTZ, "
        "JSON), to Arrow. platform: "
        "`parse_landing_files` over the range (parse, type, extract properties, validate every rule; "
        "Arrow). per-file parser: the line-locating fallback (the previous reader). Each measured in a "
        "fresh process (peak RSS is that process's).",
        "",
    ]
    write_results("parsing", results, "\n".join(lines), smoke=args.smoke)


if __name__ == "__main__":
    main()
