"""What a feature engine is: it runs a DuckDB-dialect query over named tables.

The features are defined once, as SQL in DuckDB's dialect; the engine is chosen per environment
(CHURN_FEATURE_ENGINE): ``DuckDBEngine`` (embedded) or ``SparkEngine`` (the same SQL transpiled).
Large inputs arrive as ``ParquetFiles`` and are scanned by the engine itself.
"""

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import dagster as dg
import pandas as pd

from churn_platform.storage.parquet_files import ParquetFiles

# A table the feature SQL reads: rows in memory, or partition files the engine scans itself.
Table = pd.DataFrame | ParquetFiles
# A function running a DuckDB-dialect query over named tables: what the feature code needs
# (an engine's ``query_pandas`` or ``query_table``).
SqlRunner = Callable[[str, dict[str, Table]], Any]

# Floating-point sums depend on the order rows arrive in, which parallel scans do not fix. Money
# and sentiment are summed as decimals (exact, order-free), so every engine and every run gives
# the same bits: feature files are reproducible byte for byte.
MONEY = "DECIMAL(18, 2)"
SCORE = "DECIMAL(18, 9)"


class FeatureEngine(dg.ConfigurableResource):
    """Runs a DuckDB-dialect query over named tables; one method per kind of result."""

    @abstractmethod
    def query_table(self, sql: str, tables: dict[str, Table]) -> Any:
        """The engine's own table (Arrow from DuckDB, a ``SparkTable`` that Spark writes itself),
        for an asset to return to ParquetIOManager."""

    @abstractmethod
    def query_pandas(self, sql: str, tables: dict[str, Table]) -> pd.DataFrame:
        """The result as pandas, for small results that Python code goes on with."""
