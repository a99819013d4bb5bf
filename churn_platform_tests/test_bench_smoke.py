"""Every bench/ script still runs: each once at a tiny size (``--smoke``: results to a temporary
directory, bench/results/ untouched), exactly as `bench/smoke.py` runs them, but as tests, so that
`make test` runs them beside the rest of the suite instead of before it. Nothing here is timed:
the benchmarks measure when run as scripts (`make bench`)."""

import pytest

from bench import smoke

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script", smoke.discover(), ids=lambda path: path.stem)
def test_the_benchmark_runs_at_a_tiny_size(script, tmp_path):
    passed, _, why = smoke.run(script, timeout=600, logs=tmp_path)
    assert passed, f"bench/{script.name} --smoke: {why}"
