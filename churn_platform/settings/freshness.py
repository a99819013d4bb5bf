"""Freshness SLAs: by when each daily partition must exist, per asset.

A deadline is a time of day, UTC, counted from the moment the partition closes (00:00 UTC the day
after its day; for labelled assets, the day its 30-day outcome window has elapsed). ``02:00`` means
"by 02:00 on the day after the partition's day"; hours past 24 fall a day later (``30:00``: 06:00
the day after that).
"""

import re
from dataclasses import dataclass

from churn_platform.settings.declare import SettingsError, setting

# The timeline of a day D (README, Automation): inference logs are ingested at 00:30 on D+1, the
# landing sensor and the 01:00 ingestion schedule bring in tickets and logs, declarative automation
# carries them through sentiment, daily activity, features, the online store, scores and drift.
# Each deadline leaves room for the steps before it plus retries. Not here: the training set, the
# model and its snapshot, which are made weekly for one labelled date (a missing day is normal).
DEFAULT_DEADLINES: dict[str, str] = {
    "raw/inference_logs": "01:30",
    "raw/crm_tickets": "02:00",
    "raw/interaction_logs": "02:00",
    "enriched/ticket_sentiment": "03:00",
    "backups/inference_logs": "03:00",
    "features/customer_daily_activity": "04:00",
    "features/customer_features": "04:00",
    "online/customer_features": "05:00",
    "ml/churn_scores": "06:00",
    "ml/feature_drift": "06:00",
    "ml/prediction_drift": "06:00",
    # Labelled partitions close when their outcome window has elapsed (daily activity of D+30 exists).
    "ml/churn_labels": "06:00",
}

OFF = "off"
_TIME = re.compile(r"^(\d{1,2}):([0-5]\d)$")


def deadline_minutes(text: str, variable: str = "CHURN_FRESHNESS_DEADLINES") -> int:
    """``HH:MM`` (hours 0-47) as minutes after the partition closes; the error names the variable."""
    match = _TIME.match(text.strip())
    if match is None or int(match.group(1)) > 47:
        raise SettingsError(f"{variable}: {text!r} is not a deadline HH:MM (00:00 to 47:59) or `{OFF}`")
    return int(match.group(1)) * 60 + int(match.group(2))


def parse_overrides(text: str, variable: str = "CHURN_FRESHNESS_DEADLINES") -> dict[str, str]:
    """``asset/key=HH:MM,other/asset=off`` as {asset: value}; unknown assets and bad times refused."""
    overrides: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        asset, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not asset or not value:
            raise SettingsError(f"{variable}: {entry!r} is not `asset/key=HH:MM` or `asset/key={OFF}`")
        if asset not in DEFAULT_DEADLINES:
            raise SettingsError(
                f"{variable}: {asset!r} has no partition deadline; one of {sorted(DEFAULT_DEADLINES)}"
            )
        if value.lower() != OFF:
            deadline_minutes(value, variable)
        overrides[asset] = value.lower()
    return overrides


@dataclass(frozen=True)
class FreshnessSettings:
    enabled: bool = setting(
        "CHURN_FRESHNESS_ENABLED",
        True,
        "`0`: no partition deadlines at all (no freshness policies, no `partitions_on_time` evaluations, "
        "no late alerts)",
    )
    deadlines: str = setting(
        "CHURN_FRESHNESS_DEADLINES",
        "",
        "per-asset overrides of the default deadlines (README, Observability), comma-separated "
        "`asset/key=HH:MM` (UTC, after the partition closes; `26:00` is 02:00 a day later) or "
        "`asset/key=off`",
    )
    lookback_days: int = setting(
        "CHURN_FRESHNESS_LOOKBACK_DAYS",
        7,
        "partitions whose deadline passed within this many days are evaluated (older gaps are backfills)",
        minimum=1,
    )
    interval_seconds: int = setting(
        "CHURN_FRESHNESS_INTERVAL",
        180,
        "seconds between evaluations of the deadlines by the `partition_freshness` sensor",
        minimum=1,
    )

    def __post_init__(self) -> None:
        parse_overrides(self.deadlines)  # refused at load time, naming the variable

    def minutes_by_asset(self) -> dict[str, int]:
        """Every asset's deadline in minutes after its partition closes; switched-off ones left out."""
        if not self.enabled:
            return {}
        merged = {**DEFAULT_DEADLINES, **parse_overrides(self.deadlines)}
        return {asset: deadline_minutes(value) for asset, value in merged.items() if value != OFF}
