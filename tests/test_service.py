"""The whole cycle against the fake CometAPI: fetch -> evaluate -> store -> outbox -> log notifier."""

from __future__ import annotations

import logging

from bot.app.service import App
from bot.engine.model import EventKind
from fakes.cometapi import reply_balance, reply_raw, reply_status
from tests.helpers import RETRYING as FAST


async def run_cycles(cfg, comet, responders, app=None):
    comet.push(*responders)
    kinds = []
    async with App(cfg, retry=FAST) as app:
        await app.start_notifiers(listen=False)
        for _ in responders:
            result = await app.cycle()
            kinds.append([e.kind for e in result.events])
            await app.delivery.deliver_due()
    return kinds


async def test_hysteresis_sequence_fires_twice_and_resolves_once(make_config, comet, caplog):
    cfg = make_config()
    caplog.set_level(logging.INFO)
    seq = [30, 15, 18, 16, 19, 26, 24, 10]
    kinds = await run_cycles(cfg, comet, [reply_balance(v) for v in seq])
    flat = [k for ks in kinds for k in ks]
    assert flat == [EventKind.FIRE, EventKind.RESOLVE, EventKind.FIRE]
    assert (
        kinds[1] == [EventKind.FIRE]
        and kinds[5] == [EventKind.RESOLVE]
        and kinds[7] == [EventKind.FIRE]
    )
    notified = [r.fields["text"] for r in caplog.records if r.getMessage() == "notify"]
    assert sum("WARNING · main / total: $15.00 left" in t for t in notified) == 1
    assert sum(t.startswith("RESOLVED · main / total: $26.00") for t in notified) == 1
    assert sum("WARNING · main / total: $10.00 left" in t for t in notified) == 1


async def test_restart_with_unchanged_low_balance_sends_nothing(make_config, comet):
    cfg = make_config()
    assert await run_cycles(cfg, comet, [reply_balance(10)]) == [[EventKind.FIRE]]
    assert await run_cycles(cfg, comet, [reply_balance(10), reply_balance(12)]) == [[], []]


async def test_outage_never_reads_as_zero(make_config, comet):
    cfg = make_config(bot="stale_after = 3")
    html = reply_raw(b"<html>oops</html>", content_type="text/html")
    polls = [[reply_status(500)] * 2, [html], [reply_status(502)] * 2, [html], [html]]
    seen = []
    async with App(cfg, retry=FAST) as app:
        for responders in polls:
            comet.push(*responders)
            seen.append([e.kind for e in (await app.cycle()).events])
            assert not comet.script
        comet.push(reply_balance(100))
        seen.append([e.kind for e in (await app.cycle()).events])
        assert not app.model.state.alerts
    assert seen == [[], [], [EventKind.UNAVAILABLE], [], [], [EventKind.AVAILABLE]]


async def test_state_file_holds_no_key(make_config, comet, tmp_path):
    from tests.conftest import QUERY_KEY

    cfg = make_config()
    await run_cycles(cfg, comet, [reply_balance(10), reply_status(401, QUERY_KEY)])
    for f in tmp_path.iterdir():
        assert QUERY_KEY.encode() not in f.read_bytes(), f


async def test_a_cycle_that_cannot_be_saved_is_evaluated_again(make_config, comet, caplog):
    """Disk full: the state does not advance, so the fire is recorded (once) when space returns."""
    cfg = make_config()
    keys = [
        {"name": f"key-{i}-" + "x" * 200, "remain_quota": i, "used_quota": 1} for i in range(2000)
    ]
    comet.default = reply_balance(10, keys)
    async with App(cfg, retry=FAST) as app:
        db = app.store._conn
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
        first = await app.cycle()
        assert not first.committed
        (record,) = [r for r in caplog.records if r.getMessage() == "cycle.not_saved"]
        assert "state.db" in record.fields["reason"] and "disk is full" in record.fields["reason"]
        assert await app.store.pending() == []
        db.execute("PRAGMA max_page_count = 1073741823")
        second = await app.cycle()
        assert second.committed and [e.kind for e in second.events] == [EventKind.FIRE]
        third = await app.cycle()
        assert third.events == []


async def test_removed_accounts_and_rules_leave_no_state(make_config, comet):
    comet.default = reply_balance(10)
    async with App(make_config(), retry=FAST) as app:
        await app.cycle()
    other_rule = """
[[rules]]
name = "other"
target = "total"
below = 1
"""
    async with App(make_config(other_rule), retry=FAST) as app:
        result = await app.cycle()
        assert result.events == [] and app.model.state.alerts == {}
