"""The rule engine: (poll results, rules, previous state, context) -> (new state, events).

Who is told of a firing alert, and when, is not decided here: the steps it leaves
are announced by bot/notify/plan.py.

Pure: no I/O and no clock reads, so every transition is testable with plain
values. Imports only bot.engine.model and the standard library. The semantics are
the README's "How alerts behave".
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import NamedTuple

from bot.engine.model import (
    TOTAL,
    AccountHealth,
    AlertKey,
    AlertState,
    Event,
    EventKind,
    FailureKind,
    Figures,
    Flow,
    PollFailure,
    PollResult,
    Rule,
    Snapshot,
    Target,
    days_left,
)

NO_FIGURES = Figures()
NO_FLOW = Flow()  # no history yet: every rate and spending is still gathering data


@dataclass(frozen=True, slots=True)
class Context:
    """Everything besides results, rules and state that one evaluation needs."""

    now: datetime
    stale_after: int = 3  # consecutive failed polls before "data unavailable"
    flows: Mapping[str, Flow] = field(default_factory=dict)  # by account: rates, spending


class Measure(NamedTuple):  # not a dataclass: one is made per subject, rule and poll
    """One subject's value as a rule sees it."""

    subject: str
    value: float | None  # in the rule's unit; None while gathering data
    usd: float  # what remains
    rate: float | None = None  # USD per day, where known
    currency: str = "USD"  # of usd and rate (and of the value, for money kinds)


def split_alerts(
    alerts: Mapping[AlertKey, AlertState], polled: Iterable[str], rules: Sequence[Rule]
) -> tuple[dict[str, dict[AlertKey, AlertState]], dict[AlertKey, AlertState]]:
    """The alerts of each polled account, for evaluate_account; and the others',
    which keep their state (less those of removed rules)."""
    wanted = set(polled)
    grouped: dict[str, dict[AlertKey, AlertState]] = {}
    others: dict[AlertKey, AlertState] = {}
    for key, state in alerts.items():
        if key.account in wanted:
            grouped.setdefault(key.account, {})[key] = state
        elif _still_configured(key, rules):
            others[key] = state
    return grouped, others


class AccountOutcome(NamedTuple):
    alerts: dict[AlertKey, AlertState]  # the account's alerts after the poll
    health: AccountHealth
    events: list[Event]  # resolves and the account's data outage or return
    # the firing (or pending) alerts, before anyone is told: notify/plan.py announces them
    steps: Sequence[Step] = ()
    flow: Flow = NO_FLOW  # what the account's history said


def evaluate_account(
    result: PollResult,
    rules: Sequence[Rule],
    previous: Mapping[AlertKey, AlertState],
    health: AccountHealth | None,
    context: Context,
) -> AccountOutcome:
    """One account's poll: `previous` holds that account's alerts (only)."""
    account, now = result.account, context.now
    alerts = {k: s for k, s in previous.items() if _still_configured(k, rules)}
    old = health or AccountHealth(account)
    notify = notify_for(account, rules)
    if isinstance(result, PollFailure):
        new_health, event = _failed(old, result, context.stale_after, notify)
        return AccountOutcome(alerts, new_health, [event] if event else [])
    new_health, event = _succeeded(old, result, now, notify)
    events = [event] if event else []
    tracked: dict[str, list[AlertKey]] = {}  # rule -> its alerts of this account
    for key, state in list(alerts.items()):
        rule = next(r for r in rules if r.name == key.rule)
        if state.shape and state.shape != shape(rule):
            del alerts[key]  # the rule's target or kind changed: a new rule, the old alert goes
        else:
            tracked.setdefault(key.rule, []).append(key)
    flow = context.flows.get(account, NO_FLOW)
    steps: list[Step] = []
    for rule in rules:
        if rule.matches_account(account):
            scope = tracked.get(rule.name, [])
            events.extend(_apply_rule(rule, result, flow, alerts, scope, steps, now))
    return AccountOutcome(alerts, new_health, events, steps, flow)


class Step(NamedTuple):
    """One firing (or pending) alert after this poll, before anyone is told."""

    rule: Rule
    key: AlertKey
    measure: Measure
    event: Event | None  # FIRE or REMIND as the thresholds and `repeat` have it


def shape(rule: Rule) -> str:
    """What makes a rule the same rule across config edits besides its name:
    its target and kind. Thresholds, severity and the rest may change."""
    return f"{rule.target}:{rule.kind.unit}"


