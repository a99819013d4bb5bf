"""The alert destinations as real HTTP servers on loopback: the Zendesk simulator (CRM tickets) and
a Slack-style webhook receiver."""

import pytest

from churn_platform.crm.simulator import ZendeskSimulator
from churn_platform_tests.support.servers import WebhookReceiver


@pytest.fixture
def simulator():
    sim = ZendeskSimulator([], email="ops@example.com", api_token="s3cret").start()
    yield sim
    sim.stop()


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()
