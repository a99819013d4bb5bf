"""`churn-platform serve`: the scoring service (churn_platform/serving) wired to the resources the
settings describe, run on uvicorn."""

from __future__ import annotations

import gc
import logging

from churn_platform.settings import PlatformSettings, SettingsError
from churn_platform.storage.credentials import env_secret, reveal


def build_service(settings: PlatformSettings):
    """The FastAPI app and what runs beside it (started: the champion is loaded and verified, the
    inference log flushes), and a function that stops them."""
    from churn_platform.inference.log import InferenceLog
    from churn_platform.resources import build_resources
    from churn_platform.serving.app import CRMLoop, build_app
    from churn_platform.serving.champion import ChampionFollower

    api_key = reveal(env_secret("CHURN_SERVING_API_KEY", settings.secrets_set))
    if not api_key:
        raise SettingsError(
            "CHURN_SERVING_API_KEY must be set: the service does not run without authentication"
        )
    resources = build_resources(settings)
    webhook_secret = reveal(env_secret("CHURN_CRM_WEBHOOK_SECRET", settings.secrets_set))
    crm_loop = (
        CRMLoop(
            # Two quick attempts: a write-back slower than that answers 503 and Zendesk redelivers,
            # instead of holding a thread the scoring requests share.
            crm=resources["crm"].model_copy(
                update={"timeout_seconds": 5.0, "max_attempts": 2, "backoff_max_seconds": 1.0}
            ),
            secret=webhook_secret,
            risk_field_id=settings.crm.risk_field_id,
            medium_percent=settings.crm.risk_medium_percent,
            high_percent=settings.crm.risk_high_percent,
            tolerance_seconds=settings.crm.webhook_tolerance_seconds,
        )
        if webhook_secret
        else None
    )
    inference_log = InferenceLog(
        resources["inference_log_store"].root(), settings.serving.inference_log_flush_seconds
    )
    follower = ChampionFollower(resources["mlflow_tracking"], settings.serving.model_poll_seconds)
    follower.start()
    inference_log.start()
    store = resources["online_store"]
    app = build_app(
        follower,
        store.client(),
        store.prefix,
        api_key,
        settings.serving.max_feature_age_days,
        inference_log=inference_log,
        crm_loop=crm_loop,
        score_cache_entries=settings.serving.score_cache_entries,
    )

    def stop() -> None:
        follower.stop()
        inference_log.stop()  # what is buffered is written

    return app, stop


def run(settings: PlatformSettings, host: str, port: int) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, stop = build_service(settings)
    # The libraries, the model and the app are loaded for good: moving them out of the collector's
    # reach keeps full garbage collections (which walk every object) from stalling requests.
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        stop()
