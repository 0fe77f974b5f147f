"""The plain data types of the state layer: what the rest of the program hands a
StateStore and gets back, whatever the backend."""

from __future__ import annotations

import contextlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot.engine.message import Message
from bot.engine.model import AlertKey, EngineState, Event, EventKind, MessageKind, Snapshot

OUTBOX_KEEP_DAYS = 30  # delivered (or failed) rows and ended messages are kept this long
LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)
# what tells a destination of an alert (and what ends that)
TELLS = (EventKind.FIRE, EventKind.REMIND, EventKind.UNAVAILABLE)


class StoreError(Exception):
    """The state cannot be used. The message names the file or database and the remedy."""


class SchemaTooNewError(StoreError):
    """The state was written by a newer version of balance-bot (a config problem: exit 3)."""


class StoreReplacedError(StoreError):
    """The state was deleted or replaced (or taken over) while this process held it."""


class FencedError(StoreError):
    """Another process took over the shared state: this one must stop sending."""


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # failed for good; not retried
    DROPPED = "dropped"  # its notifier or destination is no longer configured
    SUPERSEDED = "superseded"  # only reminders that later rows made stale
    HELD = "held"  # quiet hours: released (or left out) at their end


@dataclass(frozen=True, slots=True)
class OutboxItem:
    notifier: str
    destination: str
    events: tuple[Event, ...]
    kind: MessageKind = MessageKind.ALERTS
    message: Message | None = None  # rendered ahead (the digest, edits); else made from `events`
    edit_of: int | None = None  # an edit of this sent message (`messages.id`)
    hold_until: datetime | None = None  # quiet hours: held until then

    def told_rows(self, row_id: int | None) -> list[tuple[Any, ...]]:
        """The `told` rows of this item once stored as `row_id`: (rule, account,
        subject, notifier, destination, row) for each alert it tells of."""
        return [
            (*e.alert, self.notifier, self.destination, row_id)
            for e in self.events
            if e.kind in TELLS
        ]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    created_at: datetime
    notifier: str
    destination: str
    events: tuple[Event, ...]
    parts_sent: int
    attempts: int
    next_attempt_at: datetime
    kind: MessageKind = MessageKind.ALERTS
    problem: str = ""  # why this version cannot read the row; it is then failed, not sent
    message: Message | None = None
    edit_of: int | None = None


Told = tuple[AlertKey, str, str]  # (alert, notifier, destination)


def tells(rows: Iterable[OutboxRow]) -> set[Told]:
    """Which destinations `rows` tell of which alerts (a fire, reminder or outage)."""
    return {
        (e.alert, row.notifier, row.destination)
        for row in rows
        for e in row.events
        if e.kind in TELLS
    }


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message a platform accepted: where, which outbox row and part it was,
    the platform's id for it, and the alerts whose fire or reminder it carried
    (resolved when, if they have)."""

    notifier: str
    destination: str
    outbox_id: int
    part: int
    platform_id: str
    kind: MessageKind
    events: tuple[Event, ...]  # those it told of
    alerts: tuple[AlertKey, ...]
    resolved: Mapping[AlertKey, datetime | None] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Commit:
    """What one cycle leaves to persist."""

    old: EngineState  # the state the cycle started from
    new: EngineState
    snapshots: Sequence[Snapshot]  # this cycle's good polls
    outbox: Sequence[OutboxItem]
    now: datetime
    samples: Sequence[Sample] = ()  # their history rows


@dataclass(eq=False)
class Layout:
    """The limited keys of an account's samples, in order; shared by the rows
    written while the set of keys stays the same. `id` is set once stored."""

    account: str
    names: tuple[str, ...]
    since: tuple[float, ...]  # when each key's series began
    id: int | None = None
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {name: i for i, name in enumerate(self.names)}


@contextlib.contextmanager
def new_layouts(remember: Callable[[list[Layout]], None]) -> Iterator[list[Layout]]:
    """The layouts a commit gives ids to, as it gives them. If the commit fails
    the ids are taken back (the next new layout could get the same id, and its
    samples another account's names); if it goes through, `remember` gets them."""
    fresh: list[Layout] = []
    try:
        yield fresh
    except BaseException:
        for layout in fresh:
            layout.id = None
        raise
    remember(fresh)


@dataclass(frozen=True, slots=True)
class Sample:
    account: str
    at: float  # seconds since the epoch
    total: float  # total_quota: the balance
    used: float  # total_used_quota as the upstream said it
    requests: int | None
    spent: float  # the total's spent counter
    layout: Layout | None = None
    keys: array[float] = field(default_factory=lambda: array("d"))

    def row(self) -> tuple[Any, ...]:
        """Its columns as both backends store them: account, at, total, used,
        requests, spent, layout id and the keys' figures as bytes."""
        layout = self.layout
        keys = self.keys.tobytes() if layout else None
        layout_id = layout.id if layout else None
        return (
            self.account,
            self.at,
            self.total,
            self.used,
            self.requests,
            self.spent,
            layout_id,
            keys,
        )

    def key_spent(self, name: str, since: float) -> float | None:
        """A key's spent counter, if this sample belongs to its series begun at `since`."""
        layout = self.layout
        if layout is None:
            return None
        i = layout.index.get(name)
        if i is None or layout.since[i] != since:
            return None
        return self.keys[i]
