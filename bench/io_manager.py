"""Benchmark: the Parquet IO manager against plain pyarrow.parquet, locally and on S3 (moto).

One partition of realistic interaction logs (1M rows by default), written and read back both
ways on the same data in one run. Prints medians and the IO manager / pyarrow ratios and writes
bench/results/io_manager.{json,md}.

    .venv/bin/python bench/io_manager.py [--rows 1000000] [--repeat 7] [--smoke]

``--smoke``: 2,000 rows, one run each, results to a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import add_smoke_flag, best_of, write_results
from churn_platform.orchestration import asset_keys as keys
from churn_platform.storage.connection import ObjectStoreConnection, open_path
from churn_platform.storage.parquet_io_manager import ParquetIOManager
from churn_platform_tests.support import servers

KEY = keys.INTERACTION_LOGS
PARTITION = "2026-01-15"
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-01-01")


def make_logs(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    day = pd.Timestamp(PARTITION, tz="UTC")
    event_types = np.array(["login", "page_view", "feature_use", "support_visit", "purchase"])
    customer = rng.integers(1, 50_000, rows)
    session = rng.integers(0, 8, rows)
    return pd.DataFrame(
        {
            "event_date": np.full(rows, day.date(), dtype=object),
            "customer_id": customer,
            "event_type": pd.Series(rng.choice(event_types, rows), dtype="string"),
            "timestamp": (
                day + pd.to_timedelta(np.sort(rng.integers(0, 86_400_000_000, rows)), unit="us")
            ).astype("datetime64[us, UTC]"),
            "session_id": pd.Series(
                [f"{c}-{s}" for c, s in zip(customer, session, strict=False)], dtype="string"
            ),
            "plan": pd.Series(rng.choice(["basic", "pro", "enterprise"], rows), dtype="string"),
            "amount": np.where(rng.random(rows) < 0.05, rng.lognormal(3, 0.6, rows), np.nan),
            "properties": pd.Series(
                [f'{{"session_id":"{c}-{s}"}}' for c, s in zip(customer, session, strict=False)],
                dtype="string",
            ),
        }
    )


def io_manager_pair(manager: ParquetIOManager, calls: int):
    # Contexts are built before timing, on one instance: building a context is the harness's cost
    # (~70 ms, more without an instance), not the IO manager's.
    instance = dg.DagsterInstance.ephemeral()
    output_contexts = [
        dg.build_output_context(
            asset_key=KEY,
            partition_key=PARTITION,
            instance=instance,
            definition_metadata={"partition_column": "event_date"},
        )
        for _ in range(calls)
    ]
    # The input's Dagster type is what an asset parameter annotated ``pd.DataFrame`` gets; the IO
    # manager reads it to tell a DataFrame input from a ``ParquetFiles`` one.
    input_context = dg.build_input_context(
        asset_key=KEY,
        partition_key=PARTITION,
        instance=instance,
        asset_partitions_def=PARTITIONS,
        dagster_type=dg.PythonObjectDagsterType(pd.DataFrame),
    )

    def write(df):
        manager.handle_output(output_contexts.pop(), df)

    def read():
        return manager.load_input(input_context)

    return write, read


def pyarrow_pair(path: str, filesystem=None):
    def write(df):
        pq.write_table(
            pa.Table.from_pandas(df, preserve_index=False),
            path,
            filesystem=filesystem,
            coerce_timestamps="us",
            allow_truncated_timestamps=True,
        )

    def read():
        return pq.read_table(path, filesystem=filesystem).to_pandas()

    return write, read


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.repeat = 2_000, 1
    df = make_logs(args.rows)

    s3 = servers.start_s3()
    bucket = s3.new_bucket()
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    connection = ObjectStoreConnection(
        endpoint_url=s3.endpoint, region="us-east-1", access_key_id="testing", secret_access_key="testing"
    )
    s3_fs = open_path(f"s3://{bucket}/x", connection).fs
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "local": (
                io_manager_pair(ParquetIOManager(base_path=f"{tmp}/iom"), args.repeat + 1),
                pyarrow_pair(f"{tmp}/plain.parquet"),
            ),
            "s3 (moto)": (
                io_manager_pair(
                    ParquetIOManager(base_path=f"s3://{bucket}/iom", connection=connection), args.repeat + 1
                ),
                pyarrow_pair(f"{bucket}/plain.parquet", filesystem=s3_fs),
            ),
        }
        for where, ((iom_write, iom_read), (pa_write, pa_read)) in cases.items():
            iom_write(df), pa_write(df)  # warm up: imports, connections, bucket metadata
            assert len(iom_read()) == len(pa_read()) == len(df)
            writes = (lambda w=iom_write: w(df), lambda w=pa_write: w(df))
            for op, iom_fn, pa_fn in (("write", *writes), ("read", iom_read, pa_read)):
                iom, iom_best = best_of(iom_fn, args.repeat)
                plain, plain_best = best_of(pa_fn, args.repeat)
                rows[f"{where} {op}"] = {
                    "io_manager_s": round(iom, 3),
                    "pyarrow_s": round(plain, 3),
                    "ratio": round(iom / plain, 3),
                    "ratio_best": round(iom_best / plain_best, 3),
                }
    s3.server.stop()

    lines = [
        f"IO manager vs plain pyarrow.parquet, one partition of {args.rows:,} rows, {args.repeat} runs each:",
        "",
        "| case | IO manager, median (s) | pyarrow, median (s) | ratio of medians | ratio of best runs |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {case} | {r['io_manager_s']:.3f} | {r['pyarrow_s']:.3f} | {r['ratio']:.2f} | {r['ratio_best']:.2f} |"
        for case, r in rows.items()
    ]
    write_results(
        "io_manager",
        {"rows": args.rows, "repeat": args.repeat, "cases": rows},
        "\n".join(lines) + "\n",
        smoke=args.smoke,
    )


if __name__ == "__main__":
    main()
