"""The Redis connection of the online feature store."""

import dagster as dg
from pydantic import Field

from churn_platform.storage.credentials import reveal


class OnlineFeatureStore(dg.ConfigurableResource):
    """Where online/customer_features loads each day's features (any Redis, by URL)."""

    url: str = Field(description="redis://host:port/db (no password: that is `password`).")
    password: str | None = Field(default=None, description="From CHURN_REDIS_PASSWORD (dagster.EnvVar).")
    prefix: str = "churn"
    keep_versions: int = 2

    def client(self):
        import redis

        return redis.Redis.from_url(
            self.url, password=reveal(self.password), socket_timeout=10, socket_connect_timeout=5
        )
