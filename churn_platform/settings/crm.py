"""The CRM (Zendesk Support API) the tickets come from."""

from dataclasses import dataclass
from typing import ClassVar

from churn_platform.settings.declare import setting


@dataclass(frozen=True)
class CRMSettings:
    url: str | None = setting(
        "CHURN_CRM_URL",
        None,
        "the Zendesk API, e.g. `https://acme.zendesk.com`",
        default_doc="unset: the bundled simulator over the generated export",
    )
    email: str | None = setting("CHURN_CRM_EMAIL", None, "agent email, for API-token authentication")

    SECRETS: ClassVar[dict[str, str]] = {
        "ZENDESK_OAUTH_TOKEN": "OAuth bearer token (preferred), read through `dagster.EnvVar`",
        "ZENDESK_API_TOKEN": "API token, sent with `CHURN_CRM_EMAIL`, read through `dagster.EnvVar`",
    }
