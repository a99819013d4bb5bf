"""Where failures are reported."""

from dataclasses import dataclass
from typing import ClassVar

from churn_platform.settings.declare import SettingsError, setting


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

    check_alert_severity: str = setting(
        "CHURN_CHECK_ALERT_SEVERITY",
        "error",
        "failed asset checks alerted by `check_failure_alert`: `error` (blocking contracts, recovery "
        "objectives), `warn` (also drift, row volume, quarantined rows) or `off`",
        choices=("error", "warn", "off"),
    )
    check_alert_ignore: str = setting(
        "CHURN_CHECK_ALERT_IGNORE",
        "ml/churn_model:promotion_gate",
        "checks never alerted, comma-separated `asset/key:check`, or `none` (the gate's rejections "
        "are decisions, not faults)",
    )

    SECRETS: ClassVar[dict[str, str]] = {
        "SLACK_WEBHOOK_URL": "Slack incoming webhook, read through `dagster.EnvVar`; unset: alerts are only logged",
    }

    def __post_init__(self) -> None:
        object.__setattr__(self, "dagster_ui_url", self.dagster_ui_url.rstrip("/"))
        for entry in self.ignored_checks():
            if ":" not in entry:
                raise SettingsError(f"CHURN_CHECK_ALERT_IGNORE: {entry!r} is not `asset/key:check`")

    def ignored_checks(self) -> frozenset[str]:
        """The checks never alerted, as `asset/key:check` (``AssetCheckKey.to_user_string()``)."""
        if self.check_alert_ignore.strip().lower() == "none":
            return frozenset()
        return frozenset(filter(None, (part.strip() for part in self.check_alert_ignore.split(","))))
