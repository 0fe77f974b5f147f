"""What the fast paths must not change: the typed decoding of quota bodies
gives exactly what the tolerant parser gives, for any body; snapshots stored
compactly read back equal (and old rows still read); the retry loop starts
only after a failed first attempt. Speed itself is measured in bench/, never here."""

from __future__ import annotations

import json
import logging
import sqlite3
from array import array
from datetime import UTC, datetime
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine.model import KeyBalance, Snapshot
from bot.state.sqlite.store import Store
from bot.upstream import client as upstream_client
from bot.upstream import cometapi
from bot.upstream.cometapi import parse_quota
from bot.upstream.transport import FetchError

NOW = datetime(2026, 1, 1, tzinfo=UTC)

numbers = st.one_of(
    st.integers(-(10**17), 10**17),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(-1e6, 1e6).map(str),  # numbers as strings: the tolerant path's job
    st.none(),
    st.booleans(),
)
names = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["prod", "prod", "prod #2", "a\u202eb", "x\ud800", "", "  "]),
    st.integers(0, 99),
    st.none(),
)
key = st.fixed_dictionaries(
    {"name": names, "remain_quota": numbers},
    optional={"used_quota": numbers, "extra": st.text(max_size=3)},
)
body = st.fixed_dictionaries(
    {"total_quota": numbers},
    optional={
        "total_used_quota": numbers,
        "request_count": numbers,
        "username": st.one_of(st.text(max_size=8), st.integers(), st.none()),
        "keys": st.one_of(st.lists(key, max_size=6), st.none()),
        "success": st.one_of(st.booleans(), st.none(), st.just("yes")),
    },
)


def outcome(raw: bytes) -> Snapshot | str:
    try:
        return parse_quota("main", raw, NOW)
    except FetchError as exc:
        return exc.reason


@settings(max_examples=400, deadline=None)
@given(data=body, enveloped=st.booleans())
def test_the_fast_path_gives_what_the_tolerant_parser_gives(data, enveloped):
    raw = json.dumps({"success": True, "data": data} if enveloped else data).encode()
    fast = outcome(raw)
    with patch.object(cometapi, "_parse_usual", lambda *_: None):  # the tolerant path only
        tolerant = outcome(raw)
    assert fast == tolerant


def test_the_usual_body_takes_the_fast_path_and_odd_ones_do_not():
    usual = json.dumps({"total_quota": 5, "keys": [{"name": "a", "remain_quota": 1}]}).encode()
    assert cometapi._parse_usual("main", usual, NOW) is not None
    for odd in (
        b'{"total_quota": "5"}',  # a number as a string
        b'{"data": {"total_quota": 5}}',  # an envelope
        b'{"total_quota": 5, "keys": [{"name": "bad\\ud800", "remain_quota": 1}]}',
        b'{"total_quota": 1' + b"0" * 400 + b"}",
    ):
        assert cometapi._parse_usual("main", odd, NOW) is None


async def test_snapshots_are_stored_compactly_and_old_rows_still_read(tmp_path):
    snap = Snapshot("main", "u", 5.0, 1.5, 7, (KeyBalance("a", 1.0, 2.0),), NOW)
    store = Store.open(tmp_path / "state.db")
    from bot.engine.model import EngineState
    from bot.state.types import Commit

    await store.commit_cycle(Commit(EngineState(), EngineState(), [snap], [], NOW, []))
    assert await store.load_snapshots() == {"main": snap}
    await store.close()
    db = sqlite3.connect(tmp_path / "state.db")
    (text, figures) = db.execute("SELECT data, figures FROM snapshots").fetchone()
    # issue 25: the key names in the frame, the figures packed (no number as text)
    assert '"names":["a"]' in text and "1.0" not in text
    assert array("d", figures).tolist() == [5.0, 1.5, 7.0, 1.0, 2.0]
    old = json.dumps({**snap.to_dict()})  # keys as objects, as 0.2 wrote them
    db.execute("UPDATE snapshots SET data=?, figures=NULL", (old,))
    db.commit()
    db.close()
    store = Store.open(tmp_path / "state.db")
    assert await store.load_snapshots() == {"main": snap}
    await store.close()


async def test_the_retry_loop_starts_only_after_a_failed_first_attempt(comet, caplog):
    from fakes.cometapi import reply_balance, reply_status
    from tests.conftest import QUERY_KEY
    from tests.helpers import RETRYING

    caplog.set_level(logging.DEBUG)
    entered = []
    real = upstream_client.stamina.retry_context

    def spy(*args, **kwargs):
        entered.append(kwargs["attempts"])
        return real(*args, **kwargs)

    account = upstream_client.Account("main", QUERY_KEY, comet.url)
    session = upstream_client.Client.new_session()
    client = upstream_client.Client(session, 2, RETRYING)
    try:
        with patch.object(upstream_client.stamina, "retry_context", spy):
            comet.default = reply_balance(7)
            assert isinstance(await client.poll(account), Snapshot)
            assert entered == []
            comet.push(reply_status(503))
            snap = await client.poll(account)
    finally:
        await session.close()
    assert isinstance(snap, Snapshot) and snap.total_quota == 7
    assert entered == [RETRYING.attempts] and len(comet.requests) == 3
    (retry,) = [r for r in caplog.records if r.getMessage() == "poll.retry"]
    assert "HTTP 503" in retry.fields["reason"] and retry.fields["retry"] == 1


def test_the_metrics_page_stays_bounded_whatever_the_number_of_keys():
    from prometheus_client import generate_latest

    from bot.ops.metrics import MAX_KEY_SERIES, MAX_KEY_SERIES_TOTAL, Metrics

    snaps = [
        Snapshot(
            f"a{i}",
            "u",
            5.0,
            1.0,
            3,
            tuple(KeyBalance(f"k{j}", float(j + i), 1.0) for j in range(3000)),
            NOW,
        )
        for i in range(20)
    ]
    text = generate_latest(Metrics(lambda: snaps).registry).decode()
    series = [x for x in text.splitlines() if x.startswith("balance_bot_key_remaining{")]
    assert len(series) == MAX_KEY_SERIES_TOTAL
    per_account = {}
    for line in series:
        account = line.split('account="')[1].split('"')[0]
        per_account[account] = per_account.get(account, 0) + 1
    assert max(per_account.values()) <= MAX_KEY_SERIES
    highest = max(float(x.rsplit(" ", 1)[1]) for x in series)
    assert highest < 999  # the lowest ones, not any 10,000
