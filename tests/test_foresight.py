"""Where the forecasts show: /balance, /spend, /digest and /metrics, over a day
of simulated polls (a fake clock, five minutes a cycle) against the fake CometAPI."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import generate_latest

from bot.app.commands import ChatCommands
from bot.app.service import App
from bot.notifiers.message import plain
from bot.notify.render import event_line
from fakes.cometapi import quota
from tests.helpers import FAST, Clock

START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
RULES = """
[[rules]]
name = "runway"
target = "total"
days_left_below = 3

[[rules]]
name = "keys-low"
target = "key"
below = 5
exclude_keys = ["quiet"]
"""


class Spending:
    """$0.25 on prod-api and $0.05 on batch every five minutes: $86.40 a day."""

    def __init__(self) -> None:
        self.polls = 0

    async def __call__(self, _: web.Request) -> web.StreamResponse:
        self.polls += 1
        prod, batch = 0.25 * self.polls, 0.05 * self.polls
        keys = [
            {"name": "prod-api", "remain_quota": 400 - prod, "used_quota": prod},
            {"name": "batch", "remain_quota": 3, "used_quota": batch},
            {"name": "quiet", "remain_quota": 1, "used_quota": 0},
        ]
        return web.json_response(quota(1000 - prod - batch, keys, total_used_quota=prod + batch))


def text(message) -> str:
    return "\n".join(message.plain_lines())


async def test_rates_show_in_balance_spend_digest_and_metrics(make_config, comet):
    comet.default = Spending()
    clock = Clock(START)
    cfg = make_config(RULES, bot='burn_window = "24h"')
    async with App(cfg, retry=FAST, clock=clock) as app:
        for _ in range(12 * 30):  # 30 hours of polls
            await app.cycle(notify=False)
            clock.advance(300)
        clock.advance(-300)
        commands = ChatCommands(app.model)
        balance = text(await commands.balance())
        spend_day = text(await commands.spend("24h"))
        spend_week = text(await commands.spend("main 7d"))
        digest = text(await commands.digest())
        metrics = generate_latest(app.metrics.registry).decode()

    assert "Burn: $86.40/day, ≈ 10.3 days left" in balance  # $892.00 left at $86.40 a day
    assert "Spending most: prod-api $72.00/day, batch $14.40/day" in balance
    assert spend_day.startswith("CometAPI spending, last 24h")
    assert "Spent: $86.40" in spend_day and "Spent most: prod-api $72.00, batch $14.40" in spend_day
    assert "History covers 1.2 days of it" in spend_week and "Spent: $107.70" in spend_week
    assert digest.startswith("CometAPI daily digest, 2026-03-02")
    # the 24 h before: the 6 h of them the history covers
    assert "Spent in the last 24 h: $86.40 (the 24 h before: $21.30)" in digest
    assert "Closest to empty: batch $3.00 left, prod-api $310.00 left" in digest  # not quiet
    assert "Last 7 days:      █▁" in digest  # five days without data, then two: falling
    assert "Firing: 1\n  WARNING · main / key batch: $3.00 left" in digest
    assert (
        'balance_bot_burn_rate_per_day{account="main",currency="USD",provider="cometapi"} 86.4'
        in metrics
    )
    assert 'balance_bot_time_left_seconds{account="main",provider="cometapi"} 89199' in metrics


async def test_gathering_data_and_not_depleting_as_shown(make_config, comet):
    flat = quota(50, [{"name": "k", "remain_quota": 5, "used_quota": 1}])

    async def steady(_: web.Request) -> web.StreamResponse:
        return web.json_response(flat)

    comet.default = steady
    clock = Clock(START)
    async with App(make_config(RULES), retry=FAST, clock=clock) as app:
        await app.cycle(notify=False)
        commands = ChatCommands(app.model)
        assert "Burn: gathering data" in text(await commands.balance())
        assert "Spent: gathering data" in text(await commands.spend())
        metrics = generate_latest(app.metrics.registry).decode()
        assert "balance_bot_burn_rate_per_day{" not in metrics
        for _ in range(100):
            clock.advance(300)
            await app.cycle(notify=False)
        assert "Burn: $0.00/day, not depleting" in text(await commands.balance())
        metrics = generate_latest(app.metrics.registry).decode()
    assert 'balance_bot_time_left_seconds{account="main",provider="cometapi"} +Inf' in metrics


async def test_a_threshold_alert_says_how_long_the_money_lasts(make_config, comet):
    polls = 0

    async def draining(_: web.Request) -> web.StreamResponse:
        nonlocal polls
        polls += 1
        keys = [{"name": "drain", "remain_quota": 10 - 0.25 * polls, "used_quota": 0.25 * polls}]
        return web.json_response(quota(900, keys))

    comet.default = draining
    clock = Clock(START)
    rule = '\n[[rules]]\nname = "low"\ntarget = "key"\nbelow = 5\n'
    async with App(make_config(rule, bot='burn_window = "1h"'), retry=FAST, clock=clock) as app:
        fired = []
        while not fired:
            clock.advance(300)
            fired = [e for e in (await app.cycle(notify=False)).events if e.kind == "fire"]
    (event,) = fired
    assert plain(event_line(event)) == (
        "WARNING · main / key drain: $4.75 left (below $5.00; resolves at $5.50), "
        "≈ 0.1 days left at $72.00/day"
    )


async def test_a_digest_sent_after_midnight_for_the_day_before_is_titled_with_that_day(
    make_config, comet
):
    comet.default = Spending()
    clock = Clock(datetime(2026, 3, 2, 0, 30, tzinfo=UTC))  # yesterday's 23:30 was missed
    cfg = make_config(RULES + '\n[digest]\nat = "23:30"\n')
    async with App(cfg, retry=FAST, clock=clock) as app:
        day = app.digests.day(clock())
        assert day is not None and day.isoformat() == "2026-03-01"
        assert await app.send_digest(day)
        (row,) = await app.store.pending()
    assert row.message is not None and row.message.title == "CometAPI daily digest, 2026-03-01"


async def test_spend_and_balance_agree_while_the_burn_rate_gathers_data(make_config, comet):
    """Two polls five minutes apart: /spend has a spending figure, but the burn rate
    (burn_window / 4 of samples) is still gathering data, and both commands say so."""
    comet.default = Spending()
    clock = Clock(START)
    async with App(make_config(RULES), retry=FAST, clock=clock) as app:
        await app.cycle(notify=False)
        clock.advance(300)
        await app.cycle(notify=False)
        commands = ChatCommands(app.model)
        balance, spent = text(await commands.balance()), text(await commands.spend())
    assert "Burn: gathering data" in balance
    assert "Spent: $0.30" in spent  # the spending figure stays
    assert "Burn: gathering data" in spent and "not depleting" not in spent
    assert "History covers 5m of it" in spent
