"""The model the service scores with: the registry's `champion`, re-checked every few seconds and
swapped in when the alias moves (loaded and verified first, then one reference assignment, so no
request sees a half-loaded model and none fails during the switch). Loading also compiles the
pipeline into its fast path and checks it bit for bit against the pipeline (serving/fast_path.py);
a pipeline that cannot be compiled, or whose compiled copy differs, is served as it is."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from churn_platform.serving.fast_path import FastPath, prepare_fast_path
from churn_platform.storage.model_registry import CHAMPION, MLflowTracking, NoChampionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    pipeline: Any
    version: str
    sha256: str
    fast: FastPath | None = None  # None: not prepared (the pipeline scores)

    @property
    def fast_path(self) -> bool:
        return self.fast is not None and self.fast.enabled

    @property
    def fast_path_reason(self) -> str:
        return self.fast.reason if self.fast is not None else "not prepared"


def serving_model(pipeline: Any, version: str, sha256: str) -> ServingModel:
    """A loaded pipeline ready to serve: its fast path compiled and verified, or the reason not."""
    fast = prepare_fast_path(pipeline, label=f"model v{version} (sha256 {sha256[:12]})")
    return ServingModel(pipeline, version, sha256, fast)


class ChampionFollower:
    def __init__(self, registry: MLflowTracking, poll_seconds: float) -> None:
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.model: ServingModel | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load the champion if the alias names another version than the one served; True if it
        switched. A version whose files do not match their recorded SHA-256 is not served."""
        version = self.registry.champion_version()
        if version is None:
            raise NoChampionError(f"registered model {self.registry.model_name!r} has no {CHAMPION!r} alias")
        if self.model is not None and self.model.version == version:
            return False
        pipeline, artifact = self.registry.load_version(version)  # verified against its recorded digest
        model = serving_model(pipeline, artifact.version, artifact.sha256)  # fast path compiled, verified
        self.model = model  # the switch: one assignment
        log.info(
            "serving %s v%s (sha256 %s, fast path %s)",
            self.registry.model_name,
            artifact.version,
            artifact.sha256,
            "on" if model.fast_path else "off",
        )
        return True

    def start(self) -> None:
        self.refresh()  # fails the start when there is no (valid) champion
        self._thread = threading.Thread(target=self._follow, name="champion-follower", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
                self.last_error = None
            except Exception as exc:  # keep serving the loaded version; readiness reports the problem
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "champion not refreshed (still serving v%s): %s", self.model and self.model.version, exc
                )

    def stop(self) -> None:
        self._stop.set()
