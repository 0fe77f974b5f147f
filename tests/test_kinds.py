"""Rule kinds answer for themselves: config builds them from the registry, and the
renderer, `check` and the engine ask the kind, never test its type."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from bot import config
from bot.engine.kinds import Below, BelowPercent, DaysLeft, SpendAbove, kind_of, kinds
from bot.engine.kinds import base as kinds_base
from bot.engine.kinds.base import Kind, Reading
from bot.engine.model import Event, EventKind, Unit
from bot.notify.render import event_line

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_the_built_in_kinds_are_registered_by_unit_and_drive_the_config_keys():
    assert kinds() == (Below, BelowPercent, DaysLeft, SpendAbove)
    assert [kind_of(u) for u in (Unit.USD, Unit.PERCENT, Unit.DAYS, Unit.USD_SPENT)] == list(
        kinds()
    )
    assert [(k.threshold, k.recovery) for k in config.KINDS] == [
        ("below", "recover_above"),
        ("below_percent", "recover_above_percent"),
        ("days_left_below", "recover_above_days"),
        ("spend_above", "recover_below"),
    ]
    rule = config.build_rule({"name": "r", "target": "total", "spend_above": 50, "window": "1h"})
    assert rule.kind == SpendAbove(50, 40, 3600)
    assert rule.kind.spend_window() == 3600
    assert config.build_rule({"name": "r", "target": "key", "below_percent": 10}).kind == (
        BelowPercent(10, 11)
    )


def test_an_unknown_unit_reads_as_money():
    assert kind_of("written-by-a-later-version") is Below


def test_a_new_kind_is_said_through_its_own_texts():
    @dataclass(frozen=True, slots=True)
    class TokensBelow(Kind):
        threshold: float
        recover_at: float
        unit: ClassVar[str] = "test_tokens"
        config_key: ClassVar[str] = "tokens_below"
        recovery_key: ClassVar[str] = "recover_above_tokens"

        def measure(self, remain, used, rate, spent):  # type: ignore[no-untyped-def]
            return remain * 1000

        @classmethod
        def level(cls, value: float | None) -> str:
            return f"{value:g} tokens"

        @classmethod
        def now(cls, event: Reading) -> str:
            return f"{event.value:g} tokens left"

        @classmethod
        def resolved(cls, event: Reading) -> str:
            return f"{event.value:g} tokens again"

    try:
        assert kind_of("test_tokens") is TokensBelow
        kind = TokensBelow(500, 800)
        assert kind.fires(kind.measure(0.4, 0, None, None))  # 400 tokens
        assert kind.recovers(kind.measure(0.9, 0, None, None))
        fire = Event(EventKind.FIRE, "main", NOW, rule="t", target="total", unit="test_tokens",
                     value=400, threshold=500, recover_at=800)  # fmt: skip
        text = "".join(span.text for span in event_line(fire))
        assert "main / total: 400 tokens left (below 500 tokens; resolves at 800 tokens)" in text
        resolve = Event(EventKind.RESOLVE, "main", NOW, rule="t", target="total",
                        unit="test_tokens", value=900, recover_at=800)  # fmt: skip
        assert "900 tokens again" in "".join(span.text for span in event_line(resolve))
    finally:
        kinds_base._BY_UNIT.pop("test_tokens", None)
