"""The StateStore contract: the same tests against every backend (SQLite, and
PostgreSQL on a throwaway server the tests start, fakes/postgres.py). Only the
protocol is used here; what a backend does inside (files, locks, SQL) is
tested beside it (tests/test_store.py, tests/test_postgres.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.app.history import advance
from bot.engine.message import Message
from bot.engine.model import (
    AccountHealth,
    Ack,
    AlertKey,
    AlertState,
    EngineState,
    Event,
    EventKind,
    KeyBalance,
    MessageKind,
    Severity,
    Silence,
    Snapshot,
)
from bot.state.protocol import StateStore
from bot.state.types import Commit, OutboxItem, OutboxStatus, SentMessage, StoreError
from tests.stores import BACKENDS, Opener

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = AlertKey("low", "main", "total")
OTHER = AlertKey("low", "main", "prod-1")


def snap(total: float, keys=(), at: datetime = T0, account: str = "main", used: float = 1.0):
    return Snapshot(account, "user", total, used, 3, tuple(keys), at)


def fire(key: AlertKey = KEY, kind: EventKind = EventKind.FIRE) -> Event:
    return Event(
        kind,
        key.account,
        T0,
        Severity.CRITICAL,
        key.rule,
        "total",
        key.subject,
        "usd",
        1.0,
        1.0,
        2.0,
        3.0,
        T0,
        "",
        ("log",),
    )


def firing(*keys: AlertKey) -> EngineState:
    return EngineState({k: AlertState(k, True, 1, 1.0, T0, T0, "total/below") for k in keys})


@pytest.fixture(params=BACKENDS)
async def opener(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Opener]:
    """Opens the state of one backend (again and again: a restart), empty at first."""
    make = request.getfixturevalue(f"{request.param}_opener")
    opened: list[StateStore] = []

    async def open_() -> StateStore:
        store = await make()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def store(opener: Callable[[], Awaitable[StateStore]]) -> StateStore:
    return await opener()


async def reopened(store: StateStore, opener: Opener) -> StateStore:
    await store.close()
    return await opener()


# --- alerts -------------------------------------------------------------------------


async def test_a_committed_cycle_is_there_after_a_restart(store, opener):
    state = EngineState(
        {
            KEY: AlertState(KEY, True, 2, 1.5, T0, T0 + timedelta(hours=1), "total/below"),
            OTHER: AlertState(OTHER, False, 1, 7.25, None, None, "", announced=False, held=True),
        },
        {"main": AccountHealth("main", 2, T0, True, "HTTP 500", T0)},
    )
    s1 = snap(10, [KeyBalance("a", 1, 2), KeyBalance("b", -1, -1)])
    await store.commit_cycle(
        Commit(EngineState(), state, [s1], [OutboxItem("log", "default", (fire(),))], T0)
    )
    again = await reopened(store, opener)
    assert await again.load_state(["main"]) == state
    assert await again.load_state(["other"]) == EngineState()
    assert await again.load_snapshots() == {"main": s1}
    (row,) = await again.pending()
    assert row.events == (fire(),) and (row.notifier, row.destination) == ("log", "default")
    assert row.parts_sent == 0 and row.attempts == 0 and row.kind is MessageKind.ALERTS


ODD = Snapshot(
    "main",
    "\ufffdu\u202e",
    1e15,
    -0.0,
    None,
    (
        KeyBalance("x" * 100, 1e-300, 1e15),
        KeyBalance("dup", -1, -1),
        KeyBalance("dup #2", 0.1 + 0.2, 3),
        KeyBalance("\u0430\U0001f600", 5e-324, 0.0),
    ),
    T0 + timedelta(microseconds=123456),
    currency="CNY",
    used_derived=True,
    available=False,
)


async def test_snapshots_come_back_as_they_were_whatever_changed_between_commits(store, opener):
    """The frame (names, flags) is written once per change, the figures every
    poll: each commit's latest snapshot comes back exactly, across restarts."""
    steps = [
        ODD,
        replace(ODD, total_quota=2.5, request_count=2**53, fetched_at=T0 + timedelta(minutes=5)),
        replace(ODD, keys=ODD.keys[1:], unlimited=True, fetched_at=T0 + timedelta(minutes=10)),
        replace(ODD, keys=(), username="", fetched_at=T0 + timedelta(minutes=15)),
        replace(ODD, fetched_at=T0 + timedelta(minutes=20)),  # the first frame again
    ]
    for i, snapshot in enumerate(steps):
        other = snap(i, [KeyBalance("k", i, i)], at=snapshot.fetched_at, account="other")
        await store.commit_cycle(
            Commit(EngineState(), EngineState(), [snapshot, other], [], snapshot.fetched_at)
        )
        assert await store.load_snapshots() == {"main": snapshot, "other": other}
        if i % 2:
            store = await reopened(store, opener)
            assert await store.load_snapshots() == {"main": snapshot, "other": other}


