"""Events and balances -> neutral messages (bot.notifiers.message). The
wording lives here, once; escaping and size limits belong to each notifier.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.model import Event, EventKind, MessageKind, Severity, Snapshot
from bot.notifiers.message import KEY_REF, Line, Message, Section, Span

MAX_NAME = 200  # long user strings are cut so that any single line stays small


def name(text: str) -> str:
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def usd(value: float | None) -> str:
    if value is None:
        return "?"
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


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


def clock(when: datetime, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


# --- alerts ----------------------------------------------------------------

_ORDER = {
    (EventKind.FIRE, Severity.CRITICAL): 0,
    (EventKind.REMIND, Severity.CRITICAL): 1,
    (EventKind.UNAVAILABLE, Severity.WARNING): 2,
    (EventKind.FIRE, Severity.WARNING): 3,
    (EventKind.REMIND, Severity.WARNING): 4,
    (EventKind.RESOLVE, Severity.CRITICAL): 5,
    (EventKind.RESOLVE, Severity.WARNING): 6,
    (EventKind.AVAILABLE, Severity.WARNING): 7,
}

_HEADINGS = {
    0: "🔴 Critical",
    1: "🔴 Still critical",
    2: "⚠️ Data unavailable",
    3: "🟠 Warning",
    4: "🟠 Still low",
    5: "✅ Resolved",
    6: "✅ Resolved",
    7: "✅ Data back",
}


def subject(event: Event) -> str:
    if event.target == "total" or not event.target:
        return f"{name(event.account)} / total"
    return f"{name(event.account)} / key {name(event.subject)}"


def _amount(event: Event, value: float | None) -> str:
    return percent(value) if event.unit == "percent" else usd(value)


def event_line(event: Event) -> Line:
    """One event, e.g.
    CRITICAL · main / key prod-api: $1.42 left (below $2.00; resolves at $3.00)."""
    kind, sev = event.kind, event.severity.upper()
    if kind in (EventKind.FIRE, EventKind.REMIND):
        left = usd(event.usd)
        if event.unit == "percent":
            left += f" ({percent(event.value)})"
        text = (
            f"{subject(event)}: {left} left (below {_amount(event, event.threshold)}; "
            f"resolves at {_amount(event, event.recover_at)})"
        )
        if event.since and event.since != event.at:
            text += f", firing for {duration((event.at - event.since).total_seconds())}"
        label = sev if kind is EventKind.FIRE else f"REMINDER · {sev}"
        return (Span(label, bold=True), Span(f" · {text}"))
    if kind is EventKind.RESOLVE:
        took = f" after {duration((event.at - event.since).total_seconds())}" if event.since else ""
        if event.reason:
            what = f"{event.reason}"
        else:
            now = usd(event.usd)
            if event.unit == "percent":
                now += f" ({percent(event.value)})"
            what = f"{now} (at or above {_amount(event, event.recover_at)})"
        return (Span("RESOLVED", bold=True), Span(f" · {subject(event)}: {what}{took} [{sev}]"))
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
        Span(f" · {name(event.account)}: balance {usd(event.usd)}{took} without data"),
    )


def outbox_message(kind: MessageKind, events: Sequence[Event]) -> Message:
    """What an outbox row says: a cycle's events, or the alerts a destination missed."""
    if kind is MessageKind.STILL_FIRING:
        return still_firing_message(events)
    return events_message(events)


def still_firing_message(events: Sequence[Event]) -> Message:
    """Sent once to a destination that missed alerts still firing (it was added to
    the config, or its sends had failed for good)."""
    msg = events_message(events)
    title = f"CometAPI balance: still firing, {len(events)} alert" + (
        "s" if len(events) > 1 else ""
    )
    return Message(title, msg.sections, msg.severity, msg.actions)


