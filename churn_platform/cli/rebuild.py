"""churn-platform rebuild-model: retrain a backed-up model from the training data in its snapshot
and check that the metrics equal the recorded ones (the backup is enough to reproduce the model)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from churn_platform.backups.catalog import MANIFEST, RestoreRefused, find_snapshot, read_verified
from churn_platform.backups.manifest import MODEL_METRICS
from churn_platform.backups.resources import BackupStore
from churn_platform.ml.training import train_churn_model
from churn_platform.orchestration.partitions import LABEL_HORIZON_DAYS
from churn_platform.storage.parquet_io_manager import parquet_bytes_to_dataframe


@dataclass(frozen=True)
class RebuildReport:
    prefix: str
    recorded: dict[str, float]
    rebuilt: dict[str, float]

    @property
    def mismatches(self) -> list[str]:
        return [
            f"{name}: recorded {self.recorded[name]!r}, rebuilt {self.rebuilt.get(name)!r}"
            for name in self.recorded
            if not math.isclose(
                self.recorded[name], self.rebuilt.get(name, math.nan), rel_tol=0, abs_tol=1e-12
            )
        ]


def rebuild_from_snapshot(store: BackupStore, prefix: str) -> RebuildReport:
    """Verify the snapshot, train on its training-set file with the recorded configuration, and
    compare the model's metrics with those recorded when it was trained."""
    snapshot = find_snapshot(store, prefix)
    if snapshot.kind != "model":
        raise RestoreRefused(f"{prefix} is a {snapshot.kind} snapshot; rebuild-model needs a model snapshot")
    contents, problems = read_verified(store, snapshot)
    if problems:
        raise RestoreRefused(f"snapshot {prefix} is damaged; nothing rebuilt:\n" + "\n".join(problems))
    manifest = json.loads(contents.get(MANIFEST) or store.read(f"{snapshot.prefix}/{MANIFEST}"))
    training = manifest["training_set"]
    if "backup" not in training or not manifest["model"].get("training_config"):
        raise RestoreRefused(f"snapshot {prefix} predates training-data backups: it cannot be rebuilt")
    config = manifest["model"]["training_config"]
    model = train_churn_model(
        parquet_bytes_to_dataframe(contents[training["backup"]]),
        seed=int(config["seed"]),
        horizon_days=LABEL_HORIZON_DAYS,
        evaluation_dates=int(config["evaluation_dates"]),
    )
    rebuilt = {
        **model.metrics,
        "fit_churn_rate": model.split.fit_churn_rate,
        "evaluation_churn_rate": model.split.evaluation_churn_rate,
    }
    recorded = {k: float(v) for k, v in manifest["model"]["metrics"].items() if k in MODEL_METRICS}
    return RebuildReport(
        snapshot.prefix, recorded, {k: float(v) for k, v in rebuilt.items() if k in MODEL_METRICS}
    )