async def test_a_commit_deletes_gone_alerts_and_keeps_the_newest_success(store):
    old = firing(KEY, OTHER)
    await store.commit_cycle(Commit(EngineState(), old, [], [], T0))
    later = T0 + timedelta(minutes=5)
    health = {"main": AccountHealth("main", 0, None, False, "", T0)}
    new = EngineState({OTHER: old.alerts[OTHER]}, health)
    await store.commit_cycle(Commit(old, new, [snap(5, at=later)], [], later))
    loaded = await store.load_state(["main"])
    assert set(loaded.alerts) == {OTHER}
    # a good poll writes its snapshot; the health row's last success follows it
    assert loaded.health["main"].last_success == later


async def test_an_alert_that_resolves_ends_who_was_told_its_acks_and_its_messages(store):
    await store.commit_cycle(
        Commit(EngineState(), firing(KEY), [], [OutboxItem("log", "d", (fire(),))], T0)
    )
    (row,) = await store.pending()
    await store.mark_done(row.id, OutboxStatus.DELIVERED, T0)
    sent = SentMessage("log", "d", row.id, 0, "m1", MessageKind.ALERTS, (fire(),), (KEY,))
    message_id = await store.record_message(sent, T0)
    await store.add_acks([Ack(KEY, "@ann", T0)])
    assert await store.told() == {(KEY, "log", "d")}
    assert KEY in await store.acks()
    later = T0 + timedelta(hours=1)
    await store.commit_cycle(Commit(firing(KEY), EngineState(), [], [], later))
    assert await store.told() == set() and await store.acks() == {}
    back = await store.sent(message_id)
    assert back is not None and back.resolved == {KEY: later}


# --- outbox -------------------------------------------------------------------------


async def test_outbox_rows_in_order_per_destination_with_progress_and_retries(store):
    items = [
        OutboxItem("telegram", "2", (fire(),)),
        OutboxItem("telegram", "1", (fire(),)),
        OutboxItem("slack", "C1", (fire(),)),
        OutboxItem("telegram", "2", (fire(OTHER),)),
    ]
    await store.enqueue(items, T0)
    assert await store.queues() == [("telegram", "2"), ("telegram", "1"), ("slack", "C1")]
    rows = await store.pending()
    assert [(r.destination, r.events[0].alert) for r in rows] == [
        ("2", KEY),
        ("1", KEY),
        ("C1", KEY),
        ("2", OTHER),
    ]
    assert [r.id for r in await store.pending(("telegram", "2"))] == [rows[0].id, rows[3].id]
    assert await store.backlog() == {"telegram": 3, "slack": 1}
    first = rows[0]
    await store.mark_sent_parts(first.id, 1)
    await store.mark_retry(first.id, 1, T0 + timedelta(seconds=30), "HTTP 502")
    (back, _) = await store.pending(("telegram", "2"))
    assert back.parts_sent == 1 and back.attempts == 1
    assert back.next_attempt_at == T0 + timedelta(seconds=30)
    await store.reschedule(first.id, T0 + timedelta(seconds=5))
    (back, _) = await store.pending(("telegram", "2"))
    assert back.next_attempt_at == T0 + timedelta(seconds=5) and back.created_at == T0
    for row in rows:
        await store.mark_done(row.id, OutboxStatus.DELIVERED, T0)
    assert (
        await store.pending() == [] and await store.backlog() == {} and await store.queues() == []
    )


