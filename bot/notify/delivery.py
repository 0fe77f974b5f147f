"""The outbox loop: send what the store recorded, back off, mark delivered.

Rows are delivered in order per (notifier, destination); destinations do not
wait for each other. A row is rendered at send time and remembers how many of
its payloads went out, so a restart resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.common.backoff import Backoff
from bot.common.logs import log_event
from bot.common.secrets import redact
from bot.engine.model import Event, EventKind
from bot.notifiers import DeliveryError, Notifier
from bot.notifiers.message import Message, alert_of, trimmed
from bot.notify.render import AsOf, event_ref, outbox_message
from bot.state.protocol import StateStore
from bot.state.types import FencedError, OutboxRow, OutboxStatus, SentMessage

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 30.0
EDIT_GIVE_UP = timedelta(hours=24)
DEFAULT_BACKOFF = Backoff()
UTC_ZONE = ZoneInfo("UTC")


def current_events(rows: list[OutboxRow]) -> list[tuple[OutboxRow, tuple[Event, ...]]]:
    """Each queued row with the reminders dropped that a later queued event of the
    same alert makes stale: after an outage of the chat, one reminder per alert is
    enough. Rows already partly sent keep everything, so their parts stay stable."""
    later: set[tuple[str, str, str]] = set()
    out: list[tuple[OutboxRow, tuple[Event, ...]]] = []
    for row in reversed(rows):
        events = row.events
        if not row.parts_sent:
            events = tuple(
                e for e in events if e.kind is not EventKind.REMIND or _alert(e) not in later
            )
        later.update(_alert(e) for e in row.events if e.rule)
        out.append((row, events))
    return out[::-1]


def _pictures(notifier: Notifier, message: Message) -> list[tuple[Any, tuple[str, ...]]]:
    """A message of pictures (a digest's charts) as the notifier shows them; one
    that shows none (a webhook) is sent nothing, and the row is done."""
    shown = (notifier.picture(picture) for picture in message.pictures)
    return [(payload, ()) for payload in shown if payload is not None]


def _alert(event: Event) -> tuple[str, str, str]:
    return (event.rule, event.account, event.subject)


Queue = tuple[str, str]  # (notifier, destination)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt to deliver a row."""

    notifier: str
    destination: str
    outcome: str  # "delivered", "retry" or "failed"
    reason: str = ""  # why it was not delivered (redacted)


class Delivery:
    def __init__(
        self,
        store: StateStore,
        notifiers: Mapping[str, Notifier],
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
        on_outcome: Callable[[Outcome], None] = lambda outcome: None,
        fresh_for: float = 0.0,
        zone: ZoneInfo = UTC_ZONE,
        may_send: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.store = store
        # replicas (SPEC 7b): asked before each send; False stops delivery at once
        self.may_send = may_send
        # a message leaving later than this after its data says when the data is from
        self.fresh_for, self.zone = fresh_for, zone
        self.notifiers = notifiers
        self.backoff = backoff
        self.clock = clock
        self.rand = rand
        self.on_outcome = on_outcome
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._attempted = asyncio.Event()
        # One sender per destination at a time, so no row is ever sent twice.
        self._locks: dict[Queue, asyncio.Lock] = {}
        # the delay each retry was given in this process: a clock stepping back
        # must not stretch it (after a restart, backoff.maximum bounds it instead)
        self._delays: dict[int, float] = {}
        self._nudges: dict[Queue, asyncio.Event] = {}  # per worker: look again now

    @property
    def _stopping(self) -> bool:
        return self._stop.is_set()

    def wake(self) -> None:
        """New rows: workers start for new destinations, and those sleeping
        until an edit's retry look again (an edit never holds back an alert)."""
        self._wake.set()
        for nudge in self._nudges.values():
            nudge.set()

    def expect_send(self) -> asyncio.Event:
        """An event set once the next send attempt is over: the cycle holds its
        polls back that long (briefly), so that the first alert leaves at once."""
        self._attempted = asyncio.Event()
        return self._attempted

    def stop(self) -> None:
        """Finish the sends under way, start no new ones."""
        self._stop.set()
        self.wake()

    async def run(self) -> None:
        """Deliver until stop(). Each destination has its own worker, so one that
        hangs or backs off never holds up another; wake() starts workers for new rows."""
        workers: dict[Queue, asyncio.Task[None]] = {}
        try:
            while not self._stopping:
                self._wake.clear()
                for queue in await self._queues():
                    if queue not in workers or workers[queue].done():
                        workers[queue] = asyncio.create_task(self._work(queue))
                await self._wake.wait()
            await asyncio.gather(*workers.values())
        finally:
            for task in workers.values():
                task.cancel()
            await asyncio.gather(*workers.values(), return_exceptions=True)

    async def deliver_due(self) -> float | None:
        """One pass over every destination; returns seconds until the next retry, if any."""
        waits = await asyncio.gather(*(self._pass(queue) for queue in await self._queues()))
        due = [w for w in waits if w is not None]
        return max(min(due), 0.0) if due else None

    async def _queues(self) -> list[Queue]:
        return await self.store.queues()

    async def _work(self, queue: Queue) -> None:
        nudge = self._nudges.setdefault(queue, asyncio.Event())
        while not self._stopping:
            nudge.clear()
            try:
                wait = await self._pass(queue)
                if wait is None and not await self.store.pending(queue):
                    return
            except FencedError as exc:  # another process is active: it sends from now on
                log_event(logger, "delivery.fenced", logging.WARNING, reason=str(exc))
                self.stop()
                return
            except Exception as exc:  # the store failed (disk full?): try again later
                log_event(logger, "delivery.error", logging.ERROR, reason=redact(str(exc)))
                wait = self.backoff.initial
            if wait:  # until the row is due, new rows come (wake) or the stop
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(nudge.wait(), timeout=wait)

    async def _pass(self, queue: Queue) -> float | None:
        async with self._locks.setdefault(queue, asyncio.Lock()):
            return await self._drain(await self.store.pending(queue))

    async def _drain(self, rows: list[OutboxRow]) -> float | None:
        """Rows in order until one must wait (the seconds until it is due). An edit
        that must wait holds up only the later edits of its message: an edit that
        keeps failing must not hold back new alerts."""
        soonest: float | None = None
        waiting_edits: set[int] = set()  # messages whose edits wait their turn
        for row, events in current_events(rows):
            if self._stopping:
                return None
            if row.edit_of is not None and row.edit_of in waiting_edits:
                continue
            now = self.clock()
            wait: float | None = None
            if row.next_attempt_at > now:
                wait = (row.next_attempt_at - now).total_seconds()
                cap = self._delays.get(row.id, self.backoff.maximum)
                if wait > cap:  # the clock stepped back: wait the delay from now, no more
                    await self.store.reschedule(row.id, now + timedelta(seconds=cap))
                    self._log(
                        row,
                        "delivery.clock_stepped",
                        logging.WARNING,
                        reason=f"a retry was due in {wait:.0f}s, more than its {cap:.0f}s delay",
                    )
                    wait = cap
            elif row.problem:
                await self._unreadable(row)
                continue
            elif not events and row.message is None:
                await self.store.mark_done(
                    row.id, OutboxStatus.SUPERSEDED, now, "only reminders that moved on"
                )
                continue
            else:
                wait = await self._deliver(row, events)
            if wait is None:
                continue
            soonest = wait if soonest is None else min(soonest, wait)
            if row.edit_of is None:
                return soonest
            waiting_edits.add(row.edit_of)
        return soonest

    async def _still_active(self) -> bool:
        """Whether this process may send now (always, but for a replica that lost
        its lock: it then stops delivering at once; the row stays for the next)."""
        if self.may_send is None or await self.may_send():
            return True
        log_event(logger, "delivery.not_active", logging.WARNING, reason="lost the active lock")
        self._attempted.set()
        self.stop()
        return False

    def _log(self, about: OutboxRow, event: str, level: int, **fields: Any) -> None:
        """A log line about a row, naming its notifier and destination."""
        log_event(
            logger, event, level, notifier=about.notifier, destination=self._label(about), **fields
        )

    def _label(self, row: OutboxRow) -> str:
        """How logs name a row's destination: the notifier's label, never a URL."""
        notifier = self.notifiers.get(row.notifier)
        return notifier.label(row.destination) if notifier else row.destination

    async def _unreadable(self, row: OutboxRow) -> None:
        """A row this version cannot read (written by another version) fails with
        its reason; the rows after it go on."""
        await self.store.mark_done(row.id, OutboxStatus.FAILED, self.clock(), row.problem)
        self._log(
            row,
            "delivery.unreadable",
            logging.ERROR,
            row=row.id,
            reason=row.problem,
        )

    async def _deliver(self, row: OutboxRow, events: tuple[Event, ...]) -> float | None:
        notifier = self.notifiers.get(row.notifier)
        if notifier is None or not notifier.reaches(row.destination):
            await self.store.mark_done(
                row.id,
                OutboxStatus.DROPPED,
                self.clock(),
                "notifier or destination no longer configured",
            )
            self._log(
                row,
                "delivery.dropped",
                logging.WARNING,
                reason="no longer configured",
            )
            return None
        as_of = AsOf(self.clock(), self.fresh_for, self.zone) if self.fresh_for else None
        message = row.message or outbox_message(row.kind, events, as_of)
        # the buttons of its pieces name it by `ref`; data-minded notifiers read kind and events
        message = replace(
            message, ref=message.ref or str(row.id), kind=row.kind.value, events=events
        )
        if row.edit_of is not None:
            return await self._edit(row, notifier, message)
        pieces = _pictures(notifier, message) if message.pictures else notifier.pieces(message)
        for index in range(row.parts_sent, len(pieces)):
            payload, refs = pieces[index]
            if not await self._still_active():
                return None
            try:
                platform_id = await asyncio.wait_for(
                    notifier.send(row.destination, payload), SEND_TIMEOUT
                )
            except DeliveryError as exc:
                self._attempted.set()
                return await self._failed(row, exc.reason, exc.permanent, exc.retry_after)
            except TimeoutError:
                self._attempted.set()
                return await self._failed(row, f"no answer within {SEND_TIMEOUT:g}s", False, None)
            except Exception as exc:  # a notifier bug must not stop delivery to others
                self._attempted.set()
                return await self._failed(row, f"{type(exc).__name__}: {exc}", False, None)
            self._attempted.set()
            alerts = tuple(key for ref in refs if (key := alert_of(ref)) is not None)
            if platform_id is not None and alerts:  # buttons, and edits as its alerts change
                told = tuple(e for e in events if event_ref(e) in refs)
                sent = SentMessage(
                    row.notifier,
                    row.destination,
                    row.id,
                    index,
                    platform_id,
                    row.kind,
                    told,
                    alerts,
                )
                await self.store.record_message(sent, self.clock())
            if index + 1 < len(pieces):
                await self.store.mark_sent_parts(row.id, index + 1)
        await self.store.mark_done(row.id, OutboxStatus.DELIVERED, self.clock())
        self._delays.pop(row.id, None)
        self.on_outcome(Outcome(row.notifier, row.destination, "delivered"))
        self._log(
            row,
            "delivery.sent",
            logging.INFO,
            events=len(row.events),
            messages=len(pieces) - row.parts_sent,
            attempts=row.attempts + 1,
        )
        return None

    async def _edit(self, row: OutboxRow, notifier: Notifier, message: Message) -> float | None:
        """An edit of a message sent before, in one payload (lines left out if it
        has grown past the platform's limit). One still failing a day after it
        was queued is dropped: by then the message has scrolled out of sight."""
        sent = await self.store.sent(row.edit_of) if row.edit_of is not None else None
        if sent is None:
            await self.store.mark_done(
                row.id, OutboxStatus.DROPPED, self.clock(), "message unknown"
            )
            return None
        pieces = notifier.pieces(message)
        keep = sum(len(s.lines) for s in message.sections[:-1])
        while len(pieces) > 1 and keep > 0:
            keep -= 1
            pieces = notifier.pieces(trimmed(message, keep))
        payload = pieces[0][0]
        retry_after: float | None = None
        permanent = False
        if not await self._still_active():
            return None
        try:
            await asyncio.wait_for(
                notifier.edit(row.destination, sent.platform_id, payload), SEND_TIMEOUT
            )
        except DeliveryError as exc:
            reason, permanent, retry_after = exc.reason, exc.permanent, exc.retry_after
        except TimeoutError:
            reason = f"no answer within {SEND_TIMEOUT:g}s"
        except Exception as exc:  # a notifier bug must not stop delivery to others
            reason = f"{type(exc).__name__}: {exc}"
        else:
            await self.store.mark_done(row.id, OutboxStatus.DELIVERED, self.clock())
            self._delays.pop(row.id, None)
            self._log(
                row,
                "delivery.edited",
                logging.INFO,
            )
            return None
        if permanent or self.clock() - row.created_at > EDIT_GIVE_UP:
            # the message was deleted, or is too old to edit: the alert itself went
            # out and the destination may be fine, so its health stays as it is
            status = OutboxStatus.FAILED if permanent else OutboxStatus.DROPPED
            await self.store.mark_done(row.id, status, self.clock(), redact(reason))
            self._delays.pop(row.id, None)
            self._log(
                row,
                "delivery.edit_failed",
                logging.WARNING,
                reason=redact(reason),
            )
            return None
        return await self._failed(row, reason, False, retry_after)

    async def _failed(
        self, row: OutboxRow, reason: str, permanent: bool, retry_after: float | None
    ) -> float | None:
        reason = redact(reason)
        if permanent:
            await self.store.mark_done(row.id, OutboxStatus.FAILED, self.clock(), reason)
            self._delays.pop(row.id, None)
            self.on_outcome(Outcome(row.notifier, row.destination, "failed", reason))
            self._log(
                row,
                "delivery.failed",
                logging.ERROR,
                reason=reason,
                events=len(row.events),
                hint="fix the notifier settings; this message will not be retried",
            )
            return None
        attempts = row.attempts + 1
        delay = self.backoff.delay(attempts, retry_after, self.rand)
        await self.store.mark_retry(
            row.id, attempts, self.clock() + timedelta(seconds=delay), reason
        )
        self._delays[row.id] = delay
        self.on_outcome(Outcome(row.notifier, row.destination, "retry", reason))
        self._log(
            row,
            "delivery.retry",
            logging.WARNING,
            reason=reason,
            attempt=attempts,
            retry_in=round(delay, 1),
        )
        return delay
