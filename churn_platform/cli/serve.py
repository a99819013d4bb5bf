"""`churn-platform serve`: the scoring service (churn_platform/serving) wired to the resources the
settings describe, run on uvicorn."""

from __future__ import annotations

import logging

from churn_platform.settings import PlatformSettings, SettingsError
from churn_platform.storage.credentials import env_secret, reveal


def build_service(settings: PlatformSettings):
    """The FastAPI app and its champion follower (started: the champion is loaded and verified)."""
    from churn_platform.resources import build_resources
    from churn_platform.serving.app import build_app
    from churn_platform.serving.champion import ChampionFollower

    api_key = reveal(env_secret("CHURN_SERVING_API_KEY", settings.secrets_set))
    if not api_key:
        raise SettingsError(
            "CHURN_SERVING_API_KEY must be set: the service does not run without authentication"
        )
    resources = build_resources(settings)
    follower = ChampionFollower(resources["mlflow_tracking"], settings.serving.model_poll_seconds)
    follower.start()
    store = resources["online_store"]
    app = build_app(follower, store.client(), store.prefix, api_key, settings.serving.max_feature_age_days)
    return app, follower


def run(settings: PlatformSettings, host: str, port: int) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, follower = build_service(settings)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        follower.stop()
