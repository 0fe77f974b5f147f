"""`spend_above`: more money spent within a window than a level."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from bot.engine.kinds.base import Kind
from bot.engine.text import money, window
from bot.engine.units import Unit

if TYPE_CHECKING:
    from bot.engine.kinds.base import Reading


@dataclass(frozen=True, slots=True)
class SpendAbove(Kind):
    threshold: float
    recover_at: float
    window: float  # seconds

    unit: ClassVar[Unit] = Unit.USD_SPENT
    config_key: ClassVar[str] = "spend_above"
    recovery_key: ClassVar[str] = "recover_below"
    extra_keys: ClassVar[tuple[str, ...]] = ("window",)
    rising: ClassVar[bool] = True

    def spend_window(self) -> float | None:
        return self.window

    def measure(
        self, remain: float, used: float, rate: float | None, spent: float | None
    ) -> float | None:
        return spent

    @staticmethod
    def default_recovery(threshold: float) -> float:
        return threshold * 0.8

    @classmethod
    def level(cls, value: float | None) -> str:
        return money(value)

    @classmethod
    def level_in(cls, value: float | None, currency: str) -> str:
        return money(value, currency)

    @classmethod
    def now(cls, event: Reading) -> str:
        spent = "? (gathering data)" if event.gathering else money(event.value, event.currency)
        return f"{spent} spent in the last {window(event.window or 0)}"

    @classmethod
    def resolved(cls, event: Reading) -> str:
        return f"{cls.now(event)} (at or below {money(event.recover_at, event.currency)})"
