"""DuckDBEngine: the feature SQL embedded, in this process (the default engine)."""

import duckdb
import pandas as pd
import pyarrow as pa

from churn_platform.engines.base import FeatureEngine, Table
from churn_platform.storage.parquet_files import ParquetFiles


class DuckDBEngine(FeatureEngine):
    threads: int = 2

    def query_table(self, sql: str, tables: dict[str, Table]) -> pa.Table:
        con = duckdb.connect(config={"threads": self.threads})
        try:
            for name, table in tables.items():
                if isinstance(table, ParquetFiles):
                    if table.protocol:  # s3:// or gs://: DuckDB reads through our configured fsspec client
                        con.register_filesystem(table.filesystem())
                    con.read_parquet(table.uris).create_view(name)
                else:
                    # Arrow keeps date columns as DATE (pandas object columns would need type sniffing).
                    con.register(name, pa.Table.from_pandas(table, preserve_index=False))
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()

    def query_pandas(self, sql: str, tables: dict[str, Table]) -> pd.DataFrame:
        return self.query_table(sql, tables).to_pandas()


def query_pandas(sql: str, tables: dict[str, Table]) -> pd.DataFrame:
    """The default runner of the feature functions: DuckDB, in this process."""
    return DuckDBEngine().query_pandas(sql, tables)
