"""Events and balances -> neutral messages (bot.notifiers.message). The
wording lives here, once; escaping and size limits belong to each notifier.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from bot.engine.kinds import kind_of
from bot.engine.model import (
    Ack,
    AlertKey,
    Event,
    EventKind,
    MessageKind,
    Severity,
    Silence,
    Snapshot,
    days_left,
)
from bot.engine.text import days, duration, forecast, money, name
from bot.notifiers.message import (
    KEY_REF,
    Action,
    Line,
    Message,
    Section,
    Span,
    alert_ref,
    keys_ref,
    plain,
)


def clock(when: datetime, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


# --- alerts ----------------------------------------------------------------

# A message's sections, in order, critical first within each; the severity is
# said once per line, never in a heading.
_ORDER = {
    (EventKind.FIRE, Severity.CRITICAL): 0,
    (EventKind.FIRE, Severity.WARNING): 1,
    (EventKind.UNAVAILABLE, Severity.WARNING): 2,
    (EventKind.REMIND, Severity.CRITICAL): 3,
    (EventKind.REMIND, Severity.WARNING): 4,
    (EventKind.RESOLVE, Severity.CRITICAL): 5,
    (EventKind.RESOLVE, Severity.WARNING): 6,
    (EventKind.AVAILABLE, Severity.WARNING): 7,
}

_HEADINGS = {
    0: "🔔 Firing",
    1: "🔔 Firing",
    2: "⚠️ Data unavailable",
    3: "⏰ Still firing",
    4: "⏰ Still firing",
    5: "✅ Resolved",
    6: "✅ Resolved",
    7: "✅ Data back",
}


_BRAND = ["CometAPI"]  # the word titles start with: set from the configured accounts


def name_providers(providers: Iterable[str]) -> None:
    """What the titles call the money watched: "CometAPI balance" while every
    account is a CometAPI one, "AI credit balance" once another provider joins.
    Set by the app whenever a config is (re)loaded."""
    _BRAND[0] = "CometAPI" if set(providers) <= {"cometapi"} else "AI credit"


def brand() -> str:
    return _BRAND[0]


def subject(event: Event) -> str:
    if event.target == "total" or not event.target:
        return f"{name(event.account)} / total"
    return f"{name(event.account)} / key {name(event.subject)}"


def burn(rate: float | None, remaining: float, currency: str = "USD") -> str:
    """$41.20/day, ≈ 2.4 days left; $0.00/day, not depleting; gathering data."""
    if rate is None:
        return "gathering data"
    left = days_left(remaining, rate)
    if left is None or math.isinf(left):
        return f"{money(rate, currency)}/day, not depleting"
    return f"{money(rate, currency)}/day, ≈ {left:.1f} days left"


def event_line(event: Event, named: bool = False) -> Line:
    """One event, e.g.
    CRITICAL · main / key prod-api: $1.42 left (below $2.00; resolves at $3.00).
    `named`: a resolve says its rule, `main / total (account-low)`, for a message
    that resolves two rules of one subject."""
    kind, sev = event.kind, event.severity.upper()
    rule_kind = kind_of(event.unit)
    if kind in (EventKind.FIRE, EventKind.REMIND):
        level = rule_kind.level_in
        text = (
            f"{subject(event)}: {rule_kind.now(event)} ({'above' if rule_kind.rising else 'below'} "
            f"{level(event.threshold, event.currency)}; "
            f"resolves at {level(event.recover_at, event.currency)})"
        )
        known = event.rate is not None and event.days is not None and math.isfinite(event.days)
        if rule_kind.with_forecast and known:
            text += f", {forecast(event.rate, event.days, event.currency)}"
        firing = (event.at - event.since).total_seconds() if event.since else 0.0
        if firing >= 60:  # "firing for 0s" would say nothing
            text += f", firing for {duration(firing)}"
        label = sev if kind is EventKind.FIRE else f"REMINDER · {sev}"
        return (Span(label, bold=True), Span(f" · {text}"))
    if kind is EventKind.RESOLVE:
        took = f" after {duration((event.at - event.since).total_seconds())}" if event.since else ""
        what = event.reason or rule_kind.resolved(event)
        rule = f" ({name(event.rule)})" if named else ""
        return (Span("RESOLVED", bold=True), Span(f" · {subject(event)}{rule}: {what}{took}"))
    if kind is EventKind.UNAVAILABLE:
        polls = int(event.value or 0)
        text = f" · {name(event.account)}: {event.reason}"
        if polls > 1:
            text += f" ({polls} failed polls in a row)"
        text += "; alerts for this account are on hold until data returns"
        return (Span("DATA UNAVAILABLE", bold=True), Span(text))
    took = f" after {duration((event.at - event.since).total_seconds())}" if event.since else ""
    return (
        Span("DATA BACK", bold=True),
        Span(
            f" · {name(event.account)}: balance "
            f"{money(event.usd, event.currency)}{took} without data"
        ),
    )


class AsOf(NamedTuple):
    """When a message leaves, and how old its data may be before it says so."""

    now: datetime
    fresh_for: float  # seconds: a poll interval
    zone: ZoneInfo


def outbox_message(
    kind: MessageKind, events: Sequence[Event], as_of: AsOf | None = None
) -> Message:
    """What an outbox row says: a cycle's events, or the alerts a destination missed."""
    if kind is MessageKind.STILL_FIRING:
        return still_firing_message(events, as_of)
    return events_message(events, as_of)


