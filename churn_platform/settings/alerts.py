"""Where failures are reported."""

from dataclasses import dataclass
from typing import ClassVar

from churn_platform.settings.declare import setting


@dataclass(frozen=True)
class AlertSettings:
    dagster_ui_url: str = setting(
        "CHURN_DAGSTER_UI_URL",
        "http://127.0.0.1:3000",
        "the Dagster UI, for run links (and the webserver `churn-platform backfill` calls)",
    )
    crm_tickets: bool = setting(
        "CHURN_ALERT_CRM_TICKETS", False, "`1`: also open a CRM ticket for each failed run"
    )
    retry_seconds: int = setting(
        "CHURN_ALERT_RETRY_SECONDS",
        30,
        "first wait before a failed alert delivery is tried again (doubling each time, up to 256x)",
        minimum=1,
    )
    max_age_hours: int = setting(
        "CHURN_ALERT_MAX_AGE_HOURS",
        24,
        "an alert not delivered after this long is given up (logged)",
        minimum=1,
    )

    SECRETS: ClassVar[dict[str, str]] = {
        "SLACK_WEBHOOK_URL": "Slack incoming webhook, read through `dagster.EnvVar`; unset: alerts are only logged",
    }

    def __post_init__(self) -> None:
        object.__setattr__(self, "dagster_ui_url", self.dagster_ui_url.rstrip("/"))
