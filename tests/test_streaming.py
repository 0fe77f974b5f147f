"""The streaming cycle (SPEC 5, Grouping): the first account with news is
committed and sent while the others are still being polled; the rest leaves
grouped when the cycle ends, at most two messages per destination; an event
is on disk before it is sent, across a SIGKILL mid-cycle."""

from __future__ import annotations

import asyncio
import html
import re
import signal
from pathlib import Path

import pytest
from aiohttp import web

from bot.app.service import App
from fakes.cometapi import FakeCometAPI, quota, reply_balance
from tests.conftest import QUERY_KEY
from tests.helpers import FAST
from tests.process import BotProcess
from tests.test_buttons import CHAT, telegram

CRITICAL = """
[[rules]]
name = "empty"
target = "total"
below = 5
recover_above = 10
severity = "critical"
"""


def account(name: str, fake: FakeCometAPI, key: str = QUERY_KEY) -> str:
    return f'\n[[accounts]]\nname = "{name}"\nkey = "{key}"\nurl = "{fake.url}"\n'


class Gate:
    """A fake CometAPI answer that waits until the test opens the gate."""

    def __init__(self, total: float) -> None:
        self.total = total
        self.open = asyncio.Event()
        self.asked = asyncio.Event()

    async def __call__(self, _: web.Request) -> web.StreamResponse:
        self.asked.set()
        await self.open.wait()
        return web.json_response(quota(self.total))


@pytest.fixture
async def slow():
    fake = FakeCometAPI(QUERY_KEY)
    await fake.start()
    yield fake
    await fake.stop()


def seen(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text))


async def test_the_first_account_with_news_is_sent_while_others_are_still_polled(
    make_config, comet, slow, tg
):
    comet.default = reply_balance(3)
    gate = Gate(2)
    slow.default = gate
    cfg = make_config(CRITICAL + account("slow", slow) + telegram(tg))
    async with App(cfg, retry=FAST) as app:
        await app.start_notifiers(listen=False)
        delivering = asyncio.create_task(app.delivery.run())
        cycle = asyncio.create_task(app.cycle())
        await gate.asked.wait()
        (first,) = await tg.wait_sent(1)
        assert not cycle.done()  # the slow account is still being polled
        assert "main / total: $3.00" in seen(first.text) and "slow" not in first.text
        gate.open.set()
        result = await cycle
        assert result.committed and len(result.events) == 2
        second = (await tg.wait_sent(2))[1]
        assert "slow / total: $2.00" in seen(second.text) and "main" not in second.text
        app.delivery.stop()
        await delivering
    assert len(tg.sent) == 2


async def test_a_cycle_sends_at_most_two_messages_per_destination(make_config, comet, tg):
    others = [FakeCometAPI(QUERY_KEY) for _ in range(4)]
    for fake in others:
        fake.default = reply_balance(1)
        await fake.start()
    try:
        comet.default = reply_balance(1)
        accounts = "".join(account(f"acct{i}", fake) for i, fake in enumerate(others))
        cfg = make_config(CRITICAL + accounts + telegram(tg))
        async with App(cfg, retry=FAST) as app:
            await app.start_notifiers(listen=False)
            result = await app.cycle()
            await app.delivery.deliver_due()
    finally:
        for fake in others:
            await fake.stop()
    assert len(result.events) == 5
    assert [m.chat_id for m in tg.sent] == [CHAT, CHAT]
    alerts = [seen(m.text).count("CRITICAL · ") for m in tg.sent]
    assert alerts == [1, 4]  # the first account's news alone, then the rest together


async def test_an_alert_sent_mid_cycle_is_not_sent_again_after_sigkill(write_config, comet, slow):
    """The first account's alert goes out while the second account's poll hangs;
    the process is killed; after the restart the second account's alert is
    sent, the first one's is not repeated."""
    comet.default = reply_balance(3)
    gate = Gate(2)
    slow.default = gate
    accounts = account("slow", slow, "${TEST_QUERY_KEY}")
    path = write_config(rules=CRITICAL, extra=accounts)
    text = Path(path).read_text()  # the hanging poll must outlast the 1 s timeout
    Path(path).write_text(text.replace('request_timeout = "1s"', 'request_timeout = "20s"'))
    env = {"TEST_QUERY_KEY": QUERY_KEY}
    bot = await BotProcess("run", "-c", path, env=env).start()
    await bot.wait_for(lambda lines: any("CRITICAL · main / total" in x for x in lines))
    # marked delivered (a send whose outcome is unknown may be repeated: SPEC 5)
    await bot.wait_for(lambda lines: any("delivery.sent" in x for x in lines))
    assert gate.asked.is_set() and not gate.open.is_set()
    bot.kill()
    assert await bot.wait() == -signal.SIGKILL

    slow.default = reply_balance(2)
    bot = await BotProcess("run", "-c", path, env=env).start()
    await bot.wait_for(lambda lines: any("CRITICAL · slow / total" in x for x in lines))
    polls = len(comet.requests)
    await comet.wait_requests(polls + 2)
    assert await bot.stop() == 0
    assert not any("CRITICAL · main / total" in x for x in bot.lines), "\n".join(bot.lines)
    gate.open.set()
