"""The pipeline's calendar: where daily partitions start and how far back training reaches."""

from dataclasses import dataclass

from churn_platform.settings.declare import setting


@dataclass(frozen=True)
class PipelineSettings:
    start_date: str = setting("CHURN_START_DATE", "2026-01-01", "first daily partition", kind="date")
    training_window_days: int = setting(
        "CHURN_TRAINING_WINDOW_DAYS", 56, "days of as-of dates a training set spans", minimum=1
    )
