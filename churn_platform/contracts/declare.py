"""How a contract is declared: columns (type, meaning, nullability, uniqueness) and row rules.

``Contract.table_schema()`` is the column schema Dagster shows on the asset's page (definition
metadata ``dagster/column_schema``): types, descriptions and constraints, with every rule listed on
the column it checks.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    nullable: bool = True
    unique: bool = False
    minimum: float | None = None  # every value at least this (counts, money)
    max_null_fraction: float | None = None  # a partition with more nulls than this breaks the contract


@dataclass(frozen=True)
class Rule:
    """A row rule: a row that breaks it is quarantined with the rule's name, column and value."""

    name: str
    column: str
    description: str


@dataclass(frozen=True)
class Contract:
    asset: str
    columns: tuple[Column, ...]
    rules: tuple[Rule, ...] = ()
    keys: tuple[str, ...] = ()  # columns that identify a row (unique together), if any
    notes: Mapping[str, str] = field(default_factory=dict)

    def rule(self, name: str) -> Rule:
        return next(r for r in self.rules if r.name == name)

    def table_schema(self) -> dg.TableSchema:
        def constraints(column: Column) -> dg.TableColumnConstraints:
            other = [f"{r.name}: {r.description}" for r in self.rules if r.column == column.name]
            if column.minimum is not None:
                other.append(f">= {column.minimum:g}")
            if column.max_null_fraction is not None:
                other.append(f"at most {column.max_null_fraction:.0%} null per partition")
            return dg.TableColumnConstraints(nullable=column.nullable, unique=column.unique, other=other)

        return dg.TableSchema(
            columns=[
                dg.TableColumn(c.name, c.type, description=c.description, constraints=constraints(c))
                for c in self.columns
            ],
            constraints=dg.TableConstraints(other=[f"unique together: {', '.join(self.keys)}"])
            if self.keys
            else None,
        )

    def definition_metadata(self) -> dict:
        return {"dagster/column_schema": self.table_schema()}