def _still_configured(key: AlertKey, rules: Sequence[Rule]) -> bool:
    """A removed rule's alerts, and those of an account it no longer matches, are
    dropped quietly."""
    return any(r.name == key.rule and r.matches_account(key.account) for r in rules)


def notify_for(account: str, rules: Sequence[Rule]) -> tuple[str, ...]:
    """Where data-availability events go: wherever the account's alerts would
    go; () for every notifier."""
    names: list[str] = []
    for rule in rules:
        if rule.matches_account(account):
            if rule.notify is None:
                return ()
            names.extend(n for n in rule.notify if n not in names)
    return tuple(names)


def _failed(
    old: AccountHealth, failure: PollFailure, stale_after: int, notify: tuple[str, ...]
) -> tuple[AccountHealth, Event | None]:
    new = replace(
        old,
        failures=old.failures + 1,
        failing_since=old.failing_since or failure.at,
        last_error=failure.reason,
    )
    limit = 1 if failure.kind is FailureKind.REJECTED else stale_after
    if new.unavailable or new.failures < limit:
        return new, None
    event = Event(
        kind=EventKind.UNAVAILABLE,
        account=old.account,
        at=failure.at,
        reason=failure.reason,
        since=new.failing_since,
        value=new.failures,
        notify=notify,
    )
    return replace(new, unavailable=True), event


def _succeeded(
    old: AccountHealth, snapshot: Snapshot, now: datetime, notify: tuple[str, ...]
) -> tuple[AccountHealth, Event | None]:
    new = AccountHealth(old.account, last_success=now)
    if not old.unavailable:
        return new, None
    event = Event(
        kind=EventKind.AVAILABLE,
        account=old.account,
        at=now,
        since=old.failing_since,
        usd=snapshot.total_quota,
        notify=notify,
        currency=snapshot.currency,
    )
    return new, event


def measures(
    rule: Rule, snapshot: Snapshot, flow: Flow = NO_FLOW, tracked: Collection[str] | None = None
) -> Iterator[Measure]:
    """The subjects `rule` watches in `snapshot`, with their values. With
    `tracked` (the subjects that have an alert state), a USD threshold rule
    skips untracked keys that do not fire: most keys, on most polls."""
    kind = rule.kind
    spend_window = kind.spend_window()
    spent = flow.spent.get(spend_window, NO_FIGURES) if spend_window is not None else NO_FIGURES
    # a key's rate costs a look at its history: only forecasts need it for every
    # key; other rules' events get theirs when they are announced (_with_forecast)
    forecast = kind.needs_rate
    money = snapshot.currency
    if rule.target is Target.TOTAL:
        if snapshot.unlimited:
            return  # no finite total: total rules never match
        total, used, rate = snapshot.total_quota, snapshot.total_used_quota, flow.burn.total
        yield Measure(TOTAL, kind.measure(total, used, rate, spent.total), total, rate, money)
        return
    watched = _watched(rule)
    rates, spent_keys = flow.burn.keys, spent.keys
    quick = tracked is not None and kind.is_remainder
    threshold, tracked = kind.threshold, tracked or ()
    measure = kind.measure
    for name, remain, used in snapshot.keys:
        if quick and remain >= threshold and name not in tracked:
            continue  # fine and without an alert state: what step() would find
        if remain < 0 or used < 0:
            continue  # unlimited: no key rule watches it
        in_scope = watched.get(name)
        if in_scope is None:
            in_scope = watched[name] = rule.key_matcher()(name)
        if in_scope:
            rate = rates.get(name) if forecast else None
            spent_key = spent_keys.get(name) if spent_keys else None
            yield Measure(name, measure(remain, used, rate, spent_key), remain, rate, money)


_WATCHED: dict[tuple[str, tuple[str, ...], tuple[str, ...]], dict[str, bool]] = {}
_WATCHED_LIMIT = 200_000  # names remembered per rule; beyond, it starts afresh


def _watched(rule: Rule) -> dict[str, bool]:
    """Whether `rule`'s key globs take in a key name, as worked out before: key
    names repeat from poll to poll, and matching globs costs. A memo only: the
    answer for a name never changes for the same rule and globs."""
    known = _WATCHED.setdefault((rule.name, rule.keys, rule.exclude_keys), {})
    if len(known) > _WATCHED_LIMIT:
        known.clear()
    return known


