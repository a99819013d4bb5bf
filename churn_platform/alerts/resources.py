"""Where failure alerts go: a Slack incoming webhook (its URL is a secret: dagster.EnvVar)."""

import logging
from typing import Any

import dagster as dg
from pydantic import Field
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from churn_platform.storage.credentials import reveal

# slack_sdk's WebhookClient logs the webhook URL (the secret) when its logger's own level is DEBUG
# or unset: every request at DEBUG, every retry at INFO. Give it a logger set above that.
_SLACK_SDK_LOG = logging.getLogger("churn_platform.alerts.slack_sdk")
_SLACK_SDK_LOG.setLevel(logging.WARNING)


class AlertDeliveryError(RuntimeError):
    """An alert destination refused or could not be reached."""


class SlackWebhook(dg.ConfigurableResource):
    """Posts messages to a Slack incoming webhook; with no URL configured it is switched off."""

    webhook_url: str | None = Field(
        default=None, description="Incoming-webhook URL (dg.EnvVar('SLACK_WEBHOOK_URL'))."
    )
    timeout_seconds: int = 10

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url)

    def post(self, text: str, blocks: list[dict[str, Any]]) -> None:
        client = WebhookClient(
            reveal(self.webhook_url),
            timeout=self.timeout_seconds,
            logger=_SLACK_SDK_LOG,
            retry_handlers=[
                ConnectionErrorRetryHandler(max_retry_count=2),
                RateLimitErrorRetryHandler(max_retry_count=2),
            ],
        )
        response = client.send(text=text, blocks=blocks)
        if response.status_code != 200:
            # The webhook URL is a secret: never put it in the message.
            raise AlertDeliveryError(f"Slack webhook answered {response.status_code}: {response.body[:200]}")
