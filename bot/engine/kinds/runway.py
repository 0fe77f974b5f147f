"""`days_left_below`: the money lasts fewer days than a level at the current burn
rate; a rate of zero (not depleting) resolves it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from bot.engine.kinds.base import Kind
from bot.engine.text import days, forecast
from bot.engine.units import Unit, days_left

if TYPE_CHECKING:
    from bot.engine.kinds.base import Reading


@dataclass(frozen=True, slots=True)
class DaysLeft(Kind):
    threshold: float
    recover_at: float

    unit: ClassVar[Unit] = Unit.DAYS
    config_key: ClassVar[str] = "days_left_below"
    recovery_key: ClassVar[str] = "recover_above_days"
    needs_rate: ClassVar[bool] = True
    perf_label: ClassVar[str | None] = "days_left"

    def measure(
        self, remain: float, used: float, rate: float | None, spent: float | None
    ) -> float | None:
        return days_left(remain, rate)

    @staticmethod
    def default_recovery(threshold: float) -> float:
        return threshold * 1.5

    @classmethod
    def level(cls, value: float | None) -> str:
        return days(value, exact=True)

    @classmethod
    def now(cls, event: Reading) -> str:
        return (
            "gathering data"
            if event.gathering
            else forecast(event.rate, event.value, event.currency)
        )

    @classmethod
    def resolved(cls, event: Reading) -> str:
        if event.value is None or math.isinf(event.value):
            return "not depleting"
        return f"≈ {days(event.value)} left (at or above {cls.level(event.recover_at)})"

    @classmethod
    def perf_value(cls, total: float, rate: float | None) -> str:
        """U while gathering data or when not depleting."""
        left = days_left(total, rate)
        return "U" if left is None or math.isinf(left) else f"{left:.1f}"
