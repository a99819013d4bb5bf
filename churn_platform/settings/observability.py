"""Observability: the metrics exporter (`churn-platform metrics serve`) and the Pushgateway runs push to."""

from dataclasses import dataclass

from churn_platform.settings.declare import setting


@dataclass(frozen=True)
class ObservabilitySettings:
    metrics_host: str = setting(
        "CHURN_METRICS_HOST", "127.0.0.1", "`churn-platform metrics serve`: address to listen on"
    )
    metrics_port: int = setting(
        "CHURN_METRICS_PORT", 9464, "`churn-platform metrics serve`: port of `/metrics`", minimum=1
    )
    scrape_timeout_seconds: int = setting(
        "CHURN_METRICS_SCRAPE_TIMEOUT_SECONDS",
        8,
        "the most a scrape waits for its sources (runs, assets, checks, MLflow, drift): one that has not "
        "answered by then is left out of that scrape, with `churn_exporter_source_up` 0 (keep it below "
        "Prometheus's `scrape_timeout`)",
        minimum=1,
    )
    max_run_seconds: int = setting(
        "CHURN_METRICS_MAX_RUN_SECONDS",
        43200,
        'a run STARTED longer ago than this is reported stale (`churn_runs_stale{reason="overdue"}`); '
        "so is one whose worker the run launcher reports dead",
        minimum=1,
    )
    pushgateway_url: str | None = setting(
        "CHURN_PUSHGATEWAY_URL",
        None,
        "a Prometheus Pushgateway, e.g. `http://pushgateway:9091`: each run then pushes every asset "
        "step's duration, outcome, rows and bytes, and the run's duration and outcome (unset: nothing is pushed)",
    )
    pushgateway_timeout_seconds: int = setting(
        "CHURN_PUSHGATEWAY_TIMEOUT_SECONDS",
        5,
        "a push that takes longer is given up with a warning (a push never fails a run)",
        minimum=1,
    )
