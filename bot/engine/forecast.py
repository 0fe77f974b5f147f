"""Burn rates, spending and days left from history samples. Pure: imports
only bot.engine.model and the standard library.

A subject (an account's total, or one of its limited keys) is followed by its
*spent* counter: the sum of every increase of its used figure since the
subject appeared. A drop of the used figure (a counter reset) adds nothing, and
a top-up raises the balance, not the used figure, so neither ever looks like
negative spending. Spending within a window is the counter's rise across it;
the pair of samples that straddles the window start adds the share of its
increase that falls inside the window (linear in time), so the downtime gap
before a restart never looks like a spike (README, "Forecasts and digest").
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from bot.engine.model import Figures

DAY = 86400.0


class Point(NamedTuple):
    at: float  # seconds since the epoch
    spent: float  # the subject's spent counter at that time


def accumulate(used: Iterable[tuple[float, float]]) -> list[Point]:
    """Samples of a raw used figure, (time, used) in time order, as points of
    the spent counter (which starts at 0)."""
    points: list[Point] = []
    last: float | None = None
    spent = 0.0
    for at, value in used:
        if last is not None:
            spent += max(0.0, value - last)
        last = value
        points.append(Point(at, spent))
    return points


@dataclass(frozen=True, slots=True)
class Spend:
    amount: float  # USD spent
    span: float  # seconds the samples cover within the window

    @property
    def per_day(self) -> float:
        return self.amount / self.span * DAY if self.span > 0 else 0.0


def spent_within(points: Sequence[Point], now: float, window: float) -> Spend | None:
    """What the subject spent in the `window` seconds up to `now`, from its
    points in time order; None while they span less than a quarter of the
    window ("gathering data"). The points at or after the window start matter,
    and the newest one before it as the baseline: a caller may pass just those."""
    if not points or window <= 0:
        return None
    start = now - window
    inside = bisect.bisect_left(points, start, key=lambda p: p.at)
    if inside == 0:  # no sample before the window: it covers what there is
        amount, span = points[-1].spent - points[0].spent, now - points[0].at
    elif inside == len(points):  # nothing since the baseline: nothing spent
        amount, span = 0.0, window
    else:
        base, first = points[inside - 1], points[inside]
        share = (first.at - start) / (first.at - base.at) if first.at > base.at else 1.0
        at_start = first.spent - (first.spent - base.spent) * share
        amount, span = points[-1].spent - at_start, window
    if span < window / 4:
        return None
    return Spend(max(0.0, amount), span)


def counter_at(points: Sequence[Point], at: float) -> float | None:
    """The spent counter at `at`, linear between samples, the last one's after
    them; None before the first."""
    if not points or at < points[0].at:
        return None
    after = bisect.bisect_right(points, at, key=lambda p: p.at)
    if after == len(points):
        return points[-1].spent
    base, first = points[after - 1], points[after]
    share = (at - base.at) / (first.at - base.at) if first.at > base.at else 1.0
    return base.spent + (first.spent - base.spent) * share


def spent_between(points: Sequence[Point], start: float, end: float) -> float | None:
    """USD spent from `start` to `end`, as far as the points cover it; None if
    they begin after `end`."""
    upto = counter_at(points, end)
    if upto is None:
        return None
    since = counter_at(points, start)
    return max(0.0, upto - (since if since is not None else points[0].spent))


def burn_rate(points: Sequence[Point], now: float, window: float) -> float | None:
    """USD per day over `window`; None while gathering data."""
    spend = spent_within(points, now, window)
    return spend.per_day if spend is not None else None


# --- seeding from CometAPI's daily_quota ---------------------------------------------


class DailyUse(NamedTuple):
    """One day of daily_quota: the account's total and USD used per token name;
    a name listed twice that day is ambiguous (`duplicated`), not in `tokens`."""

    day: date
    total: float
    tokens: Mapping[str, float]
    duplicated: frozenset[str] = frozenset()


def seeded_rates(days: Sequence[DailyUse]) -> Figures:
    """Burn rates (USD/day) from complete past days: the total, and each token
    name's (a day without it used nothing); a name duplicated on any day is left
    out. No days, no rates."""
    if not days:
        return Figures()
    ambiguous = set().union(*(d.duplicated for d in days))
    names = set().union(*(d.tokens for d in days)) - ambiguous
    keys = {n: sum(d.tokens.get(n, 0.0) for d in days) / len(days) for n in names}
    return Figures(sum(d.total for d in days) / len(days), keys)