async def test_a_failed_or_dropped_row_was_never_told(store):
    await store.enqueue([OutboxItem("log", "a", (fire(),)), OutboxItem("log", "b", (fire(),))], T0)
    assert await store.told() == {(KEY, "log", "a"), (KEY, "log", "b")}
    told_at = await store.told_at()
    assert told_at[(KEY, "log", "a")] == T0
    a, b = await store.pending()
    await store.mark_done(a.id, OutboxStatus.FAILED, T0, "chat not found")
    await store.mark_done(b.id, OutboxStatus.DROPPED, T0, "gone")
    assert await store.told() == set()


async def test_rendered_messages_edits_and_facts_go_in_one_enqueue(store):
    message = Message("Digest", ())
    await store.enqueue(
        [
            OutboxItem("log", "d", (), MessageKind.DIGEST, message),
            OutboxItem("log", "d", (fire(),), MessageKind.ALERTS, message, edit_of=7),
        ],
        T0,
        {"digest_date": "2026-01-01"},
    )
    digest, edit = await store.pending()
    assert digest.kind is MessageKind.DIGEST and digest.message == message and digest.events == ()
    assert edit.edit_of == 7 and edit.message == message and edit.events == (fire(),)
    assert await store.meta("digest_date") == "2026-01-01"
    assert await store.told() == {(KEY, "log", "d")}  # the fire in it, not the digest


async def test_quiet_hours_hold_rows_until_they_are_released(store):
    end = T0 + timedelta(hours=8)
    await store.enqueue([OutboxItem("log", "d", (fire(),), hold_until=end)], T0)
    assert await store.pending() == [] and await store.told() == set()
    assert await store.holding() == {(KEY, "log", "d")}
    assert await store.held(T0 + timedelta(hours=1)) == []
    (held,) = await store.held(end)
    assert held.events == (fire(),)
    assert [r.id for r in await store.held(None)] == [held.id]
    await store.release([held.id], [OutboxItem("log", "d", (fire(),))], end)
    assert await store.held(None) == [] and await store.holding() == set()
    (row,) = await store.pending()
    assert row.id != held.id and row.created_at == end
    assert await store.told_at() == {(KEY, "log", "d"): end}


# --- history ------------------------------------------------------------------------


def samples_of(*snapshots: Snapshot) -> list:
    ledger, rows = None, []
    for s in snapshots:
        ledger, sample = advance(ledger, s, s.fetched_at.timestamp())
        rows.append(sample)
    return rows


