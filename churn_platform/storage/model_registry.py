"""The model registry: a small resource around the MLflow client for tracking runs, registered
versions and the `champion` alias, shared by every stage that trains, serves or backs up models.

A registered version's files, as MLflow stores them, are the one model artifact: promotion sets an
alias on them, scoring loads them, backups copy them, and all three record the same digest
(``ModelArtifact.sha256``). (dagster-mlflow offers only a legacy resource and pins pandas<3, so
the platform keeps its own.)
"""

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

if TYPE_CHECKING:  # MLflow and matplotlib take ~2.5 s to import: only runs that use them pay it
    from matplotlib.figure import Figure
    from mlflow.tracking import MlflowClient

CHAMPION = "champion"
# MLflow stores scikit-learn models with skops, which loads only types it is told to trust. These
# are the platform's own pipeline pieces, reviewed: our column converter, numpy dtypes, and the
# tree predictor of scikit-learn's gradient boosting (trusted because we write these files).
SKOPS_TRUSTED_TYPES = [
    "churn_platform.ml.training._as_object",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]


class NoChampionError(RuntimeError):
    pass


def directory_files(directory: str | Path) -> dict[str, str]:
    """Every file under ``directory`` (relative POSIX path) with its SHA-256."""
    root = Path(directory)
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def files_digest(files: dict[str, str]) -> str:
    """One SHA-256 for a set of files: the hash of their sorted ``sha256sum`` listing, so
    ``find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs sha256sum | sha256sum`` in a copy of
    the directory gives it too."""
    listing = "".join(f"{sha}  {path}\n" for path, sha in sorted(files.items()))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ModelArtifact:
    """The files of one registered model version, downloaded to ``local_dir``."""

    version: str
    uri: str  # models:/<name>/<version>
    local_dir: str
    files: dict[str, str]  # relative path -> SHA-256

    @property
    def sha256(self) -> str:
        return files_digest(self.files)

    def discard(self) -> None:
        """Delete the downloaded copy (the registry keeps the files)."""
        shutil.rmtree(self.local_dir, ignore_errors=True)


class ModelIntegrityError(RuntimeError):
    """A registered version's files no longer hash to the digest recorded when it was trained."""


@dataclass(frozen=True)
class TrainingRecord:
    run_id: str
    version: str
    run_url: str | None


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = {EXPERIMENT_KIND_TAG: "custom_model_development"}


