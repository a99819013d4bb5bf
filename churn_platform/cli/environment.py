"""Settings the demo derives from its data, kept beside the instance they describe:
``$DAGSTER_HOME/churn.env`` (``./.dagster_home`` by default, as for `make demo`). The demo writes
CHURN_START_DATE there (the partitions start with its data); `make dev` and `churn-platform` read
it, and variables set in the shell win. It is not the repository's ``./.env``, which Dagster's
CLI would load into every process started from the repository (tests included) over their own
settings."""

from __future__ import annotations

import os
from pathlib import Path

import dotenv

ENV_FILE = "churn.env"


def env_file() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or ".dagster_home") / ENV_FILE


def load_dotenv() -> None:
    path = env_file()
    if path.exists():
        dotenv.load_dotenv(path, override=False)


def write_env_value(key: str, value: str) -> Path:
    """Set ``key`` in the instance's env file (created if missing), keeping every other line."""
    target = env_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(exist_ok=True)
    dotenv.set_key(str(target), key, value, quote_mode="never")
    return target.absolute()
