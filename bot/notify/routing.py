"""Where each event goes, and when (SPEC 5): a rule's notifiers or
"notifier:group"s, each destination asking the suppression decision whether the
event may go now, must wait for the end of quiet hours, or stays silent (a resolve
goes only where its fire or a reminder went).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from bot.engine.model import AlertKey, Event, EventKind, MessageKind
from bot.notify.suppression import Facts, QuietHours, Say, decide
from bot.state.types import OutboxItem, OutboxRow, Told

Queue = tuple[str, str]  # (notifier, destination)

__all__ = ["Queue", "QuietHours", "Router", "may_release", "release"]


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
        self, events: Iterable[Event], told: Mapping[Told, datetime], facts: Facts
    ) -> list[OutboxItem]:
        """One outbox item per destination with the events for it, and in quiet
        hours one more, held until they end, with those that wait. `told`: when each
        destination was told of each alert still firing."""
        told_of: dict[AlertKey, list[Queue]] = {}
        for alert, notifier, destination in told:
            told_of.setdefault(alert, []).append((notifier, destination))
        at_once: dict[Queue, list[Event]] = {}
        held: dict[tuple[Queue, datetime], list[Event]] = {}
        for event in events:
            alert, say = event.alert, Say(event.kind)
            queues = told_of.get(alert, []) if say is Say.RESOLVE else self.queues_of(event.notify)
            for queue in queues:
                verdict = decide(
                    say, alert, event.severity, facts, told_at=told.get((alert, *queue))
                )
                if verdict.speaks:
                    at_once.setdefault(queue, []).append(event)
                elif verdict.until is not None:
                    held.setdefault((queue, verdict.until), []).append(event)
        items = [OutboxItem(n, d, tuple(evs)) for (n, d), evs in at_once.items()]
        items += [
            OutboxItem(n, d, tuple(evs), hold_until=until) for ((n, d), until), evs in held.items()
        ]
        return items

    def catch_up(
        self, firing: Iterable[Event], told: Mapping[Told, datetime], facts: Facts
    ) -> list[OutboxItem]:
        """For each destination never told of alerts (or outages) still firing, one
        message listing them, or one held for the end of quiet hours."""
        now: dict[Queue, list[Event]] = {}
        later: dict[tuple[Queue, datetime], list[Event]] = {}
        for event in firing:
            alert = event.alert
            for queue in self.queues_of(event.notify):
                verdict = decide(
                    Say.CATCH_UP, alert, event.severity, facts, told_at=told.get((alert, *queue))
                )
                if verdict.speaks:
                    now.setdefault(queue, []).append(event)
                elif verdict.until is not None:
                    later.setdefault((queue, verdict.until), []).append(event)
        items = [
            OutboxItem(n, d, tuple(evs), hold_until=until) for ((n, d), until), evs in later.items()
        ]
        items += [
            OutboxItem(n, d, tuple(evs), MessageKind.STILL_FIRING) for (n, d), evs in now.items()
        ]
        return items


def release(rows: Sequence[OutboxRow], facts: Facts) -> list[OutboxItem]:
    """What held rows become at the end of quiet hours: per destination, one
    message with the latest held event of each alert, leaving out what may no
    longer be said (an alert no longer firing, now snoozed or inhibited, ...)."""
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
        kept = tuple(e for e in by_alert.values() if may_release(e, facts))
        if kept:
            items.append(OutboxItem(notifier, destination, kept))
    return items


def may_release(event: Event, facts: Facts) -> bool:
    """A held event, released: the destination was told of what it says (it was
    routed there), and the hours it waited for are over."""
    return decide(Say(event.kind), event.alert, event.severity, facts, told_at=event.at).speaks
