"""The digest missed while down (SPEC 5, "Digest"): on a fresh state file it goes
out right after the first cycle that read data, never before the first poll and
never with no data at all; an account that was not read shows its error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from bot.app.digest import DIGEST_SENT
from bot.app.service import App
from bot.notify.render import DigestView, digest_message
from fakes.cometapi import reply_balance, reply_status
from fakes.telegram import FakeTelegram
from tests.conftest import QUERY_KEY, TG_TOKEN
from tests.helpers import FAST

CHAT = 111111
DIGEST = "CometAPI daily digest"


def sections(tg: FakeTelegram, extra: str = "") -> str:
    """A rule that stays quiet at $42, a digest due a minute ago, Telegram."""
    at = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%H:%M:%S")
    return f"""
[[rules]]
name = "low"
target = "total"
below = 5
{extra}
[digest]
at = "{at}"

[notifiers.telegram]
token = "{TG_TOKEN}"
chat_ids = [{CHAT}]
api_url = "{tg.url}"
"""


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[None]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(app.serve(stop, ready=lambda _: ready.set()))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield
    finally:
        stop.set()
        await task


def digests(tg: FakeTelegram) -> list[str]:
    return [s.text for s in tg.sent if DIGEST in s.text]


async def test_no_digest_before_data_then_one_with_real_numbers(make_config, comet, tg):
    comet.push(reply_status(502))  # the first poll reads nothing
    comet.default = reply_balance(42)
    async with App(make_config(sections(tg)), retry=FAST) as app, serving(app):
        await app.pipeline.wait_cycles(1)
        assert await app.store.meta(DIGEST_SENT) is None  # nothing recorded, nothing queued
        assert digests(tg) == []
        (text,) = [s.text for s in await tg.wait_sent(1)]
        assert DIGEST in text
        assert "$42.00" in text and "no data yet" not in text
        # one sample spans nothing: its spending is not yet known, as /spend says
        assert "Spent in the last 24 h: gathering data" in text and "$0.00" not in text
        await app.pipeline.wait_cycles(app.pipeline.cycles_done + 1)
    assert len(digests(tg)) == 1  # at most one per local date


async def test_an_account_not_read_shows_its_error_in_the_digest(make_config, comet, tg):
    comet.default = reply_balance(42)
    down = f"""
[[accounts]]
name = "down"
key = "{QUERY_KEY}"
url = "http://127.0.0.1:9/user/quota"
"""  # port 9 (discard): nothing listens, every poll is refused
    async with App(make_config(down + sections(tg)), retry=FAST) as app, serving(app):
        while not digests(tg):
            await tg.wait_sent(len(tg.sent) + 1)
    (text,) = digests(tg)
    main, rest = text.split("<b>down</b>", 1)
    assert "$42.00" in main
    assert "fetch failed:" in rest and "no data yet" in rest


async def test_a_scheduled_digest_with_no_data_yet_waits_for_the_first(make_config, comet, tg):
    comet.default = reply_status(502)
    async with App(make_config(sections(tg)), retry=FAST) as app, serving(app):
        await app.pipeline.wait_cycles(1)
        await app.digests.scheduled()  # its time comes while nothing was read
        assert await app.store.meta(DIGEST_SENT) is None
        comet.default = reply_balance(42)
        while not digests(tg):
            await tg.wait_sent(len(tg.sent) + 1)
    (text,) = digests(tg)
    assert "$42.00" in text


def test_a_failed_account_says_why_in_the_digest_text():
    view = DigestView("down", None, None, None, None, (), (), [None] * 7, (), (), "HTTP 502")
    lines = digest_message([view], "2026-01-01").plain_lines()
    assert "⚠️ fetch failed: HTTP 502" in lines and "no data yet" in lines
