"""How figures read in every message: money, shares, days, durations, windows.
Pure formatting, shared by the rule kinds and the renderer."""

from __future__ import annotations

import math

MAX_NAME = 200  # long user strings are cut so that any single line stays small


def name(text: str) -> str:
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


SYMBOLS = {"USD": "$", "CNY": "¥", "EUR": "€", "GBP": "£", "JPY": "¥"}


def money(value: float | None, currency: str = "USD", places: int = 2) -> str:
    """$12.34, ¥12.34, €12.34; 12.34 XYZ for a currency without a symbol here."""
    if value is None:
        return "?"
    symbol = SYMBOLS.get(currency)
    sign, amount = ("-", -value) if value < 0 else ("", value)
    if symbol is None:
        return f"{sign}{amount:,.{places}f} {currency}"
    return f"{sign}{symbol}{amount:,.{places}f}"


def percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}%"


def duration(seconds: float) -> str:
    """2h 14m, 3d 4h, 45s."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def days(value: float | None, exact: bool = False) -> str:
    """2.4 days; a configured level as written (3 days, 4.5 days) with `exact`."""
    if value is None:
        return "?"
    text = f"{value:g}" if exact else f"{value:.1f}"
    return f"{text} day" if text in ("1", "1.0") else f"{text} days"


def window(seconds: float) -> str:
    """1h, 30m, 1d, 1h 30m: how a spend rule's window is said."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return duration(seconds)


def forecast(rate: float | None, left: float | None, currency: str = "USD") -> str:
    """≈ 1.3 days left at $1.09/day; not depleting; gathering data."""
    if rate is None:
        return "gathering data"
    if left is None or math.isinf(left):
        return "not depleting"
    return f"≈ {left:.1f} days left at {money(rate, currency)}/day"
