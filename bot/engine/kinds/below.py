"""`below`: the money left (an account's balance or a key's remainder) under a level."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from bot.engine.kinds.base import Kind
from bot.engine.text import money
from bot.engine.units import Unit

if TYPE_CHECKING:
    from bot.engine.kinds.base import Reading


@dataclass(frozen=True, slots=True)
class Below(Kind):
    threshold: float
    recover_at: float

    unit: ClassVar[Unit] = Unit.USD
    config_key: ClassVar[str] = "below"
    recovery_key: ClassVar[str] = "recover_above"
    is_remainder: ClassVar[bool] = True
    with_forecast: ClassVar[bool] = True
    perf_label: ClassVar[str | None] = "total"

    def measure(
        self, remain: float, used: float, rate: float | None, spent: float | None
    ) -> float | None:
        return remain

    @staticmethod
    def default_recovery(threshold: float) -> float:
        return threshold * 1.1 if threshold > 0 else 0.01

    @classmethod
    def level(cls, value: float | None) -> str:
        return money(value)

    @classmethod
    def level_in(cls, value: float | None, currency: str) -> str:
        return money(value, currency)

    @classmethod
    def now(cls, event: Reading) -> str:
        return f"{money(event.usd, event.currency)} left"

    @classmethod
    def resolved(cls, event: Reading) -> str:  # $26.00 (at or above $25.00)
        at = cls.level_in(event.recover_at, event.currency)
        return f"{money(event.usd, event.currency)} (at or above {at})"

    @classmethod
    def perf_value(cls, total: float, rate: float | None) -> str:
        return f"{total:.2f}"