def events_message(events: Sequence[Event]) -> Message:
    """The events of one cycle as one message, critical first."""
    ordered = sorted(events, key=lambda e: (_ORDER[(e.kind, _sev(e))], e.account, e.subject))
    sections: list[Section] = []
    for event in ordered:
        heading = _HEADINGS[_ORDER[(event.kind, _sev(event))]]
        if sections and sections[-1].heading == heading:
            sections[-1] = Section(heading, (*sections[-1].lines, event_line(event)))
        else:
            sections.append(Section(heading, (event_line(event),)))
    firing = [e.severity for e in events if e.kind in (EventKind.FIRE, EventKind.REMIND)]
    worst = (
        Severity.CRITICAL if Severity.CRITICAL in firing else (Severity.WARNING if firing else None)
    )
    return Message(_title(events), tuple(sections), worst)


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
    return "CometAPI balance: " + ", ".join(parts)


# --- /balance and /status ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountView:
    """What /balance shows for one account."""

    account: str
    snapshot: Snapshot | None
    total_firing: bool = False
    keys_firing: frozenset[str] = frozenset()
    error: str = ""  # why fresh data is missing, if it is


def balance_message(views: Iterable[AccountView], now: datetime, tz: ZoneInfo) -> Message:
    sections = tuple(_account_section(v, now, tz) for v in views)
    return Message("CometAPI balance", sections)


MARK = "🔻"


def _account_section(view: AccountView, now: datetime, tz: ZoneInfo) -> Section:
    snap = view.snapshot
    heading = name(view.account)
    lines: list[Line] = []
    refs: list[str | None] = []  # KEY_REF for each key's line, so a cut answer can count them
    if view.error:
        lines.append((Span("⚠️ fetch failed: ", bold=True), Span(view.error)))
    if snap is None:
        lines.append((Span("no data yet"),))
        return Section(heading, tuple(lines))
    if snap.username:
        heading += f" ({name(snap.username)})"
    mark = f"{MARK} " if view.total_firing else ""
    lines.append((Span(f"{mark}Balance: "), Span(usd(snap.total_quota), bold=True)))
    used = f"Used: {usd(snap.total_used_quota)}"
    if snap.request_count is not None:
        used += f" · Requests: {snap.request_count:,}"
    lines.append((Span(used),))
    limited = sorted(
        (k for k in snap.keys if not k.unlimited), key=lambda k: (k.remain_quota, k.name)
    )
    unlimited = sorted((k for k in snap.keys if k.unlimited), key=lambda k: k.name)
    if snap.keys:
        lines.append((Span(f"Keys ({len(snap.keys)}):"),))
    refs.extend([None] * len(lines))
    for key in limited:
        mark = f"{MARK} " if key.name in view.keys_firing else ""
        left, used = usd(key.remain_quota), usd(key.used_quota)
        lines.append((Span(f"{mark}{name(key.name)}: {left} left, {used} used"),))
        refs.append(f"{KEY_REF}{view.account}/{key.name}")
    for key in unlimited:
        lines.append((Span(f"{name(key.name)}: unlimited"),))
        refs.append(f"{KEY_REF}{view.account}/{key.name}")
    age = duration((now - snap.fetched_at).total_seconds())
    lines.append((Span(f"Data from {clock(snap.fetched_at, tz)} ({age} ago)"),))
    return Section(heading, tuple(lines), tuple(refs))


def status_message(firing: Sequence[Event], unavailable: Sequence[Event]) -> Message:
    """Firing alerts (FIRE events carrying the current value and since when they
    fire) and accounts without data (UNAVAILABLE events)."""
    if not firing and not unavailable:
        return Message(
            "CometAPI balance: all clear", (Section("", ((Span("No alert is firing."),),)),)
        )
    msg = events_message([*unavailable, *firing])
    title = f"CometAPI balance: {len(firing)} firing" + (
        f", {len(unavailable)} without data" if unavailable else ""
    )
    return Message(title, msg.sections, msg.severity)


def help_message(commands: Sequence[tuple[str, str]]) -> Message:
    lines = tuple((Span(cmd, bold=True), Span(f" — {text}")) for cmd, text in commands)
    return Message("balance-bot commands", (Section("", lines),))
