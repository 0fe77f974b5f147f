"""`below_percent`: what remains of a key's (or the account's) limit, as a share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from bot.engine.kinds.base import Kind
from bot.engine.text import money, percent
from bot.engine.units import Unit

if TYPE_CHECKING:
    from bot.engine.kinds.base import Reading


@dataclass(frozen=True, slots=True)
class BelowPercent(Kind):
    threshold: float
    recover_at: float

    unit: ClassVar[Unit] = Unit.PERCENT
    config_key: ClassVar[str] = "below_percent"
    recovery_key: ClassVar[str] = "recover_above_percent"
    is_share: ClassVar[bool] = True
    with_forecast: ClassVar[bool] = True

    def measure(
        self, remain: float, used: float, rate: float | None, spent: float | None
    ) -> float | None:
        capacity = remain + used
        return remain / capacity * 100 if capacity > 0 else 0.0

    @staticmethod
    def default_recovery(threshold: float) -> float:
        return min(threshold * 1.1, 100.0)

    @classmethod
    def level(cls, value: float | None) -> str:
        return percent(value)

    @classmethod
    def now(cls, event: Reading) -> str:  # $1.42 (8.5%) left
        return f"{money(event.usd, event.currency)} ({percent(event.value)}) left"

    @classmethod
    def resolved(cls, event: Reading) -> str:  # $9.00, 47.9% (at or above 30.0%)
        left = money(event.usd, event.currency)
        return f"{left}, {percent(event.value)} (at or above {cls.level(event.recover_at)})"
