"""Micro-benchmark: scoring one customer with the champion's pipeline against its compiled fast path
(churn_platform/serving/fast_path.py), in one process, no HTTP.

The demo's state is built once (generated data, the graph up to scores, a champion), the champion
is loaded from the registry as the service loads it, its fast path prepared (compiled and verified),
and one customer's row of the last day is stored as the online store stores it (JSON). Then the
same row is scored ``--calls`` times (after a warm-up) each way, and the median and p99 of the
calls are reported:

- ``pipeline``: `predict_with(pipeline, frame)` on the row's one-row DataFrame (the model only);
- ``fast path, frame``: the same call with the fast path (`FastPath.score_frame`);
- ``fast path, stored row``: `FastPath.score_records` on the row as `json.loads` gives it;
- ``service work, pipeline`` / ``service work, fast path``: what the no-cache service does per
  single-customer request after reading Redis: from the stored JSON bytes to the probability
  (`json.loads`, `rows_to_frame`, the pipeline; or `json.loads` and the fast path).

Every way must give the same probability, bit for bit, or the script fails.

    .venv/bin/python bench/fast_path.py [--days 60] [--customers 150] [--calls 2000] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import add_smoke_flag, write_results
from churn_platform.cli.demo import DemoPlan, run_demo
from churn_platform.definitions import build_definitions
from churn_platform.ml.scoring import predict_with
from churn_platform.online.store import _json_value, rows_to_frame
from churn_platform.orchestration import asset_keys as keys
from churn_platform.resources import build_resources
from churn_platform.serving.champion import serving_model
from churn_platform_tests.support.data import START, generate_into, settings_for
from churn_platform_tests.support.stack import PERMISSIVE_GATE

WARM_UP = 200


def timed(fn: Callable[[], object], calls: int) -> dict[str, float]:
    for _ in range(WARM_UP):
        fn()
    times = np.empty(calls)
    for i in range(calls):
        started = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - started
    return {
        "median_ms": round(float(np.median(times)) * 1000, 4),
        "p99_ms": round(float(np.quantile(times, 0.99)) * 1000, 4),
        "calls": calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--customers", type=int, default=150)
    parser.add_argument("--calls", type=int, default=2000)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.days, args.customers, args.calls = 40, 100, 200

    root = Path(tempfile.mkdtemp(prefix="bench-fast-path-"))
    try:
        run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path) -> None:
    settings = settings_for(str(root / "data"), CHURN_TRAINING_WINDOW_DAYS="14")
    generate_into(settings, days=args.days, customers=args.customers, seed=7)
    plan = DemoPlan.for_days(START, args.days)
    with dg.instance_for_test() as instance:
        run_demo(build_definitions(settings), instance, plan, gate=PERMISSIVE_GATE)
    resources = build_resources(settings)
    pipeline, artifact = resources["mlflow_tracking"].load_champion()
    started = time.perf_counter()
    model = serving_model(pipeline, artifact.version, artifact.sha256)
    prepare_seconds = time.perf_counter() - started
    if not model.fast_path or model.fast is None:
        raise SystemExit(f"the fast path is off: {model.fast_path_reason}")
    fast = model.fast

    table = pq.read_table(resources["io_manager"].path_for(keys.CUSTOMER_FEATURES, plan.last_day).path)
    schema = table.schema
    row = table.slice(0, 1).to_pylist()[0]
    stored = json.dumps({k: _json_value(v) for k, v in row.items()}, allow_nan=False).encode()
    frame = rows_to_frame([json.loads(stored)], schema)
    assert fast.accepts(schema), "the feature schema's check failed"

    ways: dict[str, Callable[[], float]] = {
        "pipeline": lambda: float(predict_with(pipeline, frame)[0]),
        "fast path, frame": lambda: float(predict_with(pipeline, frame, fast=fast.score_frame)[0]),
        "fast path, stored row": lambda: float(fast.score_records([json.loads(stored)], schema)[0]),
        "service work, pipeline": lambda: float(
            predict_with(pipeline, rows_to_frame([json.loads(stored)], schema))[0]
        ),
        "service work, fast path": lambda: float(fast.score_records([json.loads(stored)], schema)[0]),
    }
    answers = {name: way() for name, way in ways.items()}
    if len(set(answers.values())) != 1:
        raise SystemExit(f"the ways disagree: {answers}")
    results = {name: timed(way, args.calls) for name, way in ways.items()}

    base, service = results["pipeline"]["median_ms"], results["service work, pipeline"]["median_ms"]
    lines = [
        f"# One-row scoring: pipeline vs fast path ({args.calls} calls of the same row, after {WARM_UP})",
        "",
        f"Model v{artifact.version} ({args.days} days x {args.customers} customers); fast path prepared "
        f"(compiled and verified) in {prepare_seconds * 1000:.0f} ms: {model.fast_path_reason}. "
        f"Load average at the end: {os.getloadavg()[0]:.2f}.",
        "",
        "| way | median (ms) | p99 (ms) | median speed-up |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        reference = service if name.startswith("service") else base
        lines.append(
            f"| {name} | {r['median_ms']:.3f} | {r['p99_ms']:.3f} | {reference / r['median_ms']:.1f}x |"
        )
    write_results(
        "fast_path",
        {
            "days": args.days,
            "customers": args.customers,
            "probability": answers["pipeline"],
            "prepare_ms": round(prepare_seconds * 1000, 1),
            "load_average": os.getloadavg()[0],
            "results": results,
        },
        "\n".join(lines) + "\n",
        smoke=args.smoke,
    )


if __name__ == "__main__":
    main()
