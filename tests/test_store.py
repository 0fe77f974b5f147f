"""SQLite state: round trips, the outbox, one owner per file, clear errors for bad files."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from bot.app.history import advance
from bot.engine.model import (
    AccountHealth,
    AlertKey,
    AlertState,
    EngineState,
    Event,
    EventKind,
    KeyBalance,
    Severity,
    Snapshot,
)
from bot.state.sqlite.schema import SCHEMA_VERSION
from bot.state.sqlite.store import Store
from bot.state.types import Commit, OutboxItem, StoreError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def snap(total, keys=(), at=T0):
    return Snapshot("main", "user", total, 1.0, 3, tuple(keys), at)


def fire(subject="total"):
    return Event(
        EventKind.FIRE,
        "main",
        T0,
        Severity.CRITICAL,
        "low",
        "total",
        subject,
        "usd",
        1.0,
        1.0,
        2.0,
        3.0,
        T0,
        "",
        ("log",),
    )


@pytest.fixture
async def store(tmp_path):
    s = Store.open(tmp_path / "state.db")
    yield s
    await s.close()


async def test_state_round_trip(tmp_path, store):
    key = AlertKey("low", "main", "total")
    state = EngineState(
        {key: AlertState(key, True, 2, 1.5, T0, T0 + timedelta(hours=1))},
        {"main": AccountHealth("main", 2, T0, True, "HTTP 500", T0)},
    )
    s1 = snap(10, [KeyBalance("a", 1, 2)])
    await store.commit_cycle(
        Commit(EngineState(), state, [s1], [OutboxItem("log", "default", (fire(),))], T0)
    )
    await store.close()
    again = Store.open(tmp_path / "state.db")
    try:
        assert await again.load_state(["main"]) == state
        assert await again.load_state(["other"]) == EngineState()
        assert await again.load_snapshots() == {"main": s1}
        (row,) = await again.pending()
        assert row.events == (fire(),) and row.notifier == "log" and row.parts_sent == 0
    finally:
        await again.close()


def samples_of(*snapshots: Snapshot) -> list:
    """The history rows of consecutive polls of one account."""
    ledger, rows = None, []
    for s in snapshots:
        ledger, sample = advance(ledger, s, s.fetched_at.timestamp())
        rows.append(sample)
    return rows


async def test_alert_deletion_and_one_compact_history_row_per_poll(store):
    key = AlertKey("low", "main", "total")
    firing = EngineState({key: AlertState(key, True, 1, 1.0, T0, T0)})
    s1 = snap(10, [KeyBalance("a", 1, 2), KeyBalance("b", 5, 0)])
    s2 = snap(9, [KeyBalance("a", 0.5, 2.5), KeyBalance("b", 5, 0)], at=T0 + timedelta(minutes=5))
    first, second = samples_of(s1, s2)
    await store.commit_cycle(Commit(EngineState(), firing, [s1], [], T0, [first]))
    await store.commit_cycle(Commit(firing, EngineState(), [s2], [], T0, [second]))
    assert (await store.load_state(["main"])).alerts == {}
    db = store._conn
    assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM layouts").fetchone()[0] == 1  # the keys stayed
    (back,) = (await store.history.last(["main"])).values()
    assert back.total == 9 and back.spent == 0  # total_used_quota did not move
    assert back.key_spent("a", T0.timestamp()) == 0.5 and back.key_spent("b", T0.timestamp()) == 0


async def test_outbox_progress(store):
    await store.commit_cycle(
        Commit(
            EngineState(),
            EngineState(),
            [],
            [OutboxItem("telegram", "1", (fire(),)), OutboxItem("telegram", "2", (fire(),))],
            T0,
        )
    )
    first, second = await store.pending()
    await store.mark_sent_parts(first.id, 1)
    await store.mark_retry(second.id, 1, T0 + timedelta(seconds=30), "HTTP 502")
    assert await store.backlog() == {"telegram": 2}
    first, second = await store.pending()
    assert first.parts_sent == 1 and second.attempts == 1
    assert second.next_attempt_at == T0 + timedelta(seconds=30)
    await store.mark_done(first.id, "delivered", T0)
    await store.mark_done(second.id, "failed", T0, "chat not found")
    assert await store.pending() == [] and await store.backlog() == {}


def test_second_process_on_the_same_file_is_refused(tmp_path, store):
    with pytest.raises(StoreError, match="in use by another balance-bot process"):
        Store.open(tmp_path / "state.db")


def test_newer_schema_is_refused_with_a_remedy(tmp_path):
    path = tmp_path / "new.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match=r"newer balance-bot.*upgrade balance-bot") as info:
        Store.open(path)
    assert str(path) in str(info.value)


def test_corrupt_file_is_refused_not_reset(tmp_path):
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="corrupt") as info:
        Store.open(path)
    assert str(path) in str(info.value)
    assert path.read_bytes().startswith(b"this is not sqlite")  # nothing was overwritten


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.close()
    with pytest.raises(StoreError, match="not balance-bot's"):
        Store.open(path)


def test_unwritable_file(tmp_path, monkeypatch):
    # the suite runs as root, which ignores file modes: fail the open as the kernel would
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("bot.state.sqlite.db.os.open", denied)
    with pytest.raises(
        StoreError, match="Permission denied; check that the file and its directory"
    ):
        Store.open(tmp_path / "ro.db")


def test_state_path_is_a_directory(tmp_path):
    with pytest.raises(StoreError, match="cannot open state file"):
        Store.open(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "nope" / "state.db")


async def test_disk_full_is_reported_and_nothing_half_written(store):
    await store.commit_cycle(
        Commit(EngineState(), EngineState(), [snap(10)], [], T0, samples_of(snap(10)))
    )
    page_count = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {page_count}")
    big = [KeyBalance(f"key-{i}-" + "x" * 200, i, 1) for i in range(2000)]
    with pytest.raises(StoreError, match="disk is full"):
        await store.commit_cycle(
            Commit(
                EngineState(),
                EngineState(),
                [snap(9, big)],
                [OutboxItem("log", "default", (fire(),))],
                T0,
                samples_of(snap(9, big, at=T0 + timedelta(minutes=5))),
            )
        )
    assert await store.pending() == []
    assert store._conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 1


async def test_prune_keeps_recent_history_and_pending_outbox(store):
    old = T0 - timedelta(days=200)
    await store.commit_cycle(
        Commit(
            EngineState(),
            EngineState(),
            [snap(1, at=old)],
            [OutboxItem("log", "default", (fire(),))],
            old,
            samples_of(snap(1, at=old)),
        )
    )
    await store.commit_cycle(
        Commit(EngineState(), EngineState(), [snap(2)], [], T0, samples_of(snap(2)))
    )
    while await store.prune(T0):
        pass
    assert store._conn.execute("SELECT total FROM samples").fetchall() == [(2.0,)]
    assert len(await store.pending()) == 1


async def test_a_destination_told_long_ago_still_gets_the_resolve(tmp_path, monkeypatch):
    """An alert firing for longer than the outbox keeps its rows (30 days), reminded
    daily: `told` points at its first message, which pruning removes; the
    destination must still count as told (its resolve goes there)."""
    from dataclasses import replace

    from bot.engine.model import AlertKey, EventKind
    from bot.state.sqlite import db as store_db
    from bot.state.types import OutboxItem, OutboxStatus

    monkeypatch.setattr(store_db, "_prune_pause", lambda: None)

    store = Store.open(tmp_path / "s.db")
    try:
        f = fire()
        await store.enqueue([OutboxItem("log", "default", (f,))], T0)
        (row,) = await store.pending()
        await store.mark_done(row.id, OutboxStatus.DELIVERED, T0)
        # daily reminders for 40 days, all delivered
        for day in range(1, 41):
            at = T0 + timedelta(days=day)
            await store.enqueue(
                [OutboxItem("log", "default", (replace(f, kind=EventKind.REMIND),))], at
            )
            (r,) = await store.pending()
            await store.mark_done(r.id, OutboxStatus.DELIVERED, at)
        now = T0 + timedelta(days=40, hours=1)
        while await store.prune(now, 90):
            pass
        key = AlertKey("low", "main", "total")
        assert (key, "log", "default") in await store.told()
        assert (key, "log", "default") in await store.told_at(), "resolve would be routed nowhere"
    finally:
        await store.close()


async def test_snapshots_written_before_frames_are_read_and_rewritten_as_frames(tmp_path):
    from bot.state.codec import snapshot_text

    path = tmp_path / "old.db"
    old = snap(12.5, [KeyBalance("prod", 3.0, 1.0), KeyBalance("u", -1, -1)])
    store = Store.open(path)  # the schema of this version, then the row as it was written
    await store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "INSERT INTO snapshots (account, fetched_at, data) VALUES (?,?,?)",
        ("main", old.fetched_at.isoformat(), snapshot_text(old)),
    )
    db.close()
    store = Store.open(path)
    assert await store.load_snapshots() == {"main": old}
    newer = snap(11.0, old.keys, T0 + timedelta(minutes=5))
    await store.commit_cycle(Commit(EngineState(), EngineState(), [newer], [], newer.fetched_at))
    await store.close()
    db = sqlite3.connect(path)
    ((data, figures),) = db.execute("SELECT data, figures FROM snapshots").fetchall()
    db.close()
    assert figures is not None and len(figures) == 8 * (3 + 2 * 2)
    assert '"names":["prod","u"]' in data and "12.5" not in data and "11.0" not in data
    store = Store.open(path)
    assert await store.load_snapshots() == {"main": newer}
    await store.close()


async def test_a_damaged_snapshot_row_is_left_out_and_said_the_others_load(tmp_path, caplog):
    path = tmp_path / "damaged.db"
    store = Store.open(path)
    good = replace_account(snap(5.0, [KeyBalance("k", 1.0, 1.0)]), "good")
    bad = replace_account(snap(6.0, [KeyBalance("k", 1.0, 1.0)]), "bad")
    await store.commit_cycle(Commit(EngineState(), EngineState(), [good, bad], [], T0))
    await store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE snapshots SET figures = x'00ff' WHERE account = 'bad'")
    db.close()
    store = Store.open(path)
    with caplog.at_level("WARNING"):
        assert await store.load_snapshots() == {"good": good}
    assert any(
        "state.snapshot_unreadable" in r.getMessage() and r.fields["account"] == "bad"
        for r in caplog.records
    )
    await store.close()


def replace_account(snapshot: Snapshot, account: str) -> Snapshot:
    from dataclasses import replace

    return replace(snapshot, account=account)
