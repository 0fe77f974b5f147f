"""The outbox loop, with a scripted notifier (the real ones have their own suites)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.common.backoff import Backoff
from bot.engine.model import EngineState, Event, EventKind, Severity
from bot.notifiers import DeliveryError, Notifier
from bot.notifiers.message import Message
from bot.notify.delivery import Delivery
from bot.state.sqlite.store import Store
from bot.state.types import Commit, OutboxItem
from tests.helpers import Clock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Scripted(Notifier):
    """Sends into a list; `failures` is consumed one per send attempt."""

    def __init__(self, parts: int = 1, destinations=("a", "b")) -> None:
        super().__init__("fake", None, None)  # type: ignore[arg-type]
        self.parts = parts
        self.sent: list[tuple[str, str]] = []
        self.failures: dict[str, list[DeliveryError]] = {}
        self._destinations = destinations
        self.got_one = asyncio.Event()

    def destinations(self):
        return self._destinations

    def format(self, message: Message) -> list[str]:
        return [f"{message.title} part {i + 1}" for i in range(self.parts)]

    async def send(self, destination: str, payload: str) -> None:
        queue = self.failures.get(destination)
        if queue:
            raise queue.pop(0)
        self.sent.append((destination, payload))
        self.got_one.set()


def event(subject: str) -> Event:
    return Event(
        EventKind.FIRE, "main", T0, Severity.WARNING, "low", "key", subject, "usd", 1, 1, 2, 3, T0
    )


@pytest.fixture
async def store(tmp_path):
    s = Store.open(tmp_path / "state.db")
    yield s
    await s.close()


async def enqueue(store: Store, *items: tuple[str, str]) -> None:
    rows = [OutboxItem("fake", dest, (event(subject),)) for dest, subject in items]
    await store.commit_cycle(Commit(EngineState(), EngineState(), [], rows, T0))


def delivery(store, notifier, clock, outcomes: list[str] | None = None) -> Delivery:
    seen = outcomes if outcomes is not None else []
    return Delivery(
        store,
        {"fake": notifier},
        Backoff(initial=10, maximum=40, jitter=0),
        clock,
        rand=lambda: 0.5,
        on_outcome=lambda outcome: seen.append(outcome.outcome),
    )


async def test_transient_failure_backs_off_then_delivers_once(store):
    clock, n = Clock(T0), Scripted(destinations=("a",))
    n.failures["a"] = [DeliveryError("HTTP 502"), DeliveryError("timeout")]
    await enqueue(store, ("a", "x"))
    outcomes: list[str] = []
    d = delivery(store, n, clock, outcomes)
    assert await d.deliver_due() == pytest.approx(10)
    assert await d.deliver_due() == pytest.approx(10)  # not due yet: nothing sent
    clock.advance(10)
    assert await d.deliver_due() == pytest.approx(20)  # second failure: doubled
    clock.advance(20)
    assert await d.deliver_due() is None
    assert n.sent == [("a", "CometAPI balance: 1 warning part 1")]
    assert outcomes == ["retry", "retry", "delivered"]
    assert await store.pending() == []


async def test_retry_after_overrides_backoff(store):
    clock, n = Clock(T0), Scripted(destinations=("a",))
    n.failures["a"] = [DeliveryError("flood", retry_after=3)]
    await enqueue(store, ("a", "x"))
    assert await delivery(store, n, clock).deliver_due() == pytest.approx(3.1)


async def test_permanent_failure_does_not_block_the_queue_or_other_destinations(store):
    clock, n = Clock(T0), Scripted()
    n.failures["a"] = [DeliveryError("chat not found", permanent=True)]
    await enqueue(store, ("a", "first"), ("b", "x"), ("a", "second"))
    assert await delivery(store, n, clock).deliver_due() is None
    assert [d for d, _ in n.sent] == ["b", "a"]
    statuses = store._conn.execute("SELECT destination, status FROM outbox ORDER BY id").fetchall()
    assert statuses == [("a", "failed"), ("b", "delivered"), ("a", "delivered")]


async def test_order_is_kept_per_destination_and_others_do_not_wait(store):
    clock, n = Clock(T0), Scripted()
    n.failures["a"] = [DeliveryError("HTTP 500")]
    await enqueue(store, ("a", "first"), ("a", "second"), ("b", "x"))
    d = delivery(store, n, clock)
    await d.deliver_due()
    assert n.sent == [("b", "CometAPI balance: 1 warning part 1")]
    clock.advance(10)
    await d.deliver_due()
    rows = store._conn.execute(
        "SELECT id, destination, done_at FROM outbox ORDER BY done_at, id"
    ).fetchall()
    assert [r[1] for r in rows] == ["b", "a", "a"]
    assert rows[1][0] < rows[2][0]


async def test_multi_part_message_resumes_after_the_last_sent_part(store, tmp_path):
    clock, n = Clock(T0), Scripted(parts=3, destinations=("a",))
    n.failures["a"] = []
    await enqueue(store, ("a", "x"))
    original = n.send
    calls = 0

    async def flaky(dest, payload):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise DeliveryError("HTTP 500")
        await original(dest, payload)

    n.send = flaky  # type: ignore[method-assign]
    await delivery(store, n, clock).deliver_due()
    assert [p for _, p in n.sent] == ["CometAPI balance: 1 warning part 1"]
    assert (await store.pending())[0].parts_sent == 1
    # a restart: a fresh store handle and delivery loop resume at part 2
    await store.close()
    again = Store.open(tmp_path / "state.db")
    clock.advance(60)
    await delivery(again, n, clock).deliver_due()
    assert [p[-6:] for _, p in n.sent] == ["part 1", "part 2", "part 3"]
    await again.close()


async def test_rows_for_removed_notifiers_are_dropped(store):
    await enqueue(store, ("gone", "x"))
    n = Scripted(destinations=("a",))
    await delivery(store, n, Clock(T0)).deliver_due()
    assert await store.pending() == [] and n.sent == []


async def test_a_crashing_notifier_is_retried_not_fatal(store):
    clock, n = Clock(T0), Scripted(destinations=("a",))

    async def broken(dest, payload):
        raise RuntimeError("bug")

    n.send = broken  # type: ignore[method-assign]
    await enqueue(store, ("a", "x"))
    assert await delivery(store, n, clock).deliver_due() == pytest.approx(10)
    assert (await store.pending())[0].attempts == 1


async def test_run_loop_wakes_on_new_rows_and_stops(store):
    n = Scripted(destinations=("a",))
    d = Delivery(store, {"fake": n})
    task = asyncio.create_task(d.run())
    await enqueue(store, ("a", "x"))
    d.wake()
    async with asyncio.timeout(5):
        await n.got_one.wait()
    d.stop()
    async with asyncio.timeout(5):
        await task


def remind(subject: str, hours: int) -> Event:
    at = T0 + timedelta(hours=hours)
    return Event(
        EventKind.REMIND, "main", at, Severity.WARNING, "low", "key", subject, "usd", 1, 1, 2, 3, T0
    )


async def test_after_an_outage_only_the_latest_reminder_per_alert_is_sent(store):
    clock, n = Clock(T0), Scripted(destinations=("a",))
    rows = [
        OutboxItem("fake", "a", (event("x"),)),
        OutboxItem("fake", "a", (remind("x", 1), remind("y", 1))),
        OutboxItem("fake", "a", (remind("x", 2),)),
        OutboxItem("fake", "a", (remind("x", 3),)),
    ]
    await store.commit_cycle(Commit(EngineState(), EngineState(), [], rows, T0))
    await delivery(store, n, clock).deliver_due()
    assert [p for _, p in n.sent] == [
        "CometAPI balance: 1 warning part 1",  # the fire is never dropped
        "CometAPI balance: 1 reminder part 1",  # y's reminder (x's is stale)
        "CometAPI balance: 1 reminder part 1",  # x at 3h
    ]
    statuses = store._conn.execute("SELECT status FROM outbox ORDER BY id").fetchall()
    assert [s for (s,) in statuses] == ["delivered", "delivered", "superseded", "delivered"]


async def test_a_hung_destination_holds_up_no_other(store):
    """In the run loop, `a` hangs mid-send while `b` fails, backs off and is
    retried: b's retry does not wait for a's send to end."""

    class Hanging(Scripted):
        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()

        async def send(self, destination: str, payload: str) -> None:
            if destination == "a":
                await self.release.wait()
            await super().send(destination, payload)

    n = Hanging()
    n.failures["b"] = [DeliveryError("busy", retry_after=0.01)]
    await enqueue(store, ("a", "x"), ("b", "y"))
    d = Delivery(store, {"fake": n})
    task = asyncio.create_task(d.run())
    async with asyncio.timeout(5):
        await n.got_one.wait()
    assert [dest for dest, _ in n.sent] == ["b"]
    n.release.set()
    d.stop()
    async with asyncio.timeout(5):
        await task
    assert sorted(dest for dest, _ in n.sent) == ["a", "b"]
    assert await store.pending() == []


async def test_a_sleeping_worker_wakes_for_an_alert_queued_behind_a_failing_edit(store):
    """run(): the worker of a destination whose edit backs off (30 s here) looks
    again when a new alert is queued: the alert goes out now, the edit at its time."""
    from bot.engine.model import MessageKind
    from bot.state.types import SentMessage

    notifier = Scripted(destinations=("a",))
    edited = asyncio.Event()

    async def edit(destination: str, message_id: str, payload: object) -> None:
        edited.set()
        raise RuntimeError("the platform's edit is broken")

    notifier.edit = edit  # type: ignore[method-assign]
    now = datetime.now(UTC)
    sent = SentMessage(
        "fake", "a", 1, 0, "p1", MessageKind.ALERTS, (event("x"),), (event("x").alert,)
    )
    message_id = await store.record_message(sent, now)
    edit_row = OutboxItem(
        "fake", "a", (), MessageKind.ALERTS, Message("edited", ()), edit_of=message_id
    )
    await store.commit_cycle(Commit(EngineState(), EngineState(), [], [edit_row], now))
    worker = Delivery(store, {"fake": notifier}, Backoff(initial=30, maximum=300, jitter=0))
    running = asyncio.create_task(worker.run())
    try:
        worker.wake()
        await asyncio.wait_for(edited.wait(), 5)  # failed: its worker now sleeps ~30 s
        await enqueue(store, ("a", "new-alert"))
        worker.wake()
        await asyncio.wait_for(notifier.got_one.wait(), 5)
        assert [destination for destination, _ in notifier.sent] == ["a"]  # the new alert
        (left,) = await store.pending()
        assert left.edit_of == message_id and left.attempts == 1  # the edit: not retried early
    finally:
        worker.stop()
        await asyncio.wait_for(running, 5)