def _apply_rule(
    rule: Rule,
    snapshot: Snapshot,
    flow: Flow,
    alerts: dict[AlertKey, AlertState],
    tracked: list[AlertKey],
    steps: list[Step],
    now: datetime,
) -> list[Event]:
    """The rule's resolves; its firing alerts are left in `steps` for _announce.
    `tracked`: the keys `alerts` had for this rule and account before."""
    events: list[Event] = []
    seen: set[str] = set()
    fires, has_state = rule.kind.fires, {k.subject for k in tracked}
    for m in measures(rule, snapshot, flow, has_state):
        seen.add(m.subject)
        if m.subject not in has_state and (m.value is None or not fires(m.value)):
            continue  # the common case, what step() does: untracked and fine, nothing to do
        key = AlertKey(rule.name, snapshot.account, m.subject)
        state, event = step(rule, alerts.get(key), key, m, now)
        if state is None:
            alerts.pop(key, None)
        else:
            alerts[key] = state
        if event is not None and event.kind is EventKind.RESOLVE:
            events.append(event)
        elif state is not None:
            steps.append(Step(rule, key, m, event))
    if rule.target is not Target.TOTAL or snapshot.unlimited:
        events.extend(_vanished(rule, snapshot, alerts, tracked, seen, now))
    return events


def _vanished(
    rule: Rule,
    snapshot: Snapshot,
    alerts: dict[AlertKey, AlertState],
    tracked: list[AlertKey],
    seen: set[str],
    now: datetime,
) -> Iterable[Event]:
    """Keys a rule had state for but no longer measures."""
    gone = [k for k in tracked if k.subject not in seen]
    present = {k.name: k for k in snapshot.keys} if gone else {}
    for key in gone:
        state = alerts.pop(key)
        balance = present.get(key.subject)
        if not state.firing or (balance is not None and not balance.unlimited):
            continue  # out of the rule's scope by a config edit: dropped quietly
        if rule.target is Target.TOTAL:
            reason = "the account is now unlimited"
        else:
            reason = "key removed" if balance is None else "key is now unlimited"
        gone_measure = Measure(key.subject, state.value, math.nan, None, snapshot.currency)
        yield alert_event(EventKind.RESOLVE, rule, key, gone_measure, now, state.fired_at, reason)


def step(
    rule: Rule, state: AlertState | None, key: AlertKey, m: Measure, now: datetime
) -> tuple[AlertState | None, Event | None]:
    """One alert instance, one successful poll. While its value is unknown
    (gathering data) an alert neither fires nor resolves, and the poll neither
    counts toward nor resets for_polls; a firing one is still reminded."""
    kind, value = rule.kind, m.value
    if state is not None and state.firing:
        if value is not None and kind.recovers(value):
            return None, alert_event(EventKind.RESOLVE, rule, key, m, now, state.fired_at)
        value = state.value if value is None else value
        due = (
            rule.repeat
            and state.notified_at
            and (now - state.notified_at).total_seconds() >= rule.repeat
        )
        if due:
            event = alert_event(EventKind.REMIND, rule, key, m, now, state.fired_at)
            return replace(state, value=value, notified_at=now, shape=shape(rule)), event
        return replace(state, value=value, shape=shape(rule)), None
    if value is None:
        return state, None  # gathering data: nothing changes
    if not kind.fires(value):
        return None, None  # fine, or hovering between the levels: nothing to track
    polls = (state.polls_below if state else 0) + 1
    if polls < rule.for_polls:
        return AlertState(key, False, polls, value, shape=shape(rule)), None
    fired = AlertState(key, True, polls, value, now, now, shape(rule), announced=True)
    return fired, alert_event(EventKind.FIRE, rule, key, m, now, now)


def with_forecast(event: Event, rate: float | None) -> Event:
    """A threshold alert, with how long the money lasts where that is known."""
    if rate is None or event.usd is None:
        return event
    return replace(event, rate=rate, days=days_left(event.usd, rate))


def alert_event(
    kind: EventKind,
    rule: Rule,
    key: AlertKey,
    m: Measure,
    now: datetime,
    since: datetime | None,
    reason: str = "",
) -> Event:
    usd = None if math.isnan(m.usd) else m.usd
    return Event(
        kind=kind,
        account=key.account,
        at=now,
        severity=rule.severity,
        rule=rule.name,
        target=rule.target,
        subject=key.subject,
        unit=rule.kind.unit,
        value=m.value,
        usd=usd,
        threshold=rule.kind.threshold,
        recover_at=rule.kind.recover_at,
        since=since,
        reason=reason,
        notify=rule.notify or (),
        rate=m.rate,
        days=days_left(usd, m.rate) if usd is not None else None,
        window=rule.kind.spend_window(),
        gathering=m.value is None,
        currency=m.currency,
    )
