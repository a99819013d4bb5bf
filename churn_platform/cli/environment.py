"""The project's ``.env`` file: `dagster dev` and the `dagster` CLI load ``./.env`` into the
environment (Dagster's convention), and so does `churn-platform`, so the settings the demo writes
there (CHURN_START_DATE, following the demo's data) reach every process started from this folder.
Variables set in the shell win over the file."""

from __future__ import annotations

import os
from pathlib import Path

import dotenv

ENV_FILE = ".env"


def load_dotenv(path: str = ENV_FILE) -> None:
    if os.path.exists(path):
        dotenv.load_dotenv(path, override=False)


def write_env_value(key: str, value: str, path: str = ENV_FILE) -> Path:
    """Set ``key`` in the ``.env`` file (created if missing), keeping every other line."""
    target = Path(path)
    target.touch(exist_ok=True)
    dotenv.set_key(str(target), key, value, quote_mode="never")
    return target.absolute()
