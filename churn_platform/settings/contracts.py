"""Data contracts: how much bad input a partition may hold before it fails, and the ranges rules check."""

from dataclasses import dataclass

from churn_platform.settings.declare import setting


@dataclass(frozen=True)
class ContractSettings:
    max_quarantine_percent: int = setting(
        "CHURN_MAX_QUARANTINE_PERCENT",
        1,
        "rows of a partition that break a row rule go to quarantine; above this share (in %) the "
        "partition fails instead and its previous version stays",
        minimum=0,
    )
    max_event_amount: int = setting(
        "CHURN_MAX_EVENT_AMOUNT",
        100_000,
        "the largest `amount` an interaction event may carry; larger ones (and negative ones) are quarantined",
        minimum=1,
    )
    volume_factor: int = setting(
        "CHURN_VOLUME_FACTOR",
        5,
        "a day with more than this many times the recent days' median rows, or less than its fraction, "
        "blocks downstream assets (check `row_volume`); a day with no rows always does",
        minimum=2,
    )
    volume_lookback_days: int = setting(
        "CHURN_VOLUME_LOOKBACK_DAYS",
        7,
        "how many days before a day its row count is compared with",
        minimum=1,
    )