async def test_history_samples_read_back_by_time(store, opener):
    step = timedelta(minutes=5)
    polls = [
        snap(10 - i, [KeyBalance("a", 5, 1 + i), KeyBalance("b", 5, 2 * i)], T0 + i * step, used=i)
        for i in range(4)
    ]
    other = [snap(3, [], T0 + step + timedelta(seconds=1), account="spare", used=0.5)]
    samples = samples_of(*polls)
    for poll, sample in zip(polls, samples, strict=True):
        extra = other if poll.fetched_at == T0 + step else []
        await store.commit_cycle(
            Commit(
                EngineState(),
                EngineState(),
                [poll, *extra],
                [],
                poll.fetched_at,
                [sample, *samples_of(*extra)],
            )
        )
    store = await reopened(store, opener)
    history = store.history
    t = [p.fetched_at.timestamp() for p in polls]
    last = await history.last(["main", "spare"])
    assert last["main"].at == t[3] and last["main"].total == 7 and last["main"].spent == 3
    assert last["main"].key_spent("a", t[0]) == 3 and last["main"].key_spent("b", t[0]) == 6
    assert last["main"].key_spent("a", t[1]) is None  # another series of the same name
    assert last["spare"].total == 3 and last["spare"].layout is None
    assert (await history.first(["main"]))["main"].at == t[0]
    assert await history.first_time_after(t[0]) == t[1]
    assert await history.first_time_after(t[3]) is None
    before = await history.newest_before(t[2] - 1)
    assert {a: s.at for a, s in before.items()} == {"main": t[1], "spare": t[1] + 1}
    assert set(await history.newest_before(t[2], ["spare"])) == {"spare"}
    after = await history.first_after("main", t[1])
    assert (
        after is not None and after.at == t[2] and await history.first_after("main", t[3]) is None
    )
    assert [(s.account, s.at) for s in await history.between(t[0], t[2])] == [
        ("main", t[1]),
        ("spare", t[1] + 1),
        ("main", t[2]),
    ]
    # from a baseline before `since`, then the samples within
    assert [s.at for s in await history.of("main", t[2] - 1, t[3])] == [t[1], t[2], t[3]]


