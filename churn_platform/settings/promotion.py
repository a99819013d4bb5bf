"""What the promotion gate weighs besides ROC AUC: the money a churn model saves.

A missed churner costs their lost revenue; every customer flagged for a retention offer costs the
offer. The gate scores each model by its expected saving at its best threshold on the evaluation
rows (see ``churn_platform/ml/business.py``).
"""

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from churn_platform.settings.declare import SettingsError, setting


def _amount(variable: str, raw: str) -> Decimal:
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise SettingsError(
            f"{variable}={raw!r} is not a number (an integer or a decimal like 49.90)"
        ) from None
    if not value.is_finite() or value <= 0:
        raise SettingsError(f"{variable} must be a positive amount, got {raw!r}")
    return value


@dataclass(frozen=True)
class PromotionSettings:
    cost_missed_churner: str = setting(
        "CHURN_COST_MISSED_CHURNER",
        "500",
        "cost of a churner the model does not flag (lost revenue; integer or decimal, > 0)",
    )
    cost_retention_offer: str = setting(
        "CHURN_COST_RETENTION_OFFER",
        "50",
        "cost of one retention offer to a flagged customer (integer or decimal, > 0, "
        "below the cost of a missed churner)",
    )

    def __post_init__(self) -> None:
        missed = _amount("CHURN_COST_MISSED_CHURNER", self.cost_missed_churner)
        offer = _amount("CHURN_COST_RETENTION_OFFER", self.cost_retention_offer)
        if offer >= missed:
            raise SettingsError(
                f"CHURN_COST_RETENTION_OFFER ({offer}) must be below CHURN_COST_MISSED_CHURNER ({missed}): "
                "otherwise no retention offer can ever pay off"
            )

    @property
    def missed_churner(self) -> float:
        return float(Decimal(self.cost_missed_churner))

    @property
    def retention_offer(self) -> float:
        return float(Decimal(self.cost_retention_offer))
