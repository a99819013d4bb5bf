"""Benchmark: the platform's scoring service against `mlflow models serve` of the same model
version, side by side in one run, on this machine: each server's capacity on one core, measured
with a load generator on another core, so the client is not the bottleneck.

The demo's state is built once (generated data, the graph up to scores, a champion), the last
day's features are loaded into Redis (online/customer_features), then three servers are started as
processes on loopback, one uvicorn worker each, all pinned to one CPU (``taskset -c 0``):
- `churn-platform serve` ("platform", its score cache on, as by default): GET
  /v1/customers/{id}/churn-score (features from Redis), POST /v1/churn-scores with 100 ids, and POST
  /v1/churn-scores/features (a posted feature row, the same work as the MLflow server's);
- `churn-platform serve` with ``CHURN_SERVING_SCORE_CACHE_ENTRIES=0`` ("platform, no cache"): the
  single-customer and batch cases again, each request running the model;
- `mlflow models serve -m models:/churn_model/<version> --env-manager local`: POST /invocations
  with the same customers' feature rows (1 row, 100 rows).
The load cycles through a fixed set of customers, so after the warm-up the cached platform answers
the single-customer and batch cases from its score cache (keyed by the model's SHA-256 and the
stored feature row: a Redis read plus a dict lookup), while mlflow and the no-cache platform run
the model per request: the report shows the cached platform against mlflow (repeat lookups) and
the no-cache one against mlflow (equal work). A posted feature row is never looked up in the
cache, so that case is measured on the cached platform only.

Before timing anything, a same-answer check: for ``SAME_ANSWER_SAMPLE`` customers (those whose
probability is nearest 0.5 and others spread over the set) both platform servers' GET score must
agree, and mlflow's /invocations of the customer's feature row must return the label
``probability > 0.5``: mlflow's pyfunc for a scikit-learn classifier calls ``predict()`` (the class
label; the same tree traversal as ``predict_proba``, then HistGradientBoosting's ``raw score > 0``),
not the probability. A mismatch fails the script.

Load comes from `wrk` (Debian's package; `make bench-tools` installs it) pinned to another CPU
(``taskset -c 1``), ``-t1 -c<concurrency>``, keep-alive connections. Each case's requests are rendered by this script into a
Lua file that wrk cycles through (``request()``: different customer ids / feature rows per
request), a ``response()`` hook counts non-2xx answers, and ``done()`` prints requests, duration,
socket errors and the p50/p99 latency as JSON, which is parsed here. The servers are measured one
at a time (the others idle): single customer, posted feature row at concurrency 1, 8 and 32, batch
of 100 at 1 and 8, each for ``--seconds`` after a 1 s warm-up. Any error (a socket error, a
timeout or a non-2xx answer) fails the script: a server answering 4xx fast measures nothing.
Recorded per run: requests/s, p50 and p99 latency, errors, the CPU the server and wrk used (the
server near 100 % of its core and wrk well below 100 % of its own: the server is the bottleneck);
the servers' peak RSS is sampled. Writes bench/results/serving.{json,md}: two tables, the cached
platform vs mlflow and the no-cache platform vs mlflow.

    .venv/bin/python bench/serving.py [--days 120] [--customers 1000] [--seconds 10]
        [--server-cpu 0] [--client-cpu 1] [--smoke]

``--smoke``: 60 days x 150 customers, 1 s per case (wrk's shortest run), concurrency 1 only,
results to a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
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
WARM_UP_SECONDS = 1  # wrk's durations are whole seconds
BATCH = 100
BATCH_BODIES = 32  # distinct batch requests per case (windows spread over the customers)
WRK_TIMEOUT = "30s"  # a request slower than this counts as an error
RESULT_MARKER = "WRK_RESULT "
CACHE_SETTING = "CHURN_SERVING_SCORE_CACHE_ENTRIES"
SAME_ANSWER_SAMPLE = 20  # customers whose answers are compared across the servers
THRESHOLD_TIE = 1e-12  # a probability this close to 0.5 accepts either label (float rounding)
# The servers under test: the names used in the results and the wrk scripts' file names.
CACHED, NO_CACHE, MLFLOW = "platform", "platform, no cache", "mlflow models serve"
SLUGS = {CACHED: "platform", NO_CACHE: "platform-no-cache", MLFLOW: "mlflow"}

# The Lua side of a wrk run. Filled in per case: {method}, {headers} (Lua assignments), {paths} and
# {bodies} (Lua lists of long strings, bodies `nil` for GET). `setup` runs in wrk's main Lua state,
# `init`/`request`/`response` in each thread's, `done` in the main one again (threads' globals
# through `thread:get`).
LUA_TEMPLATE = """\
-- Generated by bench/serving.py for one case; wrk -s <this file>.
wrk.method = "{method}"
{headers}
local paths = {paths}
local bodies = {bodies}
local prepared = {{}}
local count = 0

