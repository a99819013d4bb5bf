"""Prometheus, the Pushgateway and the metrics exporter as real processes on loopback for the
observability tests, each on a free port with its own temporary directory, stopped at the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from churn_platform_tests.support.servers import free_port, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
BIN = Path(sys.executable).parent


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(
            f"{tool} is not installed: run `make observability-tools` (Debian's prometheus packages)"
        )
    return path


class Process:
    """A child process with its output in a log file; ``stop`` terminates it (then kills it)."""

    def __init__(
        self, argv: list[str], log: Path, port: int, env: dict[str, str] | None = None, timeout: float = 30
    ):
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "wb") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    wait_for_port(port, timeout=0.5)
                    return
                except TimeoutError:
                    continue
            raise TimeoutError(f"{argv[0]} did not listen on {port} within {timeout}s:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def log_tail(self, lines: int = 40) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def pushgateway(root: Path) -> Process:
    port = free_port()
    return Process(
        [require("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}"],
        root / "pushgateway.log",
        port,
    )


def exporter(env: dict[str, str], root: Path) -> Process:
    """`churn-platform metrics serve` in its own process, reading the instance of env's DAGSTER_HOME."""
    port = free_port()
    return Process(
        [str(BIN / "churn-platform"), "metrics", "serve", "--port", str(port)],
        root / "exporter.log",
        port,
        env={**os.environ, **env},
        timeout=90,
    )


def prometheus(root: Path, exporter_port: int, gateway_port: int, interval: str = "1s") -> Process:
    """Prometheus scraping the exporter and the Pushgateway every ``interval`` with the repo's alert
    rules, evaluated at the same interval: the jobs of deploy/prometheus/prometheus.yml on loopback."""
    port = free_port()
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "churn_platform_exporter",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
            },
            {
                "job_name": "churn_platform_pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}],
            },
        ],
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    (root / "tsdb").mkdir(exist_ok=True)
    server = Process(
        [
            require("prometheus"),
            f"--config.file={path}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        root / "prometheus.log",
        port,
    )
    deadline = time.monotonic() + 30
    while not _ready(server.url):  # it listens before its storage is open
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"Prometheus not ready:\n{server.log_tail()}")
        time.sleep(0.2)
    return server


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def api(prometheus_url: str, path: str, **params: str) -> Any:
    """A Prometheus HTTP API call; returns ``data`` (raises on an error status)."""
    url = f"{prometheus_url}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:  # 400/422: a bad expression; the body says why
        body = json.load(exc)
    if body.get("status") != "success":
        raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def query(prometheus_url: str, expr: str) -> dict[tuple, float]:
    """An instant query: labels (sorted items, without __name__) -> value."""
    data = api(prometheus_url, "query", query=expr)
    if data["resultType"] == "scalar":
        return {(): float(data["result"][1])}
    return {
        tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(r["value"][1])
        for r in data["result"]
    }
