"""Real-time scoring: the online feature store (Redis) and the scoring service."""

from dataclasses import dataclass
from typing import ClassVar

from churn_platform.settings.declare import setting


@dataclass(frozen=True)
class ServingSettings:
    redis_url: str = setting(
        "CHURN_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        "the online feature store (Redis); its password goes in `CHURN_REDIS_PASSWORD`, not here",
    )
    key_prefix: str = setting(
        "CHURN_ONLINE_KEY_PREFIX", "churn", "prefix of every Redis key the platform writes"
    )
    keep_versions: int = setting(
        "CHURN_ONLINE_KEEP_VERSIONS",
        2,
        "feature versions (as-of dates) kept in Redis: the current one and the ones before it (at least 2, "
        "so that a request that has just read the pointer finds its version)",
        minimum=2,
    )
    host: str = setting("CHURN_SERVING_HOST", "127.0.0.1", "`churn-platform serve`: address to listen on")
    port: int = setting("CHURN_SERVING_PORT", 8000, "`churn-platform serve`: port", minimum=1)
    max_feature_age_days: int = setting(
        "CHURN_SERVING_MAX_FEATURE_AGE_DAYS",
        2,
        "a score from features older than this many days (behind today, UTC) is refused (409)",
        minimum=0,
    )
    model_poll_seconds: int = setting(
        "CHURN_SERVING_MODEL_POLL_SECONDS",
        10,
        "how often the service checks which version the `champion` alias names (it switches without a restart)",
        minimum=1,
    )
    score_cache_entries: int = setting(
        "CHURN_SERVING_SCORE_CACHE_ENTRIES",
        100_000,
        "scores kept in memory, keyed by model SHA-256 and the stored feature row, so a customer asked "
        "about again is not re-scored until their features or the model change (about 1 KB each; 0: "
        "score every request)",
        minimum=0,
    )
    inference_log_flush_seconds: int = setting(
        "CHURN_INFERENCE_LOG_FLUSH_SECONDS",
        10,
        "the service writes its buffered predictions to the inference log at least this often (a crash "
        "loses at most this much of the log; the scores themselves were already answered)",
        minimum=1,
    )

    SECRETS: ClassVar[dict[str, str]] = {
        "CHURN_REDIS_PASSWORD": "password of the online feature store, read through `dagster.EnvVar`",
        "CHURN_SERVING_API_KEY": "the key callers send in `X-API-Key`; unset: the service refuses to start",
    }
