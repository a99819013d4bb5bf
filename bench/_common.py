"""Helpers shared by the benchmark scripts: timing, the ``--smoke`` flag, and writing results the
README cites.

Every script takes ``--smoke``: the whole script once at a tiny size, to check it still runs
(``bench/smoke.py`` runs them all). Smoke results go to a temporary directory, never to
bench/results/, which holds the figures the README quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def add_smoke_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run the whole benchmark once at a tiny size to check it works; results go to a "
        "temporary directory, not bench/results/ (other size options are ignored)",
    )


def best_of(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """(median, min) wall seconds over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def write_results(name: str, results: dict, markdown: str, smoke: bool = False) -> Path:
    """Write ``<name>.{json,md}`` to bench/results/ (a smoke run: a new temporary directory) and
    print the markdown. Returns the directory written to."""
    directory = Path(tempfile.mkdtemp(prefix=f"bench-smoke-{name}-")) if smoke else RESULTS
    directory.mkdir(exist_ok=True)
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **({"smoke": True} if smoke else {}),
        **results,
    }
    (directory / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / f"{name}.md").write_text(markdown)
    print(markdown)
    if smoke:
        print(f"smoke run: results written to {directory}, not to {RESULTS}")
    return directory
