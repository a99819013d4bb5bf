"""The CRM (Zendesk Support API) the tickets come from."""

from dataclasses import dataclass
from typing import ClassVar

from churn_platform.settings.declare import SettingsError, setting


@dataclass(frozen=True)
class CRMSettings:
    url: str | None = setting(
        "CHURN_CRM_URL",
        None,
        "the Zendesk API, e.g. `https://acme.zendesk.com`",
        default_doc="unset: the bundled simulator over the generated export",
    )
    email: str | None = setting("CHURN_CRM_EMAIL", None, "agent email, for API-token authentication")
    risk_field_id: int | None = setting(
        "CHURN_CRM_RISK_FIELD_ID",
        None,
        "id of the ticket custom field (decimal) the scoring service writes the churn probability into",
        default_doc="unset: only the risk tag is written",
    )
    risk_high_percent: int = setting(
        "CHURN_CRM_RISK_HIGH_PERCENT",
        50,
        "a requester at or above this churn probability (in %) gets the tag `churn_risk_high`",
        minimum=1,
    )
    risk_medium_percent: int = setting(
        "CHURN_CRM_RISK_MEDIUM_PERCENT",
        20,
        "... at or above this one `churn_risk_medium`, below it `churn_risk_low`",
        minimum=1,
    )
    webhook_tolerance_seconds: int = setting(
        "CHURN_CRM_WEBHOOK_TOLERANCE_SECONDS",
        300,
        "a webhook whose signature timestamp is further than this from the service's clock is refused",
        minimum=1,
    )
    clock_skew_seconds: int = setting(
        "CHURN_CRM_CLOCK_SKEW_SECONDS",
        300,
        "raw/crm_tickets: a ticket updated (or created) later than this beyond the platform's clock is "
        "quarantined as `in_the_future`",
        minimum=0,
    )
    max_quarantine_percent: int = setting(
        "CHURN_CRM_MAX_QUARANTINE_PERCENT",
        5,
        "raw/crm_tickets fails the partition (not retried) when more than this share (in %) of its tickets "
        "is malformed; below it they are quarantined and the rest ingested",
        minimum=0,
    )

    def __post_init__(self) -> None:
        if self.max_quarantine_percent > 100:
            raise SettingsError(
                f"CHURN_CRM_MAX_QUARANTINE_PERCENT must be <= 100, got {self.max_quarantine_percent}"
            )
        if not self.risk_medium_percent < self.risk_high_percent <= 100:
            raise SettingsError(
                "need CHURN_CRM_RISK_MEDIUM_PERCENT < CHURN_CRM_RISK_HIGH_PERCENT <= 100, got "
                f"{self.risk_medium_percent} and {self.risk_high_percent}"
            )

    SECRETS: ClassVar[dict[str, str]] = {
        "ZENDESK_OAUTH_TOKEN": "OAuth bearer token (preferred), read through `dagster.EnvVar`",
        "ZENDESK_API_TOKEN": "API token, sent with `CHURN_CRM_EMAIL`, read through `dagster.EnvVar`",
        "CHURN_CRM_WEBHOOK_SECRET": "the Zendesk webhook's signing secret; unset: the scoring service "
        "refuses webhooks (503)",
    }