def still_firing_message(events: Sequence[Event], as_of: AsOf | None = None) -> Message:
    """Sent once to a destination that missed alerts still firing (it was added to
    the config, or its sends had failed for good)."""
    msg = events_message(events, as_of)
    title = f"{brand()} balance: still firing, {len(events)} alert" + (
        "s" if len(events) > 1 else ""
    )
    return Message(title, msg.sections, msg.severity, msg.actions)


# the buttons of every message with a fire or a reminder in it
ALERT_ACTIONS = (Action("Snooze 1h", "s1h"), Action("Snooze 1d", "s1d"), Action("Ack", "ack"))
ANNOUNCES = (EventKind.FIRE, EventKind.REMIND)


EVENT_REF = "event:"  # the reference of a line that announces nothing (a resolve, ...)


def event_ref(event: Event) -> str:
    """How a line about `event` is referred to: by its alert for a fire or a
    reminder (buttons act on it), else as the event."""
    ref = alert_ref(event.alert)
    return ref if event.kind in ANNOUNCES else f"{EVENT_REF}{event.kind.value}:{ref}"


def events_message(events: Sequence[Event], as_of: AsOf | None = None) -> Message:
    """The events of one cycle as one message, critical first. Each line refers
    to its event (event_ref), so that buttons act on the alerts of their piece.
    With `as_of`, a message whose data is older than a poll interval says when it is from."""
    ordered = sorted(events, key=lambda e: (_ORDER[(e.kind, _sev(e))], e.account, e.subject))
    resolved: dict[tuple[str, str, str], set[str]] = {}
    for e in events:
        if e.kind is EventKind.RESOLVE:
            resolved.setdefault((e.account, e.target, e.subject), set()).add(e.rule)
    sections: list[Section] = []
    for event in ordered:
        heading = _HEADINGS[_ORDER[(event.kind, _sev(event))]]
        ref = event_ref(event)
        shared = len(resolved.get((event.account, event.target, event.subject), ())) > 1
        line = event_line(event, named=event.kind is EventKind.RESOLVE and shared)
        if sections and sections[-1].heading == heading:
            last = sections[-1]
            sections[-1] = Section(heading, (*last.lines, line), (*last.refs, ref))
        else:
            sections.append(Section(heading, (line,), (ref,)))
    late = _late(events, as_of)
    if late:  # last: the parts before it split as they did on an earlier attempt
        sections.append(Section("", ((Span(late),),)))
    firing = [e.severity for e in events if e.kind in ANNOUNCES]
    worst = (
        Severity.CRITICAL if Severity.CRITICAL in firing else (Severity.WARNING if firing else None)
    )
    actions = ALERT_ACTIONS if firing else ()
    return Message(_title(events), tuple(sections), worst, actions)


