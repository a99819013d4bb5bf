"""The pipeline's calendar: where daily partitions start and how far back training reaches."""

from dataclasses import dataclass

from churn_platform.settings.declare import setting


@dataclass(frozen=True)
class PipelineSettings:
    start_date: str = setting("CHURN_START_DATE", "2026-01-01", "first daily partition", kind="date")
    training_window_days: int = setting(
        "CHURN_TRAINING_WINDOW_DAYS",
        70,
        "days of as-of dates a training set spans: the model is fitted on the oldest, evaluated on "
        "the newest, with a 30-day gap between them (out-of-time split)",
        minimum=1,
    )
