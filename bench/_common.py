"""Helpers shared by the benchmark scripts: timing and writing results the README cites."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """(median, min) wall seconds over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def write_results(name: str, results: dict, markdown: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, **results}
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)
