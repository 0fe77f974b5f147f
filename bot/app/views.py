"""The read side, pure: what /balance, /status and /healthz show, computed
from (state, snapshots, rules, now). No I/O, no clock: testable with values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.engine.forecast import DAY, Point, spent_between
from bot.engine.model import (
    AccountHealth,
    Ack,
    AlertState,
    EngineState,
    Event,
    EventKind,
    Figures,
    Rule,
    Silence,
    Snapshot,
    Target,
)
from bot.engine.rules import notify_for, shape
from bot.notifiers.message import Message
from bot.notify.render import (
    AccountView,
    DigestView,
    SpendView,
    balance_message,
    clock,
    status_message,
    subject,
)
from bot.state.types import Sample

Latest = Callable[[str], Snapshot | None]  # the newest good data of an account


def firing_subjects(
    state: EngineState, rules: Sequence[Rule], account: str
) -> tuple[bool, frozenset[str]]:
    """(total is firing, key names firing) for the /balance markers."""
    by_name = {r.name: r for r in rules}
    total, keys = False, set()
    for alert in state.alerts.values():
        rule = by_name.get(alert.key.rule)
        if alert.firing and rule and alert.key.account == account:
            if rule.target is Target.TOTAL:
                total = True
            else:
                keys.add(alert.key.subject)
    return total, frozenset(keys)


def balance_view(
    fetched: Mapping[str, tuple[Snapshot | None, str]],
    rules: Sequence[Rule],
    state: EngineState,
    burn: Mapping[str, Figures],
    now: datetime,
    tz: ZoneInfo,
) -> Message:
    """/balance: per account its data (or why it is missing), the firing markers,
    the burn rate and the keys that spend most (`burn`: rates by account)."""
    views = []
    for account, (snapshot, error) in fetched.items():
        total, keys = firing_subjects(state, rules, account)
        rates = burn.get(account, Figures())
        view = AccountView(account, snapshot, total, keys, error, rates.total, top(rates.keys))
        views.append(view)
    return balance_message(views, now, tz)


def top(figures: Mapping[str, float | None], count: int = 3) -> list[tuple[str, float]]:
    """The subjects with the largest figures, largest first; none of zero."""
    known = [(n, v) for n, v in figures.items() if v]
    return sorted(known, key=lambda item: (-item[1], item[0]))[:count]


# --- /spend and the digest ------------------------------------------------------------


def _points(samples: Sequence[Sample], key: str | None, since: float) -> list[Point]:
    """One subject's points in samples: `key` None for the total."""
    if key is None:
        return [Point(s.at, s.spent) for s in samples]
    found = []
    for s in samples:
        value = s.key_spent(key, since)
        if value is not None:
            found.append(Point(s.at, value))
    return found


def _key_series(samples: Sequence[Sample]) -> list[tuple[str, float]]:
    """(name, series start) of each key in the newest sample."""
    layout = samples[-1].layout if samples else None
    return list(zip(layout.names, layout.since, strict=True)) if layout else []


def spend_view(
    account: str,
    samples: Sequence[Sample],
    remaining: float | None,
    rate: float | None,
    now: float,
    period: float,
    currency: str = "USD",
) -> SpendView:
    """What `samples` (the account's, from `now - period` on, after a baseline)
    say it spent, in all and per key. `rate`: the account's burn rate, the one
    /balance shows (None while gathering data), so both say the same."""
    start = now - period
    covered = now - max(start, samples[0].at) if samples else 0.0
    if len(samples) < 2 or covered <= 0:  # one sample spans nothing: gathering data
        return SpendView(account, period, covered, None, remaining, rate, (), currency)
    spent = spent_between(_points(samples, None, -math.inf), start, now)
    per_key = {
        name: spent_between(_points(samples, name, since), start, now)
        for name, since in _key_series(samples)
    }
    return SpendView(account, period, covered, spent, remaining, rate, top(per_key, 5), currency)


