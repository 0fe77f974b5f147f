"""The status page (SPEC 6b, `[web] status_page`): plain values the app fills
in, rendered to HTML by the Jinja2 templates in `templates/` (package data,
autoescaped), and the access rule: an optional token, compared in constant
time, from a bearer header, a `?token=` or the cookie a `?token=` left.

The page needs no JavaScript: it refreshes itself with a meta refresh, follows
the browser's light or dark preference with `prefers-color-scheme` (the charts
too, through <picture>), and carries no key and no token, only key names."""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

COOKIE = "balance_bot_status"


@dataclass(frozen=True, slots=True)
class AlertRow:
    text: str  # e.g. "WARNING · main / total: $15.00 left (below $20.00; resolves at $25.00)"
    state: str  # "firing", "snoozed" or "acknowledged"
    severity: str  # "critical", "warning" or ""
    since: str  # local time, or ""
    until: str = ""  # a snooze's end, local time
    by: str = ""  # who snoozed or acknowledged it


@dataclass(frozen=True, slots=True)
class KeyRow:
    name: str
    remaining: str
    used: str
    alert: bool = False  # a rule fires on it


@dataclass(frozen=True, slots=True)
class AccountStatus:
    name: str
    username: str
    balance: str
    burn: str  # "$12.34/day", "not depleting", "gathering data"
    days_left: str  # "2.4 days", "—"
    age: str  # how old the data is: "2m", or "no data yet"
    as_of: str  # local time of the data, or ""
    chart: str  # the chart's URL ("" with no history yet)
    chart_alt: str
    error: str = ""  # why the last poll failed, if it did
    alerts: tuple[AlertRow, ...] = ()
    keys: tuple[KeyRow, ...] = ()
    keys_left_out: int = 0


@dataclass(frozen=True, slots=True)
class StatusView:
    accounts: tuple[AccountStatus, ...]
    generated: str  # local time
    timezone: str
    refresh: int  # seconds
    alerts_firing: int = 0


@functools.cache
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("bot.ops", "templates"),
        autoescape=select_autoescape(("html",)),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(view: StatusView) -> str:
    return str(_environment().get_template("status.html").render(view=view))


def cookie_value(token: str) -> str:
    """What the cookie holds: derived from the token, never the token itself."""
    return hmac.new(token.encode(), b"balance-bot status page", hashlib.sha256).hexdigest()


def authorized(token: str, header: str, query: str, cookie: str) -> bool:
    """Whether a request may see the page: no token configured, or the right one
    as `Authorization: Bearer`, `?token=`, or the cookie; compared in constant time."""
    if not token:
        return True
    scheme, _, given = header.partition(" ")
    offered = given.strip() if scheme.lower() == "bearer" else ""
    found = False
    for candidate, expected in (
        (offered, token),
        (query, token),
        (cookie, cookie_value(token)),
    ):
        # every candidate is compared, so the time says nothing about which one matched
        found |= bool(candidate) & hmac.compare_digest(candidate.encode(), expected.encode())
    return found
