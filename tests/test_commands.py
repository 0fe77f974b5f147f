"""Chat commands on a live App: fresh data, caching, failure fallback, markers, /status."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.app.commands import ChatCommands
from bot.app.service import App
from bot.notify.render import MARK
from fakes.cometapi import reply_balance, reply_status
from tests.helpers import FAST, Clock

KEY_RULE = """
[[rules]]
name = "account-low"
target = "total"
below = 20

[[rules]]
name = "key-low"
target = "key"
below = 2
severity = "critical"
"""


def text(message) -> str:
    return "\n".join(message.plain_lines())


async def test_balance_fetches_fresh_then_reuses_for_30_seconds(make_config, comet):
    clock = Clock()
    comet.default = reply_balance(
        15,
        [
            {"name": "prod", "remain_quota": 1, "used_quota": 9},
            {"name": "big", "remain_quota": 50, "used_quota": 0},
        ],
    )
    async with App(make_config(KEY_RULE), retry=FAST, clock=clock) as app:
        commands = ChatCommands(app.model)
        first = text(await commands.balance())
        assert len(comet.requests) == 1
        assert "Balance: $15.00" in first and "Requests: 1,221" in first
        clock.now += timedelta(seconds=29)
        await commands.balance()
        assert len(comet.requests) == 1  # under 30 s old: no new request
        clock.now += timedelta(seconds=2)
        await commands.balance("MAIN")  # case-insensitive account name
        assert len(comet.requests) == 2


async def test_balance_marks_firing_subjects(make_config, comet):
    comet.default = reply_balance(
        15,
        [
            {"name": "prod", "remain_quota": 1, "used_quota": 9},
            {"name": "big", "remain_quota": 50, "used_quota": 0},
        ],
    )
    async with App(make_config(KEY_RULE), retry=FAST) as app:
        await app.cycle(notify=False)
        shown = text(await ChatCommands(app.model).balance())
    assert f"{MARK} Balance: $15.00" in shown
    assert f"{MARK} prod: $1.00 left" in shown
    assert f"{MARK} big" not in shown


async def test_failed_fetch_shows_last_good_data_and_reason(make_config, comet):
    clock = Clock()
    comet.default = reply_balance(42)
    async with App(make_config(KEY_RULE), retry=FAST, clock=clock) as app:
        await app.cycle(notify=False)
        comet.default = reply_status(502)
        clock.now += timedelta(minutes=10)
        shown = text(await ChatCommands(app.model).balance())
    host = comet.url.split("//")[1].split("?")[0]  # 127.0.0.1:port/user/quota
    assert f"fetch failed: HTTP 502 from {host}" in shown
    assert "Balance: $42.00" in shown and "(10m ago)" in shown


async def test_unknown_account(make_config, comet):
    async with App(make_config(), retry=FAST) as app:
        shown = text(await ChatCommands(app.model).balance("nope"))
    assert shown == "Unknown account 'nope'. Accounts: main"
    assert not comet.requests


async def test_status_lists_firing_alerts_and_accounts_without_data(make_config, comet):
    comet.default = reply_balance(15, [{"name": "prod", "remain_quota": 1, "used_quota": 9}])
    async with App(make_config(KEY_RULE, bot="stale_after = 1"), retry=FAST) as app:
        commands = ChatCommands(app.model)
        assert text(await commands.status()).startswith("CometAPI balance: all clear")
        await app.cycle(notify=False)
        shown = text(await commands.status())
        assert shown.startswith("CometAPI balance: 2 firing")
        assert "CRITICAL · main / key prod: $1.00 left (below $2.00; resolves at $2.20)" in shown
        assert "WARNING · main / total: $15.00 left" in shown
        comet.default = reply_status(500)
        await app.cycle(notify=False)
        shown = text(await commands.status())
    assert "1 without data" in shown and "DATA UNAVAILABLE · main: HTTP 500" in shown


async def test_balance_asked_again_while_being_made_shares_that_answer(make_config, comet):
    """Issue 20, defect 3: concurrent /balance for the same accounts make one
    answer, not one each; once made, the next /balance makes a new one."""
    comet.default = reply_balance(15)
    async with App(make_config(KEY_RULE), retry=FAST) as app:
        commands = ChatCommands(app.model)
        first, same, other = await asyncio.gather(
            commands.balance(), commands.balance(), commands.balance("main")
        )
        later = await commands.balance()
    assert first is same and first is other  # "main" names the same (only) account
    assert later is not first and "Balance: $15.00" in text(later)
