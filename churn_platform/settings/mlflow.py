"""Where training runs are tracked and models registered (MLflow)."""

import os
from dataclasses import dataclass
from typing import ClassVar

from churn_platform.settings.declare import setting


@dataclass(frozen=True)
class MLflowSettings:
    directory: str | None = setting(
        "CHURN_MLFLOW_DIR",
        None,
        "local MLflow store (SQLite and artifacts)",
        default_doc="`$CHURN_DATA_DIR/mlflow`",
    )
    tracking_uri: str | None = setting(
        "CHURN_MLFLOW_TRACKING_URI",
        None,
        "tracking and registry store or server",
        default_doc="`sqlite:///$CHURN_MLFLOW_DIR/mlflow.db`",
    )
    artifact_location: str | None = setting(
        "CHURN_MLFLOW_ARTIFACT_LOCATION",
        None,
        "where new experiments keep artifacts (path, s3://, gs://)",
        default_doc="`$CHURN_MLFLOW_DIR/artifacts` with the SQLite store; the server's own otherwise",
    )
    ui_url: str = setting("CHURN_MLFLOW_UI_URL", "http://127.0.0.1:5000", "MLflow UI, for links in metadata")

    SECRETS: ClassVar[dict[str, str]] = {
        "CHURN_MLFLOW_DATABASE_URL": "with a tracking server: its PostgreSQL database "
        "(`postgresql://user:password@host/db`), which `backups/platform_metadata` dumps with pg_dump; "
        "read through `dagster.EnvVar`",
    }

    def resolved(self, local_data_dir: str) -> "MLflowSettings":
        """Defaults that derive from the local data directory, filled in."""
        directory = self.directory or f"{local_data_dir}/mlflow"
        tracking_uri = self.tracking_uri or f"sqlite:///{os.path.abspath(directory)}/mlflow.db"
        # A tracking server stores artifacts itself; a local SQLite store keeps them beside it.
        artifacts = self.artifact_location or (
            os.path.abspath(f"{directory}/artifacts") if tracking_uri.startswith("sqlite:") else None
        )
        return MLflowSettings(directory, tracking_uri, artifacts, self.ui_url)
