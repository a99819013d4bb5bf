"""A contract's table-level rules checked in DuckDB over what an asset wrote: keys unique, required
columns never null, values above their minimum, null shares under their ceilings. One query per
table, over the Arrow table or the Parquet files themselves (never through pandas)."""

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import duckdb
import pyarrow as pa

from churn_platform.contracts.declare import Contract
from churn_platform.storage.files import uri_of
from churn_platform.storage.parquet_files import ParquetFiles


@dataclass(frozen=True)
class Verification:
    rows: int
    problems: list[str]  # each names the rule, the column and the count
    counts: dict[str, int]  # rule -> rows (or key groups) breaking it

    @property
    def passed(self) -> bool:
        return not self.problems


def verify(data: pa.Table | ParquetFiles, contract: Contract) -> Verification:
    con = duckdb.connect()
    try:
        if isinstance(data, pa.Table):
            con.register("data", data)
            source = "data"
        else:
            if data.protocol:
                con.register_filesystem(data.paths[0].fs)
            source = "read_parquet($files)"
        params = {} if isinstance(data, pa.Table) else {"files": [uri_of(p) for p in data.paths]}
        present = set(data.schema.names if isinstance(data, pa.Table) else _columns(con, source, params))
        checks: dict[str, str] = {"rows": "count(*)"}
        for column in contract.columns:
            if column.name not in present:
                continue
            quoted = f'"{column.name}"'
            if not column.nullable:
                checks[f"not_null:{column.name}"] = f"count(*) FILTER (WHERE {quoted} IS NULL)"
            if column.minimum is not None:
                checks[f"minimum:{column.name}"] = (
                    f"count(*) FILTER (WHERE {quoted} < {float(column.minimum)})"
                )
            if column.max_null_fraction is not None:
                checks[f"nulls:{column.name}"] = f"count(*) FILTER (WHERE {quoted} IS NULL)"
        select = ", ".join(f'{sql} AS "{name}"' for name, sql in checks.items())
        values = dict(
            zip(checks, con.sql(f"SELECT {select} FROM {source}", params=params).fetchall()[0], strict=True)
        )
        duplicates = 0
        if contract.keys and set(contract.keys) <= present:
            keys = ", ".join(f'"{k}"' for k in contract.keys)
            duplicates = con.sql(
                f"SELECT count(*) FROM (SELECT {keys} FROM {source} GROUP BY {keys} HAVING count(*) > 1)",
                params=params,
            ).fetchall()[0][0]
    finally:
        con.close()
    rows = int(values.pop("rows"))
    problems, counts = [], {}
    missing = [c.name for c in contract.columns if c.name not in present]
    if missing:
        problems.append(f"columns missing: {missing}")
        counts["columns"] = len(missing)
    if duplicates:
        problems.append(f"{duplicates} key(s) ({', '.join(contract.keys)}) appear more than once")
        counts["unique_key"] = int(duplicates)
    by_name = {c.name: c for c in contract.columns}
    for name, count in values.items():
        kind, column = name.split(":", 1)
        if kind == "nulls":
            ceiling = by_name[column].max_null_fraction
            if rows and count / rows > ceiling:
                problems.append(f"{column}: {count} of {rows} rows null, above the {ceiling:.0%} ceiling")
                counts[name] = int(count)
        elif count:
            what = "null" if kind == "not_null" else f"below {by_name[column].minimum:g}"
            problems.append(f"{column}: {count} row(s) {what}")
            counts[name] = int(count)
    return Verification(rows, problems, counts)


def _columns(con: duckdb.DuckDBPyConnection, source: str, params: dict) -> list[str]:
    return [row[0] for row in con.sql(f"DESCRIBE SELECT * FROM {source}", params=params).fetchall()]


def contract_check_result(data: pa.Table | ParquetFiles, contract: Contract) -> dg.AssetCheckResult:
    """The contract's table rules over what an asset wrote, as the result of its `contract` check
    (an ERROR when broken: blocking checks hold downstream assets back)."""
    result = verify(data, contract)
    return dg.AssetCheckResult(
        passed=result.passed,
        description="; ".join(result.problems) or f"{result.rows} rows keep the {contract.asset} contract",
        metadata={"rows": result.rows, "broken": dg.MetadataValue.json(result.counts)},
    )


def build_contract_check(
    key: dg.AssetKey, contract: Contract, partitions_def: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    """The blocking `contract` check of an asset whose files an engine can scan: the contract's
    table rules over the partition(s) the run wrote, in one DuckDB query."""
    keys = f"keys ({', '.join(contract.keys)}) unique, " if contract.keys else ""
    spec = dg.AssetCheckSpec(
        "contract",
        asset=key,
        blocking=True,
        partitions_def=partitions_def,
        description=f"The {contract.asset} contract on the written partition(s): {keys}required columns "
        "never null, values above their minimum, null shares under their ceilings. Blocking: downstream "
        "assets wait for a fix.",
    )

    @dg.multi_asset_check(
        name=f"{'__'.join(key.path)}_contract", specs=[spec], ins={"written": dg.AssetIn(key=key)}
    )
    def contract_check(written: ParquetFiles) -> Iterator[dg.AssetCheckResult]:
        yield contract_check_result(written, contract)

    return contract_check
