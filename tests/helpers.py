"""What many tests share: fast retry policies, a settable clock, rule snippets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.common.backoff import Backoff
from bot.config import build_rule
from bot.engine.model import Rule
from bot.upstream.transport import RetryPolicy

# one attempt, no real waiting: a failed poll is failed at once
FAST = RetryPolicy(attempts=1, deadline=2, wait_initial=0.01, wait_max=0.01, wait_jitter=0)
# one retry after a failed attempt, still without real waiting
RETRYING = RetryPolicy(attempts=2, deadline=5, wait_initial=0.01, wait_max=0.02, wait_jitter=0)
# notifier start-up and delivery backoff without real waiting
QUICK = Backoff(initial=0.05, maximum=0.1, jitter=0)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """A clock tests set and advance; `Clock()` starts at the real now."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def rule(**kw: Any) -> Rule:
    """A total rule below $20, resolving at $25; `kw` overrides any [[rules]] key."""
    base: dict[str, Any] = {"name": "low", "target": "total", "below": 20.0, "recover_above": 25.0}
    base.update(kw)
    return build_rule(base)


def key_rule(**kw: Any) -> Rule:
    """A key rule below $2, resolving at $3, sparing the query-only key."""
    base: dict[str, Any] = {
        "name": "keys",
        "target": "key",
        "below": 2.0,
        "recover_above": 3.0,
        "exclude_keys": ["balance-query"],
    }
    base.update(kw)
    return build_rule(base)


TOTAL_RULE = """
[[rules]]
name = "account-low"
target = "total"
below = 20
"""

KEY_RULE = """
[[rules]]
name = "key-low"
target = "key"
below = 2
severity = "critical"
"""


# bodies that once crashed every cycle; each must be only its account's failed poll
POISONS = {
    "a 400-digit integer": b'{"total_quota": 1' + b"0" * 400 + b"}",
    "JSON nested 100,000 deep": b'{"total_quota": 1, "x": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
    "request_count 1e300": b'{"total_quota": 50, "request_count": 1e300}',
    "total 1e300": b'{"total_quota": 1e300}',
}
SURROGATE = (
    b'{"total_quota": 50, "username": "u\\ud800", "keys": '
    b'[{"name": "bad\\ud800", "remain_quota": 0.5, "used_quota": 1}]}'
)
