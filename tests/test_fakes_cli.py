"""`python -m fakes cometapi|telegram|slack` (docs/offline.md), driven through the
child's stdin and stdout as a newcomer would type into it, with the real bot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest

from bot.app.service import App
from fakes.cometapi import reply_balance
from tests.conftest import RULES
from tests.helpers import FAST
from tests.process import FakeCLI


@pytest.fixture
async def fake_cli() -> AsyncIterator[Callable[[str], asyncio.Future[FakeCLI]]]:
    started: list[FakeCLI] = []

    def start(kind: str) -> asyncio.Future[FakeCLI]:
        cli = FakeCLI(kind)
        started.append(cli)
        return asyncio.ensure_future(cli.start())

    yield start
    for cli in started:
        cli.kill()


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


def assert_ended_in_one_line(cli: FakeCLI, code: int) -> None:
    assert code == 0
    assert cli.lines[-1] == f"fake {cli.kind} stopped"
    assert "Traceback" not in cli.stderr and "KeyboardInterrupt" not in cli.stderr, cli.stderr


async def test_the_cometapi_fake_answers_the_key_it_prints_and_a_typed_balance(fake_cli):
    cli = await fake_cli("cometapi")
    env = cli.exports()
    url, key = env["COMETAPI_URL"], env["COMETAPI_QUERY_KEY"]
    async with aiohttp.ClientSession() as session:

        async def get(query_key: str) -> tuple[int, dict]:
            async with session.get(url, params={"key": query_key}) as resp:
                return resp.status, await resp.json()

        status, body = await get(key)
        assert status == 200 and body["total_quota"] == 15.0
        assert (await get("some-other-key"))[0] == 401
        await cli.wait_for(lambda line: line.startswith("poll 1: answered $15.00"))
        await cli.wait_for(lambda line: "the balance is now $4.50" in line, await cli.type("4.5"))
        status, later = await get(key)
        assert later["total_quota"] == 4.5
        assert later["total_used_quota"] == pytest.approx(body["total_used_quota"] + 10.5)
        await cli.wait_for(lambda line: "not a number" in line, await cli.type("lots"))
    assert_ended_in_one_line(cli, await cli.interrupt())


def telegram_section(env: dict[str, str]) -> str:
    return f"""
[notifiers.telegram]
token = "{env["TELEGRAM_BOT_TOKEN"]}"
chat_ids = [{env["TELEGRAM_CHAT_ID"]}]
api_url = "{env["TELEGRAM_API_URL"]}"
"""


async def test_a_command_typed_into_the_fake_telegram_chat_gets_the_bots_answer(
    fake_cli, comet, make_config
):
    cli = await fake_cli("telegram")
    comet.default = reply_balance(15)
    cfg = make_config(RULES + telegram_section(cli.exports()))
    async with App(cfg, retry=FAST) as app, serving(app):
        alert = await cli.wait_for(lambda line: "main / total: $15.00 left" in line)
        buttons = await cli.wait_for(lambda line: True, alert + 1)  # the next line, once printed
        assert cli.lines[buttons].strip() == "[Snooze 1h] [Snooze 1d] [Ack]"
        typed = await cli.type("/balance")
        shown = await cli.wait_for(lambda line: line.startswith("bot → chat"), typed)
        await cli.wait_for(lambda line: "Balance: $15.00" in line, shown)
        pressed = await cli.type("press ack")
        await cli.wait_for(lambda line: "answered the press: Acknowledged" in line, pressed)
        await cli.wait_for(lambda line: "Acknowledged by" in line, pressed)
    assert_ended_in_one_line(cli, await cli.interrupt())


def slack_section(env: dict[str, str]) -> str:
    return f"""
[notifiers.slack]
bot_token = "{env["SLACK_BOT_TOKEN"]}"
app_token = "{env["SLACK_APP_TOKEN"]}"
channel = "{env["SLACK_CHANNEL"]}"
api_url = "{env["SLACK_API_URL"]}"
"""


async def test_a_slash_command_typed_into_the_fake_slack_gets_the_bots_answer(
    fake_cli, comet, make_config
):
    cli = await fake_cli("slack")
    comet.default = reply_balance(15)
    too_early = await cli.type("/balance")  # no bot connected yet: said, not a traceback
    await cli.wait_for(lambda line: "not connected over Socket Mode" in line, too_early)
    cfg = make_config(RULES + slack_section(cli.exports()))
    async with App(cfg, retry=FAST) as app, serving(app):
        await cli.wait_for(lambda line: "main / total: $15.00 left" in line)
        await cli.wait_for(lambda line: line.startswith("balance-bot connected over Socket"))
        typed = await cli.type("/balance")
        answer = await cli.wait_for(lambda line: line == "bot answered you:", typed)
        await cli.wait_for(lambda line: "Balance: *$15.00*" in line, answer)
        pressed = await cli.type("press Snooze 1h")
        await cli.wait_for(lambda line: "Snoozed 1 alert until" in line, pressed)
    assert_ended_in_one_line(cli, await cli.interrupt())