def followed_message(
    kind: MessageKind, events: Sequence[Event], notes: Sequence[str], open_: bool, ref: str
) -> Message:
    """A message sent before, as it reads now: its events, then `notes` on what
    became of its alerts (resolved, snoozed, acknowledged); its buttons stay
    while some of its alerts are `open_`."""
    msg = outbox_message(kind, events)
    footer = (Section("", tuple((Span(note),) for note in notes)),) if notes else ()
    actions = ALERT_ACTIONS if open_ else ()
    return Message(msg.title, (*msg.sections, *footer), msg.severity, actions, ref)


def _late(events: Sequence[Event], as_of: AsOf | None) -> str:
    """A note for a message that leaves more than a poll interval after its data."""
    if as_of is None or not events:
        return ""
    oldest = min(e.at for e in events)
    late = (as_of.now - oldest).total_seconds()
    if late <= as_of.fresh_for:
        return ""
    return f"Data from {clock(oldest, as_of.zone)} (this message was held up {duration(late)})"


def _sev(event: Event) -> Severity:
    if event.kind in (EventKind.UNAVAILABLE, EventKind.AVAILABLE):
        return Severity.WARNING
    return event.severity


def _title(events: Sequence[Event]) -> str:
    counts: dict[str, int] = {}
    for e in events:
        label = {
            EventKind.FIRE: e.severity.value,
            EventKind.REMIND: "reminder",
            EventKind.RESOLVE: "resolved",
            EventKind.UNAVAILABLE: "data unavailable",
            EventKind.AVAILABLE: "data back",
        }[e.kind]
        counts[label] = counts.get(label, 0) + 1
    order = ["critical", "warning", "reminder", "data unavailable", "resolved", "data back"]
    parts = [f"{counts[k]} {k}" for k in order if k in counts]
    return f"{brand()} balance: " + ", ".join(parts)


# --- /balance and /status ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountView:
    """What /balance shows for one account."""

    account: str
    snapshot: Snapshot | None
    total_firing: bool = False
    keys_firing: frozenset[str] = frozenset()
    error: str = ""  # why fresh data is missing, if it is
    rate: float | None = None  # burn rate, USD per day; None while gathering data
    top: Sequence[tuple[str, float]] = ()  # the keys that spend most: (name, USD per day)


def balance_message(views: Iterable[AccountView], now: datetime, tz: ZoneInfo) -> Message:
    """/balance: a section per account. Key lines stop after KEY_ROOM characters
    in all, the rest of an account's keys said in one line, so that an answer
    costs the same to build and send however many keys there are."""
    sections, room = [], KEY_ROOM
    for view in views:
        section, room = _account_section(view, now, tz, room)
        sections.append(section)
    narrower = "ask for one account: {command} <account>" if len(sections) > 1 else ""
    return Message(f"{brand()} balance", tuple(sections), narrower=narrower)


MARK = "🔻"
# More than five messages of any chat hold (Telegram 5 x 4096, Slack 5 x 10,000
# characters), so an answer cut here is always cut again to the chat's reply
# limit, which says how many keys were left out (notifiers.base.capped).
KEY_ROOM = 60_000


