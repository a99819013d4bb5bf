"""Benchmark: `churn-platform generate` (the synthetic generator and its writer, issue #14) at two
sizes side by side, to show its rate and that its memory does not grow with the number of days.

For each size (days x customers), each phase runs REPEAT times, every run in a fresh process (so
its peak RSS is its own):
- generate: draw every day (events as columnar arrays) and the tickets, nothing more;
- + encode: also build every landing file's bytes (JSON lines), nothing written;
- end to end: `write_generated(iter_days(...))` into a new landing zone on local disk, what
  `churn-platform generate` does (every file written atomically with fsync, by a background thread
  while the next day is generated, plus the ticket export);
- disk alone: as many files of the same total size written the same way (`write_bytes_atomic`),
  with nothing to generate: the floor the disk sets.
Also times the per-event generator this one replaced (kept in churn_platform_tests/synthetic/reference_generator.py) against the new one
end to end at a small size, for the ratio. Writes bench/results/generator.{json,md}.

    .venv/bin/python bench/generator.py [--days 30 120] [--customers 20000] [--smoke]

``--smoke``: 2 and 4 days x 200 customers (old: 2 days x 100), one run each, results to a
temporary directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import add_smoke_flag, write_results

START = dt.date(2026, 1, 1)
SEED = 7
REPEAT = 3  # runs per phase and size, each in a fresh process: the median is reported (and the best)
PHASES = ("generate", "encode", "write")
OLD_SIZE = (10, 2000)  # days x customers for the old generator: ~75,000 events, ~2 s
PHASE_TITLES = {"generate": "generate", "encode": "+ encode", "write": "end to end (disk)"}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(phase: str, days: int, customers: int) -> dict:
    """One run of ``phase`` in this (fresh) process."""
    from churn_platform.logs.landing_zone import LandingZone
    from churn_platform.synthetic.generator import iter_days
    from churn_platform.synthetic.writer import BATCH_SPLIT_HOUR, write_generated

    imported_rss = peak_rss_mb()  # the imports (dagster among them), before anything is generated
    root = Path(tempfile.mkdtemp(prefix="bench-generator-"))  # local disk (/tmp), not tmpfs
    try:
        started = time.perf_counter()
        events = size = 0
        if phase in ("generate", "encode"):
            stream = iter_days(START, days, customers, SEED)
            for day in stream:
                events += len(day)
                if phase == "encode":
                    split = day.split_at(BATCH_SPLIT_HOUR * 3600)
                    size += len(day.to_jsonl(0, split)) + len(day.to_jsonl(split, len(day)))
            tickets = stream.ticket_count  # not len(stream.tickets): that decodes them all into dicts
        elif phase in ("write", "old-write"):
            zone, export = LandingZone(base_path=str(root / "landing")), str(root / "crm" / "tickets.jsonl")
            if phase == "write":
                stats = write_generated(iter_days(START, days, customers, SEED), zone, export)
            else:
                from churn_platform_tests.synthetic import reference_generator as old

                stats = old.write_generated(old.generate(START, days, customers, SEED), zone, export)
            events, tickets = stats["events"], stats["tickets"]
            size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        else:
            raise ValueError(f"unknown phase {phase!r}")
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "seconds": seconds,
        "events": events,
        "tickets": tickets,
        "bytes": size,
        "events_per_second": events / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_imports_mb": imported_rss,
    }


def disk_alone(files: int, size: int) -> float:
    """Seconds to write ``files`` files of ``size`` bytes in all, as the writer writes them."""
    from upath import UPath

    from churn_platform.storage.files import write_bytes_atomic

    root = Path(tempfile.mkdtemp(prefix="bench-generator-disk-"))
    content = os.urandom(min(size // files, 1 << 20))
    content = content * (size // files // len(content)) + content[: size // files % len(content)]
    try:
        started = time.perf_counter()
        for n in range(files):
            write_bytes_atomic(UPath(root / f"date={n}" / "events.jsonl"), content)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(phase: str, days: int, customers: int) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--measure", phase, str(days), str(customers)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    seconds = [r["seconds"] for r in runs]
    median = statistics.median(seconds)
    return {
        **{k: runs[0][k] for k in ("events", "tickets", "bytes")},
        "seconds": median,
        "best_seconds": min(seconds),
        "events_per_second": runs[0]["events"] / median,
        "best_events_per_second": runs[0]["events"] / min(seconds),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "rss_after_imports_mb": max(r["rss_after_imports_mb"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, nargs="+", default=[30, 120])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--measure", nargs=3, metavar=("PHASE", "DAYS", "CUSTOMERS"), help=argparse.SUPPRESS)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.measure:
        phase, days, customers = args.measure
        print(json.dumps(measure(phase, int(days), int(customers))))
        return
    repeat, old_size = REPEAT, OLD_SIZE
    if args.smoke:
        args.days, args.customers, repeat, old_size = [2, 4], 200, 1, (2, 100)

    load_before = os.getloadavg()
    results: dict = {"customers": args.customers, "days": args.days, "repeat": repeat, "sizes": {}}
    for days in args.days:
        size = results["sizes"][str(days)] = {
            phase: summarise([run(phase, days, args.customers) for _ in range(repeat)]) for phase in PHASES
        }
        disk = [disk_alone(2 * days, size["encode"]["bytes"]) for _ in range(repeat)]
        size["disk"] = {"seconds": statistics.median(disk), "best_seconds": min(disk), "runs": disk}
        print(f"{days} days done", file=sys.stderr, flush=True)
    old_days, old_customers = old_size
    results["old"] = {
        "days": old_days,
        "customers": old_customers,
        "old": summarise([run("old-write", old_days, old_customers) for _ in range(repeat)]),
        "new": summarise([run("write", old_days, old_customers) for _ in range(repeat)]),
    }
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    write_results("generator", results, markdown(results, args.customers), smoke=args.smoke)


def markdown(results: dict, customers: int) -> str:
    sizes = results["sizes"]
    header = " | ".join(f"{days} days x {customers:,} customers" for days in sizes)
    lines = [
        f"`churn-platform generate`'s generator and writer, seed {SEED}; median of {results['repeat']} "
        "runs, each in a fresh process (best run in brackets).",
        "",
        f"| | {header} |",
        "|---|" + "---|" * len(sizes),
        "| events | " + " | ".join(f"{s['write']['events']:,}" for s in sizes.values()) + " |",
        "| landing files + export | "
        + " | ".join(f"{s['write']['bytes'] / 2**20:,.0f} MiB" for s in sizes.values())
        + " |",
    ]
    for phase in PHASES:
        lines.append(
            f"| {PHASE_TITLES[phase]}, events/s | "
            + " | ".join(
                f"{s[phase]['events_per_second']:,.0f} ({s[phase]['best_events_per_second']:,.0f})"
                for s in sizes.values()
            )
            + " |"
        )
    lines += [
        "| seconds: generate / + encode / end to end | "
        + " | ".join(
            f"{s['generate']['seconds']:.2f} / {s['encode']['seconds']:.2f} / {s['write']['seconds']:.2f}"
            for s in sizes.values()
        )
        + " |",
        "| disk alone: the same bytes, files and fsyncs, seconds (MB/s) | "
        + " | ".join(
            f"{s['disk']['seconds']:.2f} ({s['encode']['bytes'] / s['disk']['seconds'] / 1e6:,.0f})"
            for s in sizes.values()
        )
        + " |",
        "| peak RSS, end to end | "
        + " | ".join(f"{s['write']['peak_rss_mb']:,.0f} MB" for s in sizes.values())
        + " |",
        "| of which imports (dagster, pandas, pyarrow) | "
        + " | ".join(f"{s['write']['rss_after_imports_mb']:,.0f} MB" for s in sizes.values())
        + " |",
        "| peak RSS, generate only | "
        + " | ".join(f"{s['generate']['peak_rss_mb']:,.0f} MB" for s in sizes.values())
        + " |",
        "| tickets (held until the export is written) | "
        + " | ".join(f"{s['write']['tickets']:,}" for s in sizes.values())
        + " |",
    ]
    old = results["old"]
    lines += [
        "",
        f"Against the per-event generator it replaced, end to end at {old['days']} days x "
        f"{old['customers']:,} customers ({old['old']['events']:,} events, byte-identical files): "
        f"old {old['old']['events_per_second']:,.0f} events/s, peak RSS {old['old']['peak_rss_mb']:,.0f} MB; "
        f"new {old['new']['events_per_second']:,.0f} events/s, peak RSS {old['new']['peak_rss_mb']:,.0f} MB: "
        f"**{old['new']['events_per_second'] / old['old']['events_per_second']:,.0f}x** (medians).",
        "",
        "generate: the stream only (every random draw, events as columnar arrays, tickets). + encode: "
        "also every landing file's bytes, nothing written. end to end: `write_generated(iter_days(...))` "
        "into a new landing zone on local disk (each file written atomically: temp file, fsync, rename, "
        "by a background thread while the next day is generated) and the ticket export. disk alone: "
        "writing files of the same sizes the same way, nothing generated. Load average (1/5/15 min) before: "
        + "/".join(f"{x:.1f}" for x in results["load_average"]["before"])
        + ", after: "
        + "/".join(f"{x:.1f}" for x in results["load_average"]["after"])
        + f" on {os.cpu_count()} CPUs (a shared machine: other work ran meanwhile).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
