"""Runs the feature SQL on an embedded DuckDB over in-memory Arrow tables.

The features are defined as SQL so that one definition serves every engine: DuckDB here, Spark
SQL for cluster runs.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa


def run_sql(sql: str, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    con = duckdb.connect(config={"threads": 2})
    try:
        for name, frame in tables.items():
            # Arrow keeps date columns as DATE (pandas object columns would need type sniffing).
            con.register(name, pa.Table.from_pandas(frame, preserve_index=False))
        return con.sql(sql).to_arrow_table().to_pandas()
    finally:
        con.close()