def _account_section(
    view: AccountView, now: datetime, tz: ZoneInfo, room: int
) -> tuple[Section, int]:
    """One account's section, with key lines while `room` (characters) lasts;
    and the room left."""
    snap = view.snapshot
    heading = name(view.account)
    lines: list[Line] = []
    refs: list[str | None] = []  # KEY_REF for each key's line, so a cut answer can count them
    if view.error:
        lines.append((Span("⚠️ fetch failed: ", bold=True), Span(view.error)))
    if snap is None:
        lines.append((Span("no data yet"),))
        return Section(heading, tuple(lines)), room
    if snap.username:
        heading += f" ({name(snap.username)})"
    cur = snap.currency
    mark = f"{MARK} " if view.total_firing else ""
    balance = "unlimited" if snap.unlimited else money(snap.total_quota, cur)
    lines.append((Span(f"{mark}Balance: "), Span(balance, bold=True)))
    if not snap.available:
        lines.append((Span("⚠️ not available for API calls", bold=True),))
    used = f"Used: {money(snap.total_used_quota, cur)}"
    if snap.used_derived:
        used += " (from balance drops since first seen)"
    if snap.request_count is not None:
        used += f" · Requests: {snap.request_count:,}"
    lines.append((Span(used),))
    if snap.unlimited:  # spending, but no money runs out
        rate = "gathering data" if view.rate is None else f"{money(view.rate, cur)}/day"
        lines.append((Span(f"Burn: {rate}"),))
    else:
        lines.append((Span(f"Burn: {burn(view.rate, snap.total_quota, cur)}"),))
    if view.top:
        spenders = ", ".join(f"{name(k)} {money(r, cur)}/day" for k, r in view.top)
        lines.append((Span(f"Spending most: {spenders}"),))
    limited = sorted(
        (k for k in snap.keys if not k.unlimited), key=lambda k: (k.remain_quota, k.name)
    )
    unlimited = sorted((k for k in snap.keys if k.unlimited), key=lambda k: k.name)
    if snap.keys:
        lines.append((Span(f"Keys ({len(snap.keys)}):"),))
    refs.extend([None] * len(lines))
    shown = 0
    for key in (*limited, *unlimited):
        if key.unlimited:
            text = f"{name(key.name)}: unlimited"
        else:
            mark = f"{MARK} " if key.name in view.keys_firing else ""
            left, used = money(key.remain_quota, cur), money(key.used_quota, cur)
            text = f"{mark}{name(key.name)}: {left} left, {used} used"
        if len(text) >= room:
            break
        room -= len(text) + 1
        lines.append((Span(text),))
        refs.append(f"{KEY_REF}{view.account}/{key.name}")
        shown += 1
    if shown < len(snap.keys):
        room = 0  # the accounts after this one show no keys either
        lines.append((Span(f"… {len(snap.keys) - shown} more keys not shown"),))
        refs.append(keys_ref(view.account, len(snap.keys) - shown))
    age = duration((now - snap.fetched_at).total_seconds())
    lines.append((Span(f"Data from {clock(snap.fetched_at, tz)} ({age} ago)"),))
    return Section(heading, tuple(lines), tuple(refs)), room


def status_message(
    firing: Sequence[Event],
    unavailable: Sequence[Event],
    silences: Sequence[Silence] = (),
    acks: Sequence[Ack] = (),
    tz: ZoneInfo | None = None,
) -> Message:
    """Firing alerts (FIRE events carrying the current value and since when they
    fire), accounts without data (UNAVAILABLE events), snoozes and acks."""
    zone = tz or ZoneInfo("UTC")
    notes: list[Section] = []
    if silences:
        lines = tuple(
            (Span(silence_name(s)), Span(f" until {clock(s.until, zone)}, by {name(s.who)}"))
            for s in silences
        )
        notes.append(Section("🔕 Snoozed", lines))
    if acks:
        lines = tuple(
            (Span(alert_name(a.key)), Span(f" by {name(a.who)} at {clock(a.at, zone)}"))
            for a in acks
        )
        notes.append(Section("☑️ Acknowledged", lines))
    if not firing and not unavailable:
        clear = Section("", ((Span("No alert is firing."),),))
        return Message(f"{brand()} balance: all clear", (clear, *notes))
    msg = events_message([*unavailable, *firing])
    title = f"{brand()} balance: {len(firing)} firing" + (
        f", {len(unavailable)} without data" if unavailable else ""
    )
    return Message(title, (*msg.sections, *notes), msg.severity)


def alert_name(key: AlertKey) -> str:
    """main / prod-api (key-low): an alert named without its event."""
    return f"{name(key.account)} / {name(key.subject)} ({name(key.rule)})"


def silence_name(silence: Silence) -> str:
    """What a snooze covers: its pattern, or the alerts of the message it was pressed on."""
    if not silence.alerts:
        return name(silence.pattern)
    keys = sorted(silence.alerts)
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return ", ".join(alert_name(k) for k in keys[:3]) + more


def help_message(commands: Sequence[tuple[str, str]]) -> Message:
    lines = tuple((Span(cmd, bold=True), Span(f" — {text}")) for cmd, text in commands)
    return Message("balance-bot commands", (Section("", lines),))