async def test_pruning_downsamples_history_and_keeps_what_is_still_needed(store):
    now = T0 + timedelta(days=100)
    old = now - timedelta(days=200)
    polls = [snap(1, at=old)]
    # two days ago, every 10 minutes for three hours: one per hour is kept (and the first)
    start = now - timedelta(days=2)
    polls += [snap(2, at=start + timedelta(minutes=10 * i), used=i) for i in range(18)]
    polls += [snap(3, at=now - timedelta(minutes=10 * i), used=100 - i) for i in range(3, 0, -1)]
    samples = samples_of(*polls)
    await store.commit_cycle(
        Commit(
            EngineState(),
            EngineState(),
            [polls[-1]],
            [OutboxItem("log", "d", (fire(),))],
            old,
            samples,
        )
    )
    await store.enqueue([OutboxItem("log", "e", (fire(OTHER),))], old)
    _, done = await store.pending()
    await store.mark_done(done.id, OutboxStatus.DELIVERED, old)
    await store.add_silence(Silence(old + timedelta(hours=1), "@ann", "main"), old)
    while await store.prune(now, 90):
        pass
    kept = [s.at for s in await store.history.between(0, now.timestamp())]
    hours = {int((a - start.timestamp()) // 3600) for a in kept if a < now.timestamp() - 86400}
    # the oldest is past history_days; of the 2-day-old ones, the first and the last of each hour
    assert old.timestamp() not in kept
    assert len([a for a in kept if a < now.timestamp() - 86400]) == 4 and hours == {0, 1, 2}
    assert kept[-3:] == [s.fetched_at.timestamp() for s in polls[-3:]]  # the last day: all
    (pending,) = await store.pending()  # undelivered rows are never pruned
    assert pending.destination == "d"
    assert await store.silences(old) == []  # ended long ago: gone


# --- marks --------------------------------------------------------------------------


async def test_snoozes_acks_messages_and_facts_survive_a_restart(store, opener):
    until = T0 + timedelta(hours=2)
    by_pattern = await store.add_silence(Silence(until, "@ann", "main/*"), T0)
    await store.add_silence(Silence(until, "@bob", alerts=frozenset({KEY, OTHER})), T0)
    await store.add_acks([Ack(KEY, "@cy", T0), Ack(OTHER, "@dee", T0)])
    sent = SentMessage("telegram", "-100", 7, 1, "42", MessageKind.ALERTS, (fire(),), (KEY, OTHER))
    message_id = await store.record_message(sent, T0)
    await store.set_meta("telegram_offset", "1001")
    await store.set_meta("telegram_offset", "1002")
    store = await reopened(store, opener)
    silences = await store.silences(T0)
    assert [(s.who, s.pattern, s.alerts, s.until) for s in silences] == [
        ("@ann", "main/*", frozenset(), until),
        ("@bob", "", frozenset({KEY, OTHER}), until),
    ]
    assert silences[0].id == by_pattern
    assert await store.silences(until) == []
    assert await store.acks() == {KEY: Ack(KEY, "@cy", T0), OTHER: Ack(OTHER, "@dee", T0)}
    found = await store.sent_message("telegram", 7, 1)
    assert found is not None and found.id == message_id
    assert (found.platform_id, found.events, set(found.alerts)) == ("42", (fire(),), {KEY, OTHER})
    assert found.resolved == {KEY: None, OTHER: None}
    assert await store.sent_message("slack", 7, 1) is None
    assert await store.sent_message("telegram", 7, 0) is None
    assert [m.id for m in await store.messages_of([OTHER])] == [message_id]
    assert await store.messages_of([AlertKey("x", "y", "z")]) == []
    assert await store.meta("telegram_offset") == "1002" and await store.meta("nothing") is None
    await store.end_silences([by_pattern], T0 + timedelta(minutes=1))
    assert [s.who for s in await store.silences(T0 + timedelta(minutes=1))] == ["@bob"]
    await store.add_acks([replace(Ack(KEY, "@eve", T0 + timedelta(minutes=2)))])
    assert (await store.acks())[KEY].who == "@eve"


async def test_the_store_says_it_is_still_ours(store):
    await store.check_file()  # no error: nobody replaced or took it over


async def test_a_failed_commit_takes_back_the_layout_ids_it_gave(store, opener, monkeypatch):
    """A commit that fails after its new layouts were given ids: the ids go with
    it, and the next commit stores those layouts afresh (never a sample pointing at
    a layout row that does not exist, or at another account's)."""
    import bot.state.postgres.alerts as pg_alerts
    import bot.state.sqlite.alerts as sqlite_alerts

    mine = snap(10, [KeyBalance("a", 5, 1), KeyBalance("b", 5, 2)])
    (first,) = samples_of(mine)
    assert first.layout is not None and first.layout.id is None

    def refuse(*args: object) -> None:
        raise RuntimeError("the disk said no")

    for module in (sqlite_alerts, pg_alerts):
        monkeypatch.setattr(module, "enqueue_rows", refuse)
    with pytest.raises(RuntimeError):
        await store.commit_cycle(Commit(EngineState(), EngineState(), [mine], [], T0, [first]))
    assert first.layout.id is None
    monkeypatch.undo()
    theirs = snap(7, [KeyBalance("x", 1, 1)], account="other")
    (other,) = samples_of(theirs)
    await store.commit_cycle(Commit(EngineState(), EngineState(), [theirs], [], T0, [other]))
    await store.commit_cycle(Commit(EngineState(), EngineState(), [mine], [], T0, [first]))
    assert first.layout.id is not None and first.layout.id != other.layout.id
    again = await reopened(store, opener)
    last = await again.history.last(["main", "other"])
    assert last["main"].layout.names == ("a", "b") and list(last["main"].keys) == [0.0, 0.0]
    assert last["other"].layout.names == ("x",)


async def test_a_commit_failing_inside_the_samples_write_takes_back_its_layout_ids(store):
    first = snap(10, [KeyBalance("a", 5, 1)], account="first")
    second = snap(10, [KeyBalance("b", 5, 1)], account="second")
    one, two = samples_of(first)[0], samples_of(second)[0]
    two = replace(two, requests=2**70)  # no database integer holds it: the insert fails
    with pytest.raises((OverflowError, StoreError)):  # each backend says it its own way
        await store.commit_cycle(Commit(EngineState(), EngineState(), [], [], T0, [one, two]))
    assert one.layout is not None and one.layout.id is None
    assert two.layout is not None and two.layout.id is None
