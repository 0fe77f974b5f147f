"""The units rule values come in, and the one forecast formula every kind and
view shares. The ground floor of the engine: imports nothing of it."""

from __future__ import annotations

import math
from enum import StrEnum


class Unit(StrEnum):
    """The unit of an alert's value, threshold and recovery level."""

    USD = "usd"
    PERCENT = "percent"
    DAYS = "days"  # days left at the current burn rate
    USD_SPENT = "usd_spent"  # USD spent within a rule's window


def days_left(remaining: float, rate: float | None) -> float | None:
    """Days the money lasts at `rate` USD/day: None while gathering data, inf
    when not depleting (whatever remains: a spent, idle key never fires a
    forecast), 0 when nothing remains."""
    if rate is None:
        return None
    if rate <= 0:
        return math.inf
    return max(remaining, 0.0) / rate
