"""Benchmark: the platform's scoring service against `mlflow models serve` of the same model
version, side by side in one run, on this machine.

The demo's state is built once (generated data, the graph up to scores, a champion), the last
day's features are loaded into Redis (online/customer_features), then both servers are started as
processes on loopback, one uvicorn worker each:
- `churn-platform serve`: GET /v1/customers/{id}/churn-score (features from Redis), POST
  /v1/churn-scores with 100 ids, and POST /v1/churn-scores/features (a posted feature row, the same
  work as the MLflow server's);
- `mlflow models serve -m models:/churn_model@champion --env-manager local`: POST /invocations
  with the same customers' feature rows (1 row, 100 rows).
A Python client (httpx, one thread and one keep-alive connection per concurrent caller, on the
same 2 cores as the servers) runs each case for a fixed time at concurrency 1, 8 and 32: requests/s,
p50 and p99 latency, errors; the servers' peak RSS is sampled. Writes bench/results/serving.{json,md}.

    .venv/bin/python bench/serving.py [--days 120] [--customers 1000] [--seconds 10] [--smoke]

``--smoke``: 60 days x 150 customers, 0.5 s per case, concurrency 1 and 8, results to a temporary
directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import httpx
import pandas as pd
import psutil
import redis

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import add_smoke_flag, write_results
from churn_platform.cli.demo import DemoPlan, run_demo
from churn_platform.definitions import build_definitions
from churn_platform.orchestration import asset_keys as keys
from churn_platform.resources import build_resources
from churn_platform.settings import load_settings
from churn_platform_tests.support.data import START, generate_into
from churn_platform_tests.support.servers import free_port

BIN = Path(sys.executable).parent
API_KEY = uuid.uuid4().hex
PERMISSIVE_GATE = {"min_roc_auc": 0.5, "min_pr_auc_lift": 1.0}  # small smoke data makes a weak model


def build_state(root: Path, days: int, customers: int, gate: dict | None) -> tuple[dict, object, DemoPlan]:
    environ = {
        "CHURN_DATA_DIR": str(root / "data"),
        "CHURN_START_DATE": START.isoformat(),
        "CHURN_ONLINE_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
        "CHURN_SERVING_API_KEY": API_KEY,
        "CHURN_SERVING_MAX_FEATURE_AGE_DAYS": "100000",  # the demo's dates are in the past
    }
    settings = load_settings(environ)
    generate_into(settings, days=days, customers=customers, seed=7)
    defs = build_definitions(settings)
    plan = DemoPlan.for_days(START, days)
    with dg.instance_for_test() as instance:
        run_demo(defs, instance, plan, log=lambda *_: None, gate=gate)
        online = defs.resolve_job_def("online_features_job")
        assert online.execute_in_process(instance=instance, partition_key=plan.last_day).success
    return environ, settings, plan


class Server:
    def __init__(
        self, command: list[str], env: dict[str, str], port: int, ready_path: str, log: Path
    ) -> None:
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=open(log, "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.peak_rss = 0
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{' '.join(command[:3])} exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + ready_path, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{command[:3]} not ready:\n{log.read_text()[-3000:]}")

    def sample_rss(self) -> None:
        try:
            proc = psutil.Process(self.process.pid)
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            self.peak_rss = max(self.peak_rss, rss)
        except psutil.Error:
            pass

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        self.process.wait(timeout=30)


def load(server: Server, request, concurrency: int, seconds: float) -> dict:
    """``request(client, i)`` from ``concurrency`` threads for ``seconds``; latencies of the
    requests that completed in the window."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def caller(worker: int) -> None:
        mine, failed, i = [], 0, worker
        with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=30) as client:
            request(client, i)  # warm the connection
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = request(client, i)
                mine.append(time.perf_counter() - started)
                failed += response.status_code != 200
                i += concurrency
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=caller, args=(w,)) for w in range(concurrency)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        server.sample_rss()
        time.sleep(0.2)
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests": len(latencies),
        "errors": errors[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.days, args.customers, args.seconds = 60, 150, 0.5
    root = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    environ, settings, plan = build_state(
        root, args.days, args.customers, PERMISSIVE_GATE if args.smoke else None
    )
    registry = build_resources(settings)["mlflow_tracking"]
    version = registry.champion_version()

    features = pd.read_parquet(
        build_resources(settings)["io_manager"].path_for(keys.CUSTOMER_FEATURES, plan.last_day).path
    )
    import mlflow

    signature = mlflow.models.get_model_info(f"models:/{registry.model_name}/{version}").signature
    columns = signature.inputs.input_names()
    # Rows MLflow's schema enforcement accepts (its integer columns refuse nulls): the same
    # customers are asked of both servers.
    integers = [spec.name for spec in signature.inputs.inputs if str(spec.type) in ("long", "integer")]
    usable = features.dropna(subset=integers).reset_index(drop=True)
    ids = usable["customer_id"].astype(int).tolist()
    rows_json = [
        [None if pd.isna(v) else v.item() if hasattr(v, "item") else v for v in row]
        for row in usable[columns].astype(object).values.tolist()
    ]
    as_posted = [dict(zip(columns, row, strict=True)) for row in rows_json]

    platform_port, mlflow_port = free_port(), free_port()
    platform = Server(
        [str(BIN / "churn-platform"), "serve", "--port", str(platform_port)],
        environ,
        platform_port,
        "/ready",
        root / "platform.log",
    )
    try:
        mlflow_server = Server(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{registry.model_name}/{version}",
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            # `mlflow models serve` execs `uvicorn` by name: the venv's bin must be on PATH.
            {
                "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
                "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            },
            mlflow_port,
            "/ping",
            root / "mlflow.log",
        )
    except BaseException:
        platform.stop()
        raise

    def split(rows: list[list]) -> dict:
        return {"dataframe_split": {"columns": columns, "data": rows}}

    n = len(ids)
    cases = {
        "single customer": {
            "platform": lambda c, i: c.get(f"/v1/customers/{ids[i % n]}/churn-score"),
            "mlflow models serve": lambda c, i: c.post("/invocations", json=split([rows_json[i % n]])),
        },
        "posted feature row": {
            "platform": lambda c, i: c.post("/v1/churn-scores/features", json={"features": as_posted[i % n]}),
            "mlflow models serve": lambda c, i: c.post("/invocations", json=split([rows_json[i % n]])),
        },
        "batch of 100": {
            "platform": lambda c, i: c.post(
                "/v1/churn-scores", json={"customer_ids": [ids[(i + k) % n] for k in range(100)]}
            ),
            "mlflow models serve": lambda c, i: c.post(
                "/invocations", json=split([rows_json[(i + k) % n] for k in range(100)])
            ),
        },
    }
    # Same answers from both before timing anything.
    check_platform = httpx.get(
        f"{platform.url}/v1/customers/{ids[0]}/churn-score", headers={"X-API-Key": API_KEY}
    ).json()["churn_probability"]
    check_mlflow = httpx.post(f"{mlflow_server.url}/invocations", json=split([rows_json[0]])).json()
    results: dict = {"model_version": version, "customers": n, "seconds_per_case": args.seconds, "cases": []}
    try:
        for case, targets in cases.items():
            levels = (1, 8) if case == "batch of 100" or args.smoke else (1, 8, 32)
            for concurrency in levels:
                for name, request in targets.items():
                    server = platform if name == "platform" else mlflow_server
                    measured = load(server, request, concurrency, args.seconds)
                    results["cases"].append(
                        {"case": case, "server": name, "concurrency": concurrency, **measured}
                    )
                    print(case, name, concurrency, {k: round(v, 2) for k, v in measured.items()}, flush=True)
    finally:
        results["peak_rss_mb"] = {
            "platform": platform.peak_rss / 2**20,
            "mlflow models serve": mlflow_server.peak_rss / 2**20,
        }
        platform.stop()
        mlflow_server.stop()
        connection = redis.Redis.from_url(settings.serving.redis_url)
        for key in connection.scan_iter(f"{settings.serving.key_prefix}:*"):
            connection.delete(key)
    results["same_answer"] = {"platform": check_platform, "mlflow models serve": check_mlflow}

    lines = [
        f"Scoring service vs `mlflow models serve`, model v{version}, {n} customers, {args.seconds:g} s per "
        "case, Python client on the same 2 cores, one uvicorn worker each.",
        "",
        "| case | concurrency | platform req/s | p50 ms | p99 ms | mlflow req/s | p50 ms | p99 ms | throughput ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(c["case"], c["server"], c["concurrency"]): c for c in results["cases"]}
    for case, concurrency in sorted(
        {(c["case"], c["concurrency"]) for c in results["cases"]},
        key=lambda k: (list(cases).index(k[0]), k[1]),
    ):
        p, m = by_key[(case, "platform", concurrency)], by_key[(case, "mlflow models serve", concurrency)]
        lines.append(
            f"| {case} | {concurrency} | {p['requests_per_s']:.0f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | "
            f"{m['requests_per_s']:.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | "
            f"{p['requests_per_s'] / max(m['requests_per_s'], 1e-9):.2f}x |"
        )
    errors = sum(c["errors"] for c in results["cases"])
    lines += [
        "",
        f"Errors: {errors}. Peak RSS: platform {results['peak_rss_mb']['platform']:.0f} MB, "
        f"mlflow models serve {results['peak_rss_mb']['mlflow models serve']:.0f} MB.",
        "",
    ]
    write_results("serving", results, "\n".join(lines), smoke=args.smoke)


if __name__ == "__main__":
    main()