class MLflowTracking(dg.ConfigurableResource):
    """Where training runs are tracked and models registered (local SQLite or a tracking server)."""

    tracking_uri: str = Field(description="sqlite:///path/mlflow.db locally; http(s)://server in production.")
    artifact_location: str | None = Field(
        default=None, description="Experiment artifacts (path, s3://, gs://)."
    )
    experiment_name: str = "churn_platform"
    model_name: str = "churn_model"
    ui_url: str | None = Field(default=None, description="Base URL of the MLflow UI, for links in metadata.")
    database_url: str | None = Field(
        default=None, description="A tracking server's PostgreSQL database, for metadata backups (a secret)."
    )

    def client(self) -> "MlflowClient":
        from mlflow.tracking import MlflowClient

        if self.tracking_uri.startswith("sqlite:///"):
            os.makedirs(os.path.dirname(self.tracking_uri[len("sqlite:///") :]) or ".", exist_ok=True)
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def experiment_id(self, client: "MlflowClient") -> str:
        """The experiment, typed for classical ML so the MLflow UI opens it on its training runs
        (untyped, MLflow 3 opens it in the GenAI view)."""
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return client.create_experiment(
                self.experiment_name, artifact_location=self.artifact_location, tags=EXPERIMENT_KIND
            )
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND[EXPERIMENT_KIND_TAG]:
            client.set_experiment_tag(
                experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND[EXPERIMENT_KIND_TAG]
            )
        return experiment.experiment_id

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        return (
            f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}" if self.ui_url else None
        )

    def log_training(
        self,
        pipeline,
        features_example: pd.DataFrame,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        lineage: dict[str, Any],
        figures: dict[str, "Figure"],
        run_name: str,
    ) -> TrainingRecord:
        """One run: params, metrics and tags in one batch, plots and lineage as artifacts, the
        pipeline as an MLflow model with signature and input example, registered as a new version."""
        import matplotlib.pyplot as plt
        import mlflow
        import mlflow.sklearn
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.models import infer_signature

        client = self.client()
        experiment_id = self.experiment_id(client)
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        try:
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items() if np.isfinite(v)],
                params=[Param(k, str(v)[:6000]) for k, v in params.items()],
                tags=[RunTag("dagster.lineage_files", str(len(lineage.get("files", []))))],
            )
            client.log_dict(run_id, lineage, "lineage.json")
            for name, figure in figures.items():
                client.log_figure(run_id, figure, f"plots/{name}")
                plt.close(figure)
            example = features_example.head(5)
            signature = infer_signature(example, pipeline.predict_proba(example)[:, 1])
            # The fluent API logs models; point it at this resource's stores for the call.
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            with mlflow.start_run(run_id=run_id):
                info = mlflow.sklearn.log_model(
                    pipeline,
                    name="model",
                    signature=signature,
                    input_example=example,
                    registered_model_name=self.model_name,
                    skops_trusted_types=SKOPS_TRUSTED_TYPES,
                    pip_requirements=[
                        f"{p}=={package_version(p)}" for p in ("scikit-learn", "pandas", "numpy")
                    ],
                )
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        return TrainingRecord(
            run_id=run_id,
            version=str(info.registered_model_version),
            run_url=self.run_url(experiment_id, run_id),
        )

    # -- registry ---------------------------------------------------------------------------------------
    def champion_version(self) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client().get_model_version_by_alias(self.model_name, CHAMPION).version)
        except MlflowException:
            return None

    def champion_record(self) -> dict[str, Any] | None:
        """The champion's version, its registry tags and the training cutoff it was trained on
        (from its tags, or its run's parameters for versions registered before they were tagged),
        or None when there is no champion."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            version = client.get_model_version_by_alias(self.model_name, CHAMPION)
        except MlflowException:
            return None
        tags = dict(version.tags)
        cutoff = tags.get("training_cutoff")
        if not cutoff and version.run_id:
            cutoff = client.get_run(version.run_id).data.params.get("training_cutoff")
        return {"version": str(version.version), "training_cutoff": cutoff, "tags": tags}

    def tag_version(self, version: str, tags: dict[str, Any]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(self.model_name, version, key, str(value)[:5000])

    def log_text(self, run_id: str, text: str, path: str) -> None:
        """A text artifact of a run (written again when it exists)."""
        self.client().log_text(run_id, text, path)

    def download_version(self, version: str, dst_path: str | None = None) -> ModelArtifact:
        """The registered version's files, byte for byte as the registry stores them (downloaded
        from their storage location: a ``models:/`` download adds a ``registered_model_meta`` file)."""
        import mlflow.artifacts

        stored = self.client().get_model_version_download_uri(self.model_name, str(version))
        local_dir = mlflow.artifacts.download_artifacts(
            artifact_uri=stored, dst_path=dst_path or tempfile.mkdtemp(), tracking_uri=self.tracking_uri
        )
        uri = f"models:/{self.model_name}/{version}"
        return ModelArtifact(str(version), uri, local_dir, directory_files(local_dir))

    def load_version(self, version: str) -> tuple[Any, ModelArtifact]:
        """The version's pipeline, loaded from exactly the files whose digest is returned with it,
        after checking that digest against the one recorded on the version when it was trained."""
        import mlflow.sklearn

        artifact = self.download_version(version)
        try:
            recorded = self.client().get_model_version(self.model_name, str(version)).tags.get("model_sha256")
            if recorded and recorded != artifact.sha256:
                raise ModelIntegrityError(
                    f"{artifact.uri}: its files hash to {artifact.sha256}, not the {recorded} recorded when it "
                    "was trained; the registry was changed, so the model is not loaded"
                )
            return mlflow.sklearn.load_model(artifact.local_dir), artifact
        finally:
            artifact.discard()

    def load_champion(self) -> tuple[Any, ModelArtifact]:
        version = self.champion_version()
        if version is None:
            raise NoChampionError(
                f"registered model {self.model_name!r} has no {CHAMPION!r} alias at {self.tracking_uri}: "
                "train a model that passes the promotion gate (materialize ml/training_set and ml/churn_model)"
            )
        return self.load_version(version)

    def promote(self, version: str, reason: str) -> None:
        client = self.client()
        client.set_model_version_tag(self.model_name, version, "promotion", "passed")
        client.set_model_version_tag(self.model_name, version, "promotion_reason", reason[:5000])
        client.set_registered_model_alias(self.model_name, CHAMPION, version)

    def reject(self, version: str, reasons: list[str]) -> None:
        client = self.client()
        client.set_model_version_tag(self.model_name, version, "promotion", "rejected")
        client.set_model_version_tag(self.model_name, version, "promotion_reason", json.dumps(reasons)[:5000])
