"""What the rest of the program needs from the state, grouped by concern: alerts
(engine state, latest data and the cycle's commit), the outbox, history and marks
(snoozes, acks, sent messages, small facts). A backend provides all of them
(bot/state/sqlite/ and bot/state/postgres/ do); a contract suite
(tests/test_store_contract.py) runs the same tests against each.

Every method is a coroutine, so that a backend may talk to a server; one that
is cheap on its own (SQLite) runs its statement inline, without a thread hop,
and sends only long work (pruning) to a worker thread. Values in and out are
plain data (bot/state/types.py); errors are StoreError, never a driver's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Protocol

from bot.engine.model import Ack, AlertKey, EngineState, Silence, Snapshot
from bot.state.types import (
    Commit,
    OutboxItem,
    OutboxRow,
    OutboxStatus,
    Sample,
    SentMessage,
    Told,
)


class AlertStore(Protocol):
    async def load_state(self, accounts: Iterable[str]) -> EngineState:
        """The state of the configured accounts; other accounts' rows are ignored."""
        ...

    async def load_snapshots(self) -> dict[str, Snapshot]: ...

    async def commit_cycle(self, commit: Commit) -> None:
        """Persist one cycle atomically: either all of it or nothing."""
        ...


class OutboxStore(Protocol):
    async def enqueue(
        self, items: Iterable[OutboxItem], now: datetime, meta: Mapping[str, str] | None = None
    ) -> None:
        """Outbox rows outside a cycle, with facts to record in the same transaction."""
        ...

    async def pending(self, queue: tuple[str, str] | None = None) -> list[OutboxRow]: ...

    async def queues(self) -> list[tuple[str, str]]:
        """The (notifier, destination) pairs with undelivered rows, oldest first."""
        ...

    async def mark_sent_parts(self, row_id: int, parts_sent: int) -> None: ...

    async def mark_done(
        self, row_id: int, status: OutboxStatus, now: datetime, error: str = ""
    ) -> None: ...

    async def mark_retry(
        self, row_id: int, attempts: int, next_at: datetime, error: str
    ) -> None: ...

    async def reschedule(self, row_id: int, next_at: datetime) -> None: ...

    async def backlog(self) -> dict[str, int]: ...

    async def told(self) -> set[Told]:
        """Which destinations were told of each alert still firing."""
        ...

    async def told_at(self) -> dict[Told, datetime]: ...

    async def holding(self) -> set[Told]: ...

    async def held(self, due: datetime | None) -> list[OutboxRow]: ...

    async def release(
        self, held: Iterable[int], items: Iterable[OutboxItem], now: datetime
    ) -> None: ...


class HistoryReader(Protocol):
    """Samples read back (by seconds since the epoch)."""

    async def last(self, accounts: Iterable[str]) -> dict[str, Sample]: ...

    async def first(self, accounts: Iterable[str]) -> dict[str, Sample]: ...

    async def first_time_after(self, at: float) -> float | None: ...

    async def newest_before(
        self, at: float, accounts: Iterable[str] | None = None
    ) -> dict[str, Sample]: ...

    async def first_after(self, account: str, at: float) -> Sample | None: ...

    async def between(self, after: float, upto: float) -> list[Sample]: ...

    async def of(self, account: str, since: float, until: float) -> list[Sample]: ...


class HistoryStore(Protocol):
    @property
    def history(self) -> HistoryReader: ...

    async def prune(self, now: datetime, history_days: int = 90) -> int:
        """Delete one batch of expired or downsampled rows; the number deleted (0:
        done). Never blocks the event loop (SQLite: a worker thread)."""
        ...


class MarkStore(Protocol):
    async def silences(self, now: datetime) -> list[Silence]: ...

    async def add_silence(self, silence: Silence, now: datetime) -> int: ...

    async def end_silences(self, ids: Iterable[int], now: datetime) -> None: ...

    async def acks(self) -> dict[AlertKey, Ack]: ...

    async def add_acks(self, acks: Iterable[Ack]) -> None: ...

    async def record_message(self, sent: SentMessage, now: datetime) -> int: ...

    async def sent(self, message_id: int) -> SentMessage | None: ...

    async def sent_message(
        self, notifier: str, outbox_id: int, part: int
    ) -> SentMessage | None: ...

    async def messages_of(self, alerts: Iterable[AlertKey]) -> list[SentMessage]: ...

    async def meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...


class StateStore(AlertStore, OutboxStore, HistoryStore, MarkStore, Protocol):
    async def check_file(self) -> None:
        """Raise StoreReplacedError if the state was replaced or taken over under us
        (before each commit)."""
        ...

    async def close(self) -> None: ...


class Leadership(Protocol):
    """Which of the processes sharing a state is active (SPEC 7b): a lock only
    one can hold, and the epoch its taking raised (the store fences its writes
    with it). SQLite needs none: its file lock admits one process at all."""

    where: str  # the database, as messages name it
    epoch: int | None  # while held

    async def acquire(self) -> bool:
        """Take the lock if nobody holds it; raises StoreError if the state cannot be reached."""
        ...

    async def holding(self) -> bool:
        """Whether this process still holds it (checked before each send)."""
        ...

    async def release(self) -> None: ...
