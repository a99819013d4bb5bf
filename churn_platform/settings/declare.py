"""How a setting is declared: once, with its variable, default, check and meaning.

Each section of the settings is a frozen dataclass whose fields are declared with ``setting()``.
``read_section`` reads and validates them from an environment mapping; ``docs.py`` renders the
same declarations as the README's configuration tables, so code, defaults and docs cannot drift.
"""

import dataclasses
import datetime as dt
import types
import typing
import zoneinfo
from collections.abc import Mapping
from typing import Any, TypeVar

Section = TypeVar("Section")


class SettingsError(ValueError):
    """A missing or malformed setting; the message names the variable."""


def setting(
    env: str,
    default: Any = None,
    doc: str = "",
    *,
    minimum: int | None = None,
    choices: tuple[str, ...] = (),
    kind: str | None = None,
    default_doc: str | None = None,
) -> Any:
    """A field read from the environment variable ``env``.

    ``kind``: extra validation of a string (``date``, ``cron``, ``timezone``). ``default_doc``:
    how the README states a default that is derived at load time (``None`` here).
    """
    metadata = {
        "env": env,
        "doc": doc,
        "minimum": minimum,
        "choices": choices,
        "kind": kind,
        "default_doc": default_doc,
    }
    return dataclasses.field(default=default, metadata=metadata)


def _base_type(annotation: Any) -> type:
    """``int | None`` -> int."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _parse(name: str, raw: str, field: dataclasses.Field) -> Any:
    meta, kind = field.metadata, _base_type(field.type)
    if kind is bool:
        value = raw.strip().lower()
        if value not in ("", "0", "1", "true", "false", "yes", "no"):
            raise SettingsError(f"{name}={raw!r} is not a boolean (1/0, true/false)")
        return value in ("1", "true", "yes")
    if kind is int:
        try:
            number = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None
        if meta["minimum"] is not None and number < meta["minimum"]:
            raise SettingsError(f"{name} must be >= {meta['minimum']}, got {number}")
        return number
    if meta["choices"] and raw not in meta["choices"]:
        raise SettingsError(f"{name}={raw!r} is not one of {list(meta['choices'])}")
    if meta["kind"] == "date":
        try:
            dt.date.fromisoformat(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a YYYY-MM-DD date") from None
    elif meta["kind"] == "cron":
        if len(raw.split()) != 5:
            raise SettingsError(f"{name}={raw!r} is not a five-field cron expression")
    elif meta["kind"] == "timezone":
        try:
            zoneinfo.ZoneInfo(raw)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"{name}={raw!r} is not an IANA time zone") from None
    return raw


def read_section(cls: type[Section], environ: Mapping[str, str]) -> Section:
    """The section with every declared variable read from ``environ`` (unset or empty: the
    default), each value validated; the error names the variable."""
    values = {}
    for field in dataclasses.fields(cls):
        raw = environ.get(field.metadata["env"])
        if raw is not None and raw != "":
            values[field.name] = _parse(field.metadata["env"], raw, field)
    return cls(**values)


def declared(cls: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))
