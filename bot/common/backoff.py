"""Retry timing shared by the outbox, the notifiers and the upstream client."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter, capped; a Retry-After wins."""

    initial: float = 5.0
    maximum: float = 300.0
    jitter: float = 0.2  # +-20 %

    def delay(self, attempts: int, retry_after: float | None, rand: Callable[[], float]) -> float:
        if retry_after is not None:
            return max(retry_after, 0.0) + 0.1
        base = min(self.maximum, self.initial * 2 ** max(attempts - 1, 0))
        return base * (1 + self.jitter * (2 * rand() - 1))


def retry_after(value: str | float | timedelta | None) -> float | None:
    """Seconds to wait from a Retry-After value: a header (seconds or an HTTP
    date), a number, or a timedelta; None when absent or unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
