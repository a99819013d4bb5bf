"""Smoke-test the benchmarks: run every bench script with ``--smoke`` (tiny sizes, results to a
temporary directory, bench/results/ untouched), one at a time, each in its own process, and fail
if any of them fails.

Scripts are discovered, not listed: every ``bench/*.py`` except this file and ``_``-prefixed
helpers (``_common.py``), so a new benchmark is covered as soon as it exists; it must accept
``--smoke`` (see ``bench/_common.py``). Prints each script's wall time.

    .venv/bin/python bench/smoke.py [NAME ...] [--timeout 600]

NAME (e.g. ``io_manager``) restricts the run to those scripts.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TAIL_LINES = 40


def discover() -> list[Path]:
    return sorted(
        p
        for p in BENCH.glob("*.py")
        if not p.name.startswith("_") and p.resolve() != Path(__file__).resolve()
    )


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run(script: Path, timeout: float, logs: Path) -> tuple[bool, float, str]:
    """(passed, seconds, why) for one script run with ``--smoke``."""
    stdout, stderr = logs / f"{script.stem}.out", logs / f"{script.stem}.err"
    started = time.perf_counter()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, str(script), "--smoke"],
            cwd=ROOT,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, stopped with it on a timeout
        )
        why = ""
        try:
            code = process.wait(timeout=timeout)
            if code:
                why = f"exit status {code}"
        except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
            # SIGINT first: the scripts' `finally` blocks stop the `dagster dev` and servers they started.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            if isinstance(exc, KeyboardInterrupt):
                raise
            why = f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - started
    if why:
        why += f"; stderr tail ({stderr}):\n{tail(stderr)}"
        if not stderr.read_text(errors="replace").strip():
            why += f"\nstdout tail ({stdout}):\n{tail(stdout)}"
    return not why, seconds, why


def main() -> None:
    scripts = discover()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these scripts (default: all)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per script (default 600)")
    args = parser.parse_args()
    if args.names:
        unknown = sorted(set(args.names) - {s.stem for s in scripts})
        if unknown:
            parser.error(
                f"no such benchmark: {', '.join(unknown)} (have: {', '.join(s.stem for s in scripts)})"
            )
        scripts = [s for s in scripts if s.stem in args.names]

    logs = Path(tempfile.mkdtemp(prefix="bench-smoke-logs-"))
    print(f"smoke-testing {len(scripts)} benchmarks, one at a time (output: {logs})", flush=True)
    times, failed = {}, []
    total = time.perf_counter()
    for script in scripts:
        print(f"  {script.name} ...", end=" ", flush=True)
        passed, seconds, why = run(script, args.timeout, logs)
        times[script.name] = seconds
        print(f"{'ok' if passed else 'FAILED'} in {seconds:.1f} s", flush=True)
        if not passed:
            failed.append(script.name)
            print(f"FAILED: bench/{script.name} --smoke: {why}\n", file=sys.stderr, flush=True)
    total = time.perf_counter() - total

    print("\n| script | seconds |\n|---|---|")
    for name, seconds in times.items():
        print(f"| {name}{' (FAILED)' if name in failed else ''} | {seconds:.1f} |")
    print(f"| total | {total:.1f} |")
    if failed:
        sys.exit(f"bench smoke test failed: {', '.join(failed)} (logs in {logs})")
    print(f"all {len(scripts)} benchmarks ran")


if __name__ == "__main__":
    main()