def digest_view(
    account: str,
    snapshot: Snapshot | None,
    rate: float | None,
    samples: Sequence[Sample],
    rules: Sequence[Rule],
    firing: Sequence[Event],
    now: datetime,
    tz: ZoneInfo,
    silences: Sequence[Silence] = (),
) -> DigestView:
    """One account's part of the daily digest; `samples`: its last 7 days."""
    at = now.timestamp()
    # one sample spans nothing: "gathering data", as /spend says, not "$0.00"
    total = _points(samples, None, -math.inf) if len(samples) > 1 else []
    last_day = spent_between(total, at - DAY, at) if total else None
    day_before = spent_between(total, at - 2 * DAY, at - DAY) if total else None
    per_key = {
        name: spent_between(_points(samples, name, since), at - DAY, at)
        for name, since in _key_series(samples)
    }
    watched = [r for r in rules if r.target is Target.KEY and r.matches_account(account)]
    matchers = [r.key_matcher() for r in watched]
    emptiest = sorted(
        (
            (k.name, k.remain_quota)
            for k in (snapshot.keys if snapshot else ())
            if not k.unlimited and any(m(k.name) for m in matchers)
        ),
        key=lambda item: (item[1], item[0]),
    )[:5]
    mine = [e for e in firing if e.account == account]
    snoozed = [
        f"{subject(e)} ({e.rule}) until {clock(until, tz)}"
        for e in mine
        if (until := max((s.until for s in silences if s.covers(e.alert, now)), default=None))
    ]
    return DigestView(
        account,
        snapshot,
        rate,
        last_day,
        day_before,
        top(per_key, 5),
        emptiest,
        week_of_balances(samples, now, tz),
        mine,
        snoozed,
        currency=snapshot.currency if snapshot else "USD",
    )


def week_of_balances(samples: Sequence[Sample], now: datetime, tz: ZoneInfo) -> list[float | None]:
    """The balance at the end of each of the last 7 local days (today: now),
    oldest first; None for a day without a sample."""
    today = now.astimezone(tz).date()
    out: list[float | None] = []
    for back in range(6, -1, -1):
        day = today - timedelta(days=back)
        begins = datetime.combine(day, time(), tz).timestamp()
        ends = datetime.combine(day + timedelta(days=1), time(), tz).timestamp()
        inside = [s.total for s in samples if begins <= s.at < ends]
        out.append(inside[-1] if inside else None)
    return out


def firing_events(
    state: EngineState, rules: Sequence[Rule], latest: Latest, now: datetime
) -> tuple[list[Event], list[Event]]:
    """(firing alerts, accounts without data) as events carrying the current
    value and since when, for /status, check and the "still firing" message.
    An alert its rule no longer makes (target or kind changed, account no
    longer matched) is not one: the next poll drops it quietly."""
    by_name = {r.name: r for r in rules}
    firing = [
        _current(alert, rule, latest, now)
        for alert in state.alerts.values()
        if alert.firing
        and (rule := by_name.get(alert.key.rule)) is not None
        and (not alert.shape or alert.shape == shape(rule))
        and rule.matches_account(alert.key.account)
    ]
    unavailable = [
        Event(
            EventKind.UNAVAILABLE,
            h.account,
            now,
            reason=h.last_error,
            since=h.failing_since,
            value=h.failures,
            notify=notify_for(h.account, rules),
        )
        for h in state.health.values()
        if h.unavailable
    ]
    return firing, unavailable


def _money(alert: AlertState, rule: Rule, latest: Latest) -> float | None:
    """What the alert's subject holds in its latest snapshot (in its currency)."""
    snap = latest(alert.key.account)
    if snap is None:
        return None
    if rule.target is Target.TOTAL:
        return snap.total_quota
    return next((k.remain_quota for k in snap.keys if k.name == alert.key.subject), None)


