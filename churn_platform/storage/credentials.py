"""Secrets are referenced by environment variable name (dagster.EnvVar), never held as values."""

from collections.abc import Collection

import dagster as dg


def env_secret(name: str, secrets_set: Collection[str]) -> dg.EnvVar | None:
    """A reference to ``name`` if it is set (Dagster resolves it at run time), else None so that
    the client library's own credential chain (instance role, workload identity) applies."""
    return dg.EnvVar(name) if name in secrets_set else None


def reveal(value: str | None) -> str | None:
    """The secret's value, at the moment a client needs it. Inside a run Dagster has already
    resolved EnvVars; used directly (CLI, scripts) we resolve them here."""
    return value.get_value() if isinstance(value, dg.EnvVar) else value
