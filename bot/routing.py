"""Where each event goes, and when (README, "How alerts behave"): a rule's notifiers or
"notifier:group"s; a resolve only where its fire or a reminder went; and in
quiet hours, what is not urgent held until they end, then released as one
message per destination with what still holds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.model import AlertKey, Event, EventKind, Severity
from bot.store import OutboxItem, OutboxRow, Told

Queue = tuple[str, str]  # (notifier, destination)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """[start, end) in local time, wrapping past midnight when start > end."""

    start: time
    end: time
    zone: ZoneInfo

    def window(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The quiet hours `now` falls in, as (start, end), or None."""
        local = now.astimezone(self.zone)
        for day in (local.date() - timedelta(days=1), local.date()):
            start = datetime.combine(day, self.start, self.zone)
            end_day = day if self.end > self.start else day + timedelta(days=1)
            end = datetime.combine(end_day, self.end, self.zone)
            if start <= local < end:
                return start.astimezone(UTC), end.astimezone(UTC)
        return None


class Router:
    def __init__(
        self,
        destinations: Mapping[str, Sequence[str]],
        groups: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        quiet: QuietHours | None = None,
    ) -> None:
        self.destinations = destinations  # notifier -> where its alerts go by default
        self.groups = groups or {}  # notifier -> group -> destinations
        self.quiet = quiet

    def queues_of(self, notify: Sequence[str]) -> list[Queue]:
        """Every (notifier, destination) that `notify` names ("name" or
        "name:group"); every notifier's default destinations for ()."""
        found: dict[Queue, None] = {}
        for entry in notify or self.destinations:
            name, _, group = entry.partition(":")
            members = self.groups.get(name, {}).get(group, ()) if group else None
            for destination in self.destinations.get(name, ()) if members is None else members:
                found[(name, destination)] = None
        return list(found)

    def route(
        self, events: Iterable[Event], told: Mapping[Told, datetime], now: datetime
    ) -> list[OutboxItem]:
        """One outbox item per destination with the events for it, and in quiet
        hours one more, held until they end, with those that can wait.
        `told`: when each destination was told of each alert still firing."""
        window = self.quiet.window(now) if self.quiet else None
        told_of: dict[AlertKey, list[Queue]] = {}
        for alert, notifier, destination in told:
            told_of.setdefault(alert, []).append((notifier, destination))
        at_once: dict[Queue, list[Event]] = {}
        held: dict[Queue, list[Event]] = {}
        for event in events:
            if event.kind is EventKind.RESOLVE:
                queues = told_of.get(event.alert, [])
            else:
                queues = self.queues_of(event.notify)
            for queue in queues:
                since = told.get((event.alert, *queue))
                wait = window is not None and not urgent(event, since, window[0])
                (held if wait else at_once).setdefault(queue, []).append(event)
        items = [OutboxItem(n, d, tuple(evs)) for (n, d), evs in at_once.items()]
        if window is not None:
            items += [
                OutboxItem(n, d, tuple(evs), hold_until=window[1]) for (n, d), evs in held.items()
            ]
        return items


def urgent(event: Event, told_at: datetime | None, quiet_since: datetime) -> bool:
    """What goes out during quiet hours: critical fires and reminders, data
    unavailable, and the end of an alert whose fire went out in these quiet hours
    (`told_at`: when the destination's first message of it was queued)."""
    if event.kind in (EventKind.FIRE, EventKind.REMIND):
        return event.severity is Severity.CRITICAL
    if event.kind is EventKind.UNAVAILABLE:
        return True
    return told_at is not None and told_at >= quiet_since


def release(
    rows: Sequence[OutboxRow],
    holds: Callable[[Event], bool],
) -> list[OutboxItem]:
    """What held rows become at the end of quiet hours: per destination, one
    message with the latest held event of each alert, leaving out those for
    which `holds` is False (an alert no longer firing, snoozed, ...)."""
    latest: dict[Queue, dict[AlertKey, Event]] = {}
    fired: set[tuple[Queue, AlertKey]] = set()  # a held fire: its reminders tell it first
    for row in sorted(rows, key=lambda r: r.id):
        queue = (row.notifier, row.destination)
        by_alert = latest.setdefault(queue, {})
        for event in row.events:
            if event.kind is EventKind.FIRE:
                fired.add((queue, event.alert))
            elif event.kind is EventKind.REMIND and (queue, event.alert) in fired:
                event = replace(event, kind=EventKind.FIRE)
            elif event.kind is EventKind.RESOLVE:
                fired.discard((queue, event.alert))
            by_alert.pop(event.alert, None)  # keep the order of the latest
            by_alert[event.alert] = event
    items = []
    for (notifier, destination), by_alert in latest.items():
        kept = tuple(e for e in by_alert.values() if holds(e))
        if kept:
            items.append(OutboxItem(notifier, destination, kept))
    return items


def still_holds(
    event: Event,
    firing: Collection[AlertKey],
    unavailable: Collection[str],
    quiet: Callable[[AlertKey], bool],
) -> bool:
    """Whether a held event still says something true at its release: a fire or
    reminder of an alert firing and not `quiet` (snoozed, acknowledged or
    inhibited); a resolve of one not firing again; data back for an account
    that still has it."""
    if event.kind in (EventKind.FIRE, EventKind.REMIND):
        return event.alert in firing and not quiet(event.alert)
    if event.kind is EventKind.RESOLVE:
        return event.alert not in firing
    if event.kind is EventKind.AVAILABLE:
        return event.account not in unavailable
    return True