def _current(alert: AlertState, rule: Rule, latest: Latest, now: datetime) -> Event:
    # a share's value is a percentage, a forecast's a number of days: the money is
    # in the snapshot, and a forecast's rate is that money over its days left
    snap = latest(alert.key.account)
    money = _money(alert, rule, latest) if rule.kind.is_share or rule.kind.needs_rate else None
    usd: float | None = money if rule.kind.is_share else alert.value
    rate = None
    if rule.kind.needs_rate and money is not None and money > 0 and alert.value is not None:
        rate = money / alert.value if 0 < alert.value < math.inf else None
    return Event(
        EventKind.FIRE,
        alert.key.account,
        now,
        rule.severity,
        rule.name,
        rule.target,
        alert.key.subject,
        rule.kind.unit,
        alert.value,
        usd,
        rule.kind.threshold,
        rule.kind.recover_at,
        alert.fired_at,
        notify=rule.notify or (),
        currency=snap.currency if snap else "USD",
        rate=rate,
    )


def status_view(
    state: EngineState,
    rules: Sequence[Rule],
    latest: Latest,
    now: datetime,
    silences: Sequence[Silence] = (),
    acks: Sequence[Ack] = (),
    tz: ZoneInfo | None = None,
) -> Message:
    return status_message(*firing_events(state, rules, latest, now), silences, acks, tz)


# --- /healthz ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DestinationState:
    """How sends to one chat, channel or webhook went lately."""

    ok: bool | None = None  # None: nothing sent yet
    last_error: str = ""
    since: datetime | None = None  # when it started failing (or came back)


@dataclass(frozen=True, slots=True)
class PollRecord:
    at: datetime
    outcome: str  # "ok" or a FailureKind value
    error: str = ""


def iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def health(
    accounts: Iterable[str],
    state: Mapping[str, AccountHealth],
    polls: Mapping[str, PollRecord],
    last_cycle: datetime | None,
    started: datetime,
    interval: float,
    scheduler_running: bool,
    now: datetime,
    dead_tasks: Mapping[str, tuple[datetime, str]] | None = None,
    destinations: Mapping[str, DestinationState] | None = None,
) -> tuple[bool, dict[str, Any]]:
    """The /healthz verdict and body (docs/container.md, "Health"). `dead_tasks`:
    internal tasks that ended unexpectedly, with when and why."""
    limit = timedelta(seconds=3 * interval)
    grace = now - started < limit
    body_accounts: dict[str, Any] = {}
    failing: list[str] = []
    for name in accounts:
        poll = polls.get(name)
        account = state.get(name)
        last_ok = account.last_success if account else None
        ok = (last_ok is not None and now - last_ok <= limit) or (last_ok is None and grace)
        entry: dict[str, Any] = {
            "ok": ok,
            "last_poll": iso(poll.at) if poll else None,
            "outcome": poll.outcome if poll else None,
            "last_success": iso(last_ok),
        }
        if account and account.failures:
            entry["failing_since"] = iso(account.failing_since)
            entry["error"] = account.last_error
        if not ok:
            failing.append(name)
        body_accounts[name] = entry
    cycle_ok = (last_cycle is not None and now - last_cycle <= limit) or grace
    healthy = scheduler_running and cycle_ok and not failing and not dead_tasks
    body: dict[str, Any] = {
        "status": "ok" if healthy else "failing",
        "scheduler": "running" if scheduler_running else "stopped",
        "last_cycle": iso(last_cycle),
        "accounts": body_accounts,
    }
    if failing:
        body["failing"] = failing
    # a failing destination is shown, but is no reason for 503: a restart would not fix it
    body["destinations"] = {
        label: {"ok": d.ok, "last_error": d.last_error or None, "since": iso(d.since)}
        for label, d in (destinations or {}).items()
    }
    if dead_tasks:
        body["dead_tasks"] = {
            name: {"since": iso(since), "error": error}
            for name, (since, error) in dead_tasks.items()
        }
    return healthy, body
