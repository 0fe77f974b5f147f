"""The usual poll's fast paths (issue 25) give what the long way gives: CometAPI's
parse reusing the last poll's cleaned key names, and the history ledger
advancing the same keys in place."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app import history
from bot.app.history import Ledger
from bot.engine.model import KeyBalance, Snapshot
from bot.upstream import cometapi

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def body(names: list[str], remain: float = 5.0) -> bytes:
    keys = [
        {"name": n, "remain_quota": remain + i, "used_quota": 1.0 + i} for i, n in enumerate(names)
    ]
    return json.dumps({"total_quota": 100.0, "username": "u", "keys": keys}).encode()


def parsed(account: str, names: list[str], remain: float = 5.0) -> Snapshot:
    return cometapi.parse_quota(account, body(names, remain), NOW)


def test_the_second_poll_of_the_same_names_reads_as_the_first():
    odd = ["prod", "prod", "a\u202eb", "line\nbreak", "x" * 300, "\ud800lone", "prod #2"]
    first = parsed("fast-same", odd)
    again = parsed("fast-same", odd, remain=7.0)
    assert [k.name for k in again.keys] == [k.name for k in first.keys]
    assert [k.name for k in first.keys][:2] == ["prod", "prod #3"]  # "prod #2" is a real name
    assert all("\n" not in k.name and "\u202e" not in k.name for k in again.keys)
    assert [k.remain_quota for k in again.keys] == [7.0 + i for i in range(len(odd))]
    fresh = parsed("fast-other", odd)  # an account polled for the first time
    assert [k.name for k in again.keys] == [k.name for k in fresh.keys]


def test_changed_names_are_cleaned_afresh_not_taken_from_the_last_poll():
    parsed("fast-change", ["a", "b"])
    changed = parsed("fast-change", ["b", "b", "c\x07"])
    assert [k.name for k in changed.keys] == ["b", "b #2", "c"]
    assert [k.name for k in parsed("fast-change", ["a", "b"]).keys] == ["a", "b"]


def test_one_accounts_names_are_not_another_accounts():
    parsed("fast-one", ["a", "a"])
    assert [k.name for k in parsed("fast-two", ["a", "a"]).keys] == ["a", "a #2"]
    assert [k.name for k in parsed("fast-two", ["z"]).keys] == ["z"]


def slow_advance(ledger: Ledger | None, snapshot: Snapshot, at: float) -> tuple:
    """The ledger's counters the long way (the code before the fast path), as plain
    values: (spent, {name: (used, spent, since)}, layout names)."""
    spent = ledger.spent + max(0.0, snapshot.total_used_quota - ledger.used) if ledger else 0.0
    old = plain(ledger)[1] if ledger else {}
    keys: dict[str, tuple[float, float, float]] = {}
    for name, remain, used in snapshot.keys:
        if remain < 0 or used < 0 or name in keys:
            continue
        before = old.get(name)
        if before is None:
            keys[name] = (used, 0.0, at)
        else:
            keys[name] = (used, before[1] + max(0.0, used - before[0]), before[2])
    return spent, keys, tuple(keys)


def plain(ledger: Ledger) -> tuple:
    layout = ledger.layout
    names = layout.names if layout else ()
    since = layout.since if layout else ()
    keys = {
        n: (u, s, t)
        for n, u, s, t in zip(names, ledger.key_used, ledger.key_spent, since, strict=True)
    }
    return ledger.spent, keys, names


names = st.sampled_from(["a", "b", "c", "d"])
key = st.tuples(names, st.floats(-1, 50), st.floats(-1, 50))
polls = st.lists(st.lists(key, max_size=6), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(polls, st.booleans())
def test_the_ledger_advances_as_the_long_way_does(sequence, repeat_first):
    """Polls of keys that come, go, reorder, turn unlimited (-1) or repeat a name;
    `repeat_first`: each poll's keys come twice in a row (the fast path's case)."""
    ledger: Ledger | None = None
    at = 1000.0
    steps = [p for p in sequence for _ in range(2 if repeat_first else 1)]
    for i, keys in enumerate(steps):
        snap = Snapshot(
            "acct", "u", 100.0, 10.0 + i, None, tuple(KeyBalance(*k) for k in keys), NOW
        )
        expected = slow_advance(ledger, snap, at)
        ledger, sample = history.advance(ledger, snap, at)
        assert plain(ledger) == expected
        assert list(sample.keys) == [v[1] for v in expected[1].values()]
        assert (sample.layout.names if sample.layout else ()) == expected[2]
        at += 60.0


def test_the_same_keys_keep_the_ledgers_layout():
    snap = Snapshot(
        "acct",
        "u",
        100.0,
        6.0,
        None,
        (KeyBalance("a", 3.0, 1.0), KeyBalance("u", -1.0, -1.0), KeyBalance("b", 3.0, 2.0)),
        NOW,
    )
    ledger, _ = history.advance(None, snap, 10.0)
    layout = ledger.layout
    assert layout is not None and layout.names == ("a", "b")
    moved = replace(snap, keys=(KeyBalance("a", 2.5, 1.5), *snap.keys[1:]))
    after, sample = history.advance(ledger, moved, 20.0)
    assert after.layout is layout and sample.layout is layout  # no new layout row
    assert list(after.key_spent) == [0.5, 0.0] and list(sample.keys) == [0.5, 0.0]
    reordered = replace(snap, keys=(snap.keys[2], snap.keys[0]))
    again, _ = history.advance(after, reordered, 30.0)
    assert again.layout is not None and again.layout.names == ("b", "a")
    assert again.layout is not layout
    assert list(again.key_spent) == [0.0, 0.5]  # each key's own counter, by name


def test_the_pages_balances_are_what_the_registry_renders():
    """/metrics writes the balance families as text, without metric objects: the
    same text as prometheus_client renders from the registry's collector."""
    from prometheus_client import CollectorRegistry, generate_latest

    from bot.ops.metrics import _Balances

    odd = 'we"ird\\name\nnext \u202e\U0001f600'
    snaps = [
        Snapshot(
            odd,
            "u",
            1e15,
            2.5,
            7,
            (KeyBalance(odd, 0.5, 1.0), KeyBalance("u", -1, -1), KeyBalance("k", 1e-9, 0.0)),
            NOW,
            currency="CNY",
        ),
        Snapshot("plain", "u", 3.0, 1.0, None, (KeyBalance("k", 2.0, 1.0),), NOW),
        Snapshot("free", "u", 0.0, 1.0, None, (), NOW, unlimited=True),
        Snapshot("idle", "u", 5.0, 0.0, None, (), NOW),
    ]
    rates = {odd: 0.0, "plain": 1.5, "free": 2.0, "idle": None}
    providers = {"plain": "newapi"}
    balances = _Balances(lambda: snaps, lambda: rates, lambda: providers)
    registry = CollectorRegistry()
    registry.register(balances)
    expected = generate_latest(registry).decode()
    assert balances.text() == expected
    assert 'balance_bot_time_left_seconds{account="we\\"ird\\\\name\\nnext' in expected
    assert "+Inf" in expected and "1e+15" in expected