# --- /spend and the digest ---------------------------------------------------------

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """▁▂▃▅▇ from low to high; a blank for a missing value."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    low, high = min(known), max(known)
    steps = len(SPARKS) - 1
    return "".join(
        " " if v is None else SPARKS[round((v - low) / (high - low) * steps) if high > low else 0]
        for v in values
    )


@dataclass(frozen=True, slots=True)
class SpendView:
    """What /spend (and the digest) shows for one account over a period."""

    account: str
    period: float  # seconds asked for
    covered: float  # seconds the history covers of it
    spent: float | None  # USD; None while gathering data
    remaining: float | None  # the balance now
    rate: float | None  # the burn rate /balance shows (USD per day); None while gathering data
    top: Sequence[tuple[str, float]] = ()  # the keys that spent most: (name, money)
    currency: str = "USD"  # of every amount in it


def spend_message(views: Sequence[SpendView], period_text: str) -> Message:
    sections = []
    for v in views:
        lines: list[Line] = []
        if v.spent is None:
            lines.append((Span("Spent: gathering data"),))
        else:
            lines.append((Span("Spent: "), Span(money(v.spent, v.currency), bold=True)))
        lines.append((Span(f"Burn: {burn(v.rate, v.remaining or 0.0, v.currency)}"),))
        if v.covered < v.period - 60:
            covered = days(v.covered / 86400) if v.covered >= 86400 else duration(v.covered)
            covered = covered if v.covered > 0 else "none"
            lines.append((Span(f"History covers {covered} of it"),))
        if v.top:
            lines.append((Span(f"Spent most: {_amounts(v.top, v.currency)}"),))
        sections.append(Section(name(v.account), tuple(lines)))
    return Message(f"{brand()} spending, last {period_text}", tuple(sections))


@dataclass(frozen=True, slots=True)
class DigestView:
    """One account's part of the daily digest."""

    account: str
    snapshot: Snapshot | None
    rate: float | None  # burn rate, USD per day
    last_day: float | None  # USD spent in the last 24 h
    day_before: float | None  # and in the 24 h before
    top: Sequence[tuple[str, float]]  # the 5 keys that spent most in the last 24 h
    emptiest: Sequence[tuple[str, float]]  # the 5 watched keys closest to empty: (name, USD left)
    week: Sequence[float | None]  # end-of-day balances of the last 7 local days, oldest first
    firing: Sequence[Event]
    snoozed: Sequence[str] = ()
    error: str = ""  # why its last poll failed, if it did
    currency: str = "USD"  # of every amount in it


def _amounts(items: Sequence[tuple[str, float]], currency: str = "USD") -> str:
    return ", ".join(f"{name(k)} {money(a, currency)}" for k, a in items)


def digest_message(views: Sequence[DigestView], day: str) -> Message:
    sections = []
    for v in views:
        lines: list[Line] = []
        snap = v.snapshot
        if v.error:
            lines.append((Span("⚠️ fetch failed: ", bold=True), Span(v.error)))
        if snap is None:
            lines.append((Span("no data yet"),))
        else:
            cur = v.currency
            balance = "unlimited" if snap.unlimited else money(snap.total_quota, cur)
            lines.append((Span("Balance: "), Span(balance, bold=True)))
            if not snap.available:
                lines.append((Span("⚠️ not available for API calls", bold=True),))
            lines.append((Span(f"Burn: {burn(v.rate, snap.total_quota, cur)}"),))
        cur = v.currency
        spent = "gathering data" if v.last_day is None else money(v.last_day, cur)
        before = "" if v.day_before is None else f" (the 24 h before: {money(v.day_before, cur)})"
        lines.append((Span(f"Spent in the last 24 h: {spent}{before}"),))
        lines.append((Span(f"Last 7 days: {sparkline(v.week)}"),))
        if v.top:
            lines.append((Span(f"Spent most: {_amounts(v.top, cur)}"),))
        if v.emptiest:
            closest = ", ".join(f"{name(k)} {money(a, cur)} left" for k, a in v.emptiest)
            lines.append((Span(f"Closest to empty: {closest}"),))
        firing = [plain(event_line(e)) for e in v.firing]
        lines.append((Span(f"Firing: {len(firing)}" if firing else "Firing: none"),))
        lines.extend((Span(f"  {text}"),) for text in firing)
        if v.snoozed:
            lines.append((Span("Snoozed: " + ", ".join(v.snoozed)),))
        sections.append(Section(name(v.account), tuple(lines)))
    return Message(f"{brand()} daily digest, {day}", tuple(sections))