function init(args)
  for k = 1, #paths do
    prepared[k] = wrk.format(nil, paths[k], nil, bodies and bodies[k] or nil)
  end
  count = #prepared
end

local next_request = 0
function request()
  next_request = next_request % count + 1
  return prepared[next_request]
end

non2xx = 0
first_status = 0
first_body = ""
function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_status == 0 then
      first_status = status
      first_body = string.sub(body or "", 1, 300)
    end
  end
end

local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
end

local function quoted(s)
  return '"' .. string.gsub(s, '[%c"\\\\]', function(c) return string.format("\\\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local bad, status, body = 0, 0, ""
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    if status == 0 and thread:get("first_status") ~= 0 then
      status = thread:get("first_status")
      body = thread:get("first_body")
    end
  end
  local e = summary.errors
  io.write("{marker}", string.format(
    '{{"requests": %.0f, "duration_us": %.0f, "non_2xx": %.0f, "connect": %.0f, "read": %.0f, '
      .. '"write": %.0f, "status": %.0f, "timeout": %.0f, "p50_us": %.1f, "p99_us": %.1f, '
      .. '"max_us": %.1f, "first_bad_status": %.0f, "first_bad_body": %s}}',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, status, quoted(body)), "\\n")
end
"""


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
        run_demo(defs, instance, plan, gate=gate)
        online = defs.resolve_job_def("online_features_job")
        assert online.execute_in_process(instance=instance, partition_key=plan.last_day).success
    return environ, settings, plan


class Server:
    def __init__(
        self, command: list[str], env: dict[str, str], port: int, ready_path: str, log: Path, cpu: int
    ) -> None:
        # taskset execs the server: the process (and uvicorn, if the server starts it as a child)
        # runs on `cpu` only.
        self.process = subprocess.Popen(
            ["taskset", "-c", str(cpu), *command],
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

    def _processes(self) -> list[psutil.Process]:
        proc = psutil.Process(self.process.pid)
        return [proc, *proc.children(recursive=True)]

    def sample_rss(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in self._processes()))

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server's processes so far."""
        try:
            return sum(sum(p.cpu_times()[:2]) for p in self._processes())
        except psutil.Error:
            return 0.0

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        self.process.wait(timeout=30)


def lua_string(text: str) -> str:
    """``text`` as a Lua long string, its level chosen so that nothing in it closes the string."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def lua_script(method: str, headers: dict[str, str], requests: list[tuple[str, str | None]]) -> str:
    """The wrk script for one case: ``requests`` ((path, JSON body or None) each) cycled through."""
    bodies = [body for _, body in requests]
    return LUA_TEMPLATE.format(
        method=method,
        headers="\n".join(f"wrk.headers[ {lua_string(k)} ] = {lua_string(v)}" for k, v in headers.items()),
        paths="{\n" + "".join(f"  {lua_string(path)},\n" for path, _ in requests) + "}",
        bodies="nil"
        if all(body is None for body in bodies)
        else "{\n" + "".join(f"  {lua_string(body)},\n" for body in bodies) + "}",
        marker=RESULT_MARKER,
    )


def wrk(server: Server, script: Path, concurrency: int, seconds: int, cpu: int) -> tuple[dict, float, float]:
    """One wrk run of ``script`` against ``server``: (its parsed JSON summary, the server's CPU
    seconds, wrk's CPU seconds), the server's RSS sampled meanwhile."""
    command = [
        "taskset", "-c", str(cpu),
        "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT}",
        "-s", str(script), server.url,
    ]  # fmt: skip
    server_cpu = server.cpu_seconds()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child reaped meanwhile
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while process.poll() is None:
        server.sample_rss()
        time.sleep(0.2)
    stdout, stderr = (stream.decode(errors="replace") for stream in process.communicate())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = server.cpu_seconds() - server_cpu
    wrk_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if process.returncode or not lines:
        raise RuntimeError(f"wrk failed ({process.returncode}): {' '.join(command)}\n{stdout}\n{stderr}")
    return json.loads(lines[-1].removeprefix(RESULT_MARKER)), server_cpu, wrk_cpu


def measure(server: Server, script: Path, concurrency: int, seconds: int, cpu: int) -> dict:
    """A warm-up run, then the measured one: requests/s, p50/p99 latency, errors (socket errors,
    timeouts and non-2xx answers), the CPU share the server and wrk used."""
    wrk(server, script, concurrency, WARM_UP_SECONDS, cpu)
    summary, server_cpu, wrk_cpu = wrk(server, script, concurrency, seconds, cpu)
    duration = summary["duration_us"] / 1e6
    socket_errors = {k: int(summary[k]) for k in ("connect", "read", "write", "timeout")}
    return {
        "requests_per_s": summary["requests"] / duration,
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "max_ms": summary["max_us"] / 1000,
        "requests": int(summary["requests"]),
        "seconds": duration,
        "errors": sum(socket_errors.values()) + int(summary["non_2xx"]),
        "non_2xx": int(summary["non_2xx"]),
        "socket_errors": socket_errors,
        "first_bad_response": {"status": int(summary["first_bad_status"]), "body": summary["first_bad_body"]}
        if summary["non_2xx"]
        else None,
        "server_cpu_percent": 100 * server_cpu / duration,
        "wrk_cpu_percent": 100 * wrk_cpu / duration,
    }


def wrk_version() -> str:
    """wrk's version line (``wrk -v`` prints it with the usage)."""
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return next((line for line in (out.stdout + out.stderr).splitlines() if line.startswith("wrk ")), "wrk")


def same_answer(servers: dict[str, Server], ids: list[int], invocation: list[str], sample_size: int) -> dict:
    """The answers of the three servers compared for ``sample_size`` customers (exits on any
    mismatch): the ``sample_size // 2`` whose probability is nearest the 0.5 threshold (the sharpest
    test of the label rule) and the rest spread evenly over ``ids``. For each, the platform's GET
    score from the cached and the no-cache server (equal) and mlflow's /invocations of the same
    customer's feature row (``invocation[k]``, a JSON body), whose label must be ``probability >
    0.5``: mlflow's pyfunc for a scikit-learn classifier returns ``predict()``, which for this binary
    HistGradientBoosting is ``raw score > 0``, i.e. ``probability > 0.5``."""
    headers = {"X-API-Key": API_KEY}
    probability: dict[int, float] = {}
    for start in range(0, len(ids), BATCH):  # every customer's probability, to pick the sample
        answer = httpx.post(
            f"{servers[NO_CACHE].url}/v1/churn-scores",
            json={"customer_ids": ids[start : start + BATCH]},
            headers=headers,
            timeout=60,
        )
        answer.raise_for_status()
        probability |= {s["customer_id"]: s["churn_probability"] for s in answer.json()["scores"]}
    nearest = sorted(range(len(ids)), key=lambda k: (abs(probability[ids[k]] - 0.5), k))
    sample = nearest[: sample_size // 2]
    rest = sorted(set(range(len(ids))) - set(sample))
    wanted = min(sample_size - len(sample), len(rest))
    sample += [rest[round(j * len(rest) / wanted)] for j in range(wanted)] if wanted else []
    checked, problems = [], []
    for k in sorted(sample):
        customer = ids[k]
        scores = {}
        for name in (CACHED, NO_CACHE):
            answer = httpx.get(
                f"{servers[name].url}/v1/customers/{customer}/churn-score", headers=headers, timeout=30
            )
            answer.raise_for_status()
            scores[name] = answer.json()["churn_probability"]
        answer = httpx.post(
            f"{servers[MLFLOW].url}/invocations",
            content=invocation[k],
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        answer.raise_for_status()
        mlflow_answer = answer.json()
        p = scores[CACHED]
        predictions = mlflow_answer.get("predictions") if isinstance(mlflow_answer, dict) else None
        label = predictions[0] if isinstance(predictions, list) and len(predictions) == 1 else None
        tie = abs(p - 0.5) <= THRESHOLD_TIE
        if not math.isclose(p, scores[NO_CACHE], rel_tol=1e-9, abs_tol=1e-12):
            problems.append(
                f"customer {customer}: platform {p} but platform without cache {scores[NO_CACHE]}"
            )
        if label not in (True, False):  # 0/1 compare equal to False/True
            problems.append(f"customer {customer}: mlflow answered {mlflow_answer!r}, not one class label")
        elif not tie and bool(label) != (p > 0.5):
            problems.append(f"customer {customer}: platform probability {p}, mlflow label {label!r}")
        checked.append({"customer_id": customer, "platform_probability": p, "mlflow_label": label})
    if problems:
        sys.exit("same-answer check failed (nothing timed):\n  " + "\n  ".join(problems))
    labels = [c["mlflow_label"] for c in checked]
    return {
        "customers_checked": len(checked),
        "mlflow_returns": "class labels ({'predictions': [false]}): its pyfunc for a scikit-learn "
        "classifier calls predict(), which runs the same tree traversal as predict_proba and "
        "thresholds the raw score (> 0, i.e. probability > 0.5)",
        "rule": f"mlflow's label == (platform probability > 0.5); within {THRESHOLD_TIE} of 0.5 either "
        "label; the cached and the no-cache platform's probabilities equal",
        "sample": f"the {sample_size // 2} customers whose probability is nearest 0.5, the rest spread "
        "over the customers",
        "labels_true": sum(bool(label) for label in labels),
        "labels_false": sum(not label for label in labels),
        "ties": sum(abs(c["platform_probability"] - 0.5) <= THRESHOLD_TIE for c in checked),
        "checked": checked,
    }


def check_cpus(server_cpu: int, client_cpu: int) -> None:
    available = os.sched_getaffinity(0)
    if server_cpu == client_cpu or not {server_cpu, client_cpu} <= available:
        sys.exit(
            f"bench/serving.py: --server-cpu {server_cpu} and --client-cpu {client_cpu} must be two "
            f"different CPUs of this process's {sorted(available)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument(
        "--seconds", type=int, default=10, help="per measured run (whole seconds: wrk's unit)"
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="the CPU the servers are pinned to")
    parser.add_argument("--client-cpu", type=int, default=1, help="the CPU wrk is pinned to")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.days, args.customers, args.seconds = 60, 150, 1
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    if shutil.which("wrk") is None:
        sys.exit(
            "bench/serving.py drives load with wrk, which is not installed: run `make bench-tools` "
            "(apt-get install wrk)"
        )
    if shutil.which("taskset") is None:
        sys.exit("bench/serving.py pins the servers and wrk to CPUs with taskset (util-linux): not found")
    check_cpus(args.server_cpu, args.client_cpu)
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

    cache_entries = settings.serving.score_cache_entries
    if load_settings({**environ, CACHE_SETTING: "0"}).serving.score_cache_entries != 0:
        sys.exit(f"bench/serving.py: {CACHE_SETTING}=0 does not turn the score cache off any more")
    platform_command = [str(BIN / "churn-platform"), "serve", "--port"]
    mlflow_command = [
        str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{registry.model_name}/{version}",
        "--env-manager", "local", "--host", "127.0.0.1", "--workers", "1", "--port",
    ]  # fmt: skip
    # name -> (command without its port, environment, readiness path): the two platform servers
    # differ only in their score cache (set explicitly: an outer environment's value is not used).
    launch = {
        CACHED: (platform_command, {**environ, CACHE_SETTING: str(cache_entries)}, "/ready"),
        NO_CACHE: (platform_command, {**environ, CACHE_SETTING: "0"}, "/ready"),
        # `mlflow models serve` execs `uvicorn` by name: the venv's bin must be on PATH.
        MLFLOW: (
            mlflow_command,
            {
                "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
                "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            },
            "/ping",
        ),
    }

    def body(value: object) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)

    def split(rows: list[list]) -> dict:
        return {"dataframe_split": {"columns": columns, "data": rows}}

    def clear_redis() -> None:
        connection = redis.Redis.from_url(settings.serving.redis_url)
        for key in connection.scan_iter(f"{settings.serving.key_prefix}:*"):
            connection.delete(key)

    n = len(ids)
    windows = sorted({round(k * n / BATCH_BODIES) for k in range(min(n, BATCH_BODIES))})
    batches = [[(start + k) % n for k in range(BATCH)] for start in windows]
    platform_headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    mlflow_headers = {"Content-Type": "application/json"}
    one_row = [("/invocations", body(split([row]))) for row in rows_json]
    by_id = ("GET", platform_headers, [(f"/v1/customers/{i}/churn-score", None) for i in ids])
    by_ids = (
        "POST",
        platform_headers,
        [("/v1/churn-scores", body({"customer_ids": [ids[k] for k in b]})) for b in batches],
    )
    # case -> server -> (method, headers, [(path, body)]): one request per customer (per window of
    # 100 for batches), the same customers for every server. A posted row never meets the score
    # cache: that case has no no-cache server.
    cases = {
        "single customer": {CACHED: by_id, NO_CACHE: by_id, MLFLOW: ("POST", mlflow_headers, one_row)},
        "posted feature row": {
            CACHED: (
                "POST",
                platform_headers,
                [("/v1/churn-scores/features", body({"features": row})) for row in as_posted],
            ),
            MLFLOW: ("POST", mlflow_headers, one_row),
        },
        f"batch of {BATCH}": {
            CACHED: by_ids,
            NO_CACHE: by_ids,
            MLFLOW: (
                "POST",
                mlflow_headers,
                [("/invocations", body(split([rows_json[k] for k in b]))) for b in batches],
            ),
        },
    }
    scripts = root / "wrk"
    scripts.mkdir()
    results: dict = {
        "model_version": version,
        "customers": n,
        "seconds_per_case": args.seconds,
        "warm_up_seconds": WARM_UP_SECONDS,
        "load_generator": {
            "tool": wrk_version(),
            "threads": 1,
            "cpu": args.client_cpu,
            "timeout": WRK_TIMEOUT,
        },
        "server_cpu": args.server_cpu,
        "servers": {
            CACHED: {"command": "churn-platform serve", CACHE_SETTING: cache_entries},
            NO_CACHE: {"command": "churn-platform serve", CACHE_SETTING: 0},
            MLFLOW: {"command": "mlflow models serve --env-manager local --workers 1"},
        },
        "cases": [],
    }
    servers: dict[str, Server] = {}
    with contextlib.ExitStack() as cleanup:  # on any exit: the servers stopped, then Redis cleared
        cleanup.callback(clear_redis)
        for name, (command, env, ready_path) in launch.items():
            port = free_port()
            servers[name] = Server(
                [*command, str(port)], env, port, ready_path, root / f"{SLUGS[name]}.log", args.server_cpu
            )
            cleanup.callback(servers[name].stop)
        # This process only waits and samples from here on: off the servers' CPU.
        os.sched_setaffinity(0, {args.client_cpu})
        # Same answers from all before timing anything.
        results["same_answer"] = same_answer(
            servers, ids, [payload for _, payload in one_row], SAME_ANSWER_SAMPLE
        )
        for case, targets in cases.items():
            levels = (1,) if args.smoke else (1, 8) if case == f"batch of {BATCH}" else (1, 8, 32)
            for name, (method, headers, requests) in targets.items():
                server = servers[name]
                # One request by hand first: a refusal shows its answer, not only a count.
                path, payload = requests[0]
                answer = httpx.request(
                    method, server.url + path, headers=headers, content=payload, timeout=30
                )
                if not answer.is_success:
                    sys.exit(
                        f"{case} / {name}: {method} {path} answered {answer.status_code}: {answer.text[:500]}"
                    )
                script = scripts / f"{case.replace(' ', '-')}-{SLUGS[name]}.lua"
                script.write_text(lua_script(method, headers, requests))
            for concurrency in levels:
                for name in targets:
                    script = scripts / f"{case.replace(' ', '-')}-{SLUGS[name]}.lua"
                    measured = measure(servers[name], script, concurrency, args.seconds, args.client_cpu)
                    results["cases"].append(
                        {"case": case, "server": name, "concurrency": concurrency, **measured}
                    )
                    print(
                        case,
                        name,
                        concurrency,
                        {k: round(v, 2) for k, v in measured.items() if isinstance(v, float | int)},
                        flush=True,
                    )
                    if measured["errors"]:
                        sys.exit(
                            f"{case} / {name} at concurrency {concurrency}: {measured['errors']} errors "
                            f"(non-2xx {measured['non_2xx']}, socket {measured['socket_errors']}, first "
                            f"bad answer {measured['first_bad_response']}): the figures would mean nothing"
                        )
    results["peak_rss_mb"] = {name: server.peak_rss / 2**20 for name, server in servers.items()}

    by_key = {(c["case"], c["server"], c["concurrency"]): c for c in results["cases"]}
    rows = sorted(
        {(c["case"], c["concurrency"]) for c in results["cases"]},
        key=lambda k: (list(cases).index(k[0]), k[1]),
    )

    def versus(name: str, case: str, concurrency: int) -> dict | None:
        """``name``'s run against mlflow's in this case and concurrency (None: not measured)."""
        if (case, name, concurrency) not in by_key:
            return None
        p, m = by_key[(case, name, concurrency)], by_key[(case, MLFLOW, concurrency)]
        return {
            "throughput_ratio": p["requests_per_s"] / max(m["requests_per_s"], 1e-9),
            "p99_at_equal_or_better": p["p99_ms"] <= m["p99_ms"],
        }

    results["comparison"] = [
        {
            "case": case,
            "concurrency": concurrency,
            "platform_vs_mlflow": versus(CACHED, case, concurrency),
            "platform_no_cache_vs_mlflow": versus(NO_CACHE, case, concurrency),
        }
        for case, concurrency in rows
    ]

    def cpu_range(server: str | None, key: str) -> str:
        values = [c[key] for c in results["cases"] if server in (None, c["server"])]
        return f"{min(values):.0f}-{max(values):.0f} %"

    def table(name: str, label: str, key: str) -> list[str]:
        lines = [
            f"| case | concurrency | {label} req/s | p50 ms | p99 ms | mlflow req/s | p50 ms | p99 ms "
            f"| {label} / mlflow req/s | p99 at equal or better |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in results["comparison"]:
            if row[key] is None:
                continue
            case, concurrency = row["case"], row["concurrency"]
            p, m = by_key[(case, name, concurrency)], by_key[(case, MLFLOW, concurrency)]
            shown = f"{case} (cache not used)" if name == CACHED and NO_CACHE not in cases[case] else case
            lines.append(
                f"| {shown} | {concurrency} | {p['requests_per_s']:.0f} | {p['p50_ms']:.1f} | "
                f"{p['p99_ms']:.1f} | {m['requests_per_s']:.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | "
                f"{row[key]['throughput_ratio']:.2f}x | {'yes' if row[key]['p99_at_equal_or_better'] else 'no'} |"
            )
        return lines

    check = results["same_answer"]
    fits = "all" if cache_entries >= n else f"NOT all (only {cache_entries} entries) of"
    lines = [
        f"Scoring service vs `mlflow models serve`, model v{version}, {n} customers, {args.seconds} s "
        f"per case after a {WARM_UP_SECONDS} s warm-up. Load from {results['load_generator']['tool'].split(' [')[0]}"
        f" (`-t1 -c<concurrency>`, keep-alive, each request a different customer, cycling through the "
        f"{n}) pinned to CPU {args.client_cpu}; the server under test pinned to CPU {args.server_cpu}, one "
        "uvicorn worker each, measured one at a time (the others idle). Latencies in ms; ratio = the "
        "platform's req/s / mlflow's; p99 at equal or better: the platform's p99 <= mlflow's.",
        "",
        f"**Platform with its score cache** (the default, `{CACHE_SETTING}={cache_entries}`: {fits} "
        f"{n} customers' scores fit) vs mlflow:",
        "",
        *table(CACHED, "cached", "platform_vs_mlflow"),
        "",
        f"**Platform without the cache** (`{CACHE_SETTING}=0`) vs mlflow, equal work:",
        "",
        *table(NO_CACHE, "no cache", "platform_no_cache_vs_mlflow"),
        "",
        "The cached figures (first table, single customer and batch of 100) are repeat lookups of "
        "customers whose scores are cached: the load cycles through the same customers, so after the "
        "warm-up a request costs the platform a Redis read plus a dict lookup, no model call, while "
        "mlflow runs the model every time. That is a real pattern (agents look at the same customers "
        "again during a day), and the cache is invalidated by content: it is keyed by the model's "
        "SHA-256 and the stored feature row, so new features or a new model are new keys and fresh "
        "scores. The no-cache figures (second table) are the equal-work comparison: model inference "
        "per request on both servers (the platform also reads the rows from Redis; mlflow gets them in "
        "the request). The posted-feature-row case has no no-cache run: a posted row is never looked "
        "up in the cache, so its figures in the first table are equal work already.",
        "",
        f"Same answer, checked before timing for {check['customers_checked']} customers (the "
        f"{SAME_ANSWER_SAMPLE // 2} with a probability nearest 0.5, the rest spread over the "
        "customers): both platform servers' GET score agree, and mlflow's /invocations of the same "
        "feature row returns the label `probability > 0.5` every time "
        f"({check['labels_true']} true, {check['labels_false']} false). mlflow returns class labels, "
        "not probabilities: its pyfunc for a scikit-learn classifier calls `predict()`, the same tree "
        "traversal as `predict_proba` followed by a threshold, so its work per row is the platform's.",
    ]
    errors = sum(c["errors"] for c in results["cases"])
    lines += [
        "",
        f"Errors (socket errors, timeouts, non-2xx answers): {errors}. CPU used during the measured "
        f"runs: the server under test {cpu_range(None, 'server_cpu_percent')} of its core (platform "
        f"{cpu_range(CACHED, 'server_cpu_percent')}, platform without cache "
        f"{cpu_range(NO_CACHE, 'server_cpu_percent')}, mlflow {cpu_range(MLFLOW, 'server_cpu_percent')}), "
        f"wrk {cpu_range(None, 'wrk_cpu_percent')} of its own. Peak RSS: platform "
        f"{results['peak_rss_mb'][CACHED]:.0f} MB, platform without cache "
        f"{results['peak_rss_mb'][NO_CACHE]:.0f} MB, mlflow models serve "
        f"{results['peak_rss_mb'][MLFLOW]:.0f} MB.",
        "",
    ]
    write_results("serving", results, "\n".join(lines), smoke=args.smoke)


if __name__ == "__main__":
    main()
