"""A /balance storm on a large account (issue 20, defect 3): the running bot, a
20,000-key account, 200 /balance in 2 s from an allowed chat; /healthz stays
quick and an alert still goes out on time."""

from __future__ import annotations

import asyncio
import html
import json
import math
import re
from collections.abc import Callable

import aiohttp

from fakes.cometapi import quota, reply_raw
from fakes.telegram import FakeTelegram
from tests.conftest import PROCESS_RULES, QUERY_KEY
from tests.process import BotProcess

ENV = {"TEST_QUERY_KEY": QUERY_KEY}
CHAT = 111111
INTERVAL = 5.0  # seconds between polls
STORM = 200  # /balance commands ...
STORM_SECONDS = 2.0  # ... in this long
KEYS = 20_000


def plain(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def config(tmp_path, comet, tg: FakeTelegram) -> str:
    path = tmp_path / "rules.toml"
    path.write_text(f"""
[bot]
interval = "{INTERVAL:g}s"
state_path = "{tmp_path / "state.db"}"
http_listen = "127.0.0.1:0"
request_timeout = "2s"

[[accounts]]
name = "main"
key = "${{TEST_QUERY_KEY}}"
url = "{comet.url}"
{PROCESS_RULES}

[notifiers.telegram]
token = "{tg.token}"
chat_ids = [{CHAT}]
api_url = "{tg.url}"
""")
    return str(path)


def body(total: float) -> bytes:
    keys = [
        {"name": f"key-{i:05d}-{'x' * 20}", "remain_quota": 50 + i % 997, "used_quota": 1}
        for i in range(KEYS)
    ]
    return json.dumps(quota(total, keys)).encode()


async def first_sent(tg: FakeTelegram, wanted: Callable[[str], bool], within: float) -> float:
    """The loop time at which a message whose text `wanted` is seen at the fake
    Telegram; infinity if none is within `within` seconds."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            while not any(wanted(plain(s.text)) for s in tg.sent):
                await tg.wait_sent(len(tg.sent) + 1, within=within)
    except TimeoutError:
        return math.inf
    return loop.time()


async def test_a_balance_storm_holds_up_neither_healthz_nor_an_alert(tmp_path, comet, tg):
    """Issue 20, defect 3: 200 /balance in 2 s on a 20,000-key account once kept
    /healthz waiting 13.6 s and a new CRITICAL 28 s, /id 27 s."""
    comet.default = reply_raw(body(15))  # a warning: below $20
    crossed = reply_raw(body(3))  # below the critical rule's $5
    bot = BotProcess("run", "-c", config(tmp_path, comet, tg), "--log-format", "json", env=ENV)
    await bot.start()
    await bot.wait_for(lambda lines: any("telegram.listening" in line for line in lines))
    (listening,) = [e for e in bot.json_lines() if e["event"] == "http.listening"]
    healthz = f"http://127.0.0.1:{listening['port']}/healthz"
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    halfway = asyncio.Event()

    async def probe(session: aiohttp.ClientSession) -> None:
        while True:
            started = loop.time()
            try:
                async with session.get(healthz, timeout=aiohttp.ClientTimeout(30)) as response:
                    await response.read()
            finally:
                latencies.append(loop.time() - started)
            await asyncio.sleep(0.1)

    async def storm() -> None:
        for sent in range(STORM):
            await tg.message(CHAT, "/balance")
            if sent == STORM // 2:
                halfway.set()
            await asyncio.sleep(STORM_SECONDS / STORM)

    async with aiohttp.ClientSession() as session:
        ready = await first_sent(tg, lambda t: "WARNING" in t, within=30)  # the first poll
        assert ready < math.inf, bot.stderr
        probing = asyncio.create_task(probe(session))
        try:
            storming = asyncio.create_task(storm())
            await halfway.wait()
            comet.default = crossed
            crossed_at = loop.time()
            await tg.message(CHAT, "/id")
            alerted_at, id_at = await asyncio.gather(
                first_sent(tg, lambda t: "CRITICAL" in t, within=3 * INTERVAL),
                first_sent(tg, lambda t: t.startswith("chat "), within=3 * INTERVAL),
            )
            await storming
            answered = await first_sent(tg, lambda t: t.endswith("messages)"), within=30)
        finally:
            probing.cancel()
            await asyncio.gather(probing, return_exceptions=True)
    assert await bot.stop() == 0
    alert_after, id_after = alerted_at - crossed_at, id_at - crossed_at
    timings = (
        f"/healthz at most {max(latencies):.2f}s, the alert {alert_after:.1f}s "
        f"after the crossing, /id answered in {id_after:.1f}s"
    )
    assert max(latencies) < 1.0, timings
    assert alert_after < INTERVAL + 1.5, timings  # one interval, and the poll itself
    assert id_after < 1.0, timings
    assert answered < math.inf  # and /balance was answered in full
    texts = [plain(s.text) for s in tg.sent]
    answers = sum(t.startswith("CometAPI balance (5/5)") for t in texts)
    busy = sum(
        t == "Still working on your last /balance; ask again once it is answered." for t in texts
    )
    assert answers >= 1 and busy <= answers, timings  # a note per answer under way, at most
