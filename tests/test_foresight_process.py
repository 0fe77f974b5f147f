"""Forecasts, spend spikes and the digest, end to end: `python -m bot` as a real
process against the loopback fake CometAPI, polling every second with short
windows; alerts go to the log notifier (stderr)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from fakes.cometapi import daily_entry, quota, reply_balance
from tests.conftest import QUERY_KEY
from tests.process import BotProcess, run_bot

ENV = {"TEST_QUERY_KEY": QUERY_KEY}

RUNWAY = """
[[rules]]
name = "runway"
target = "total"
days_left_below = 3
severity = "warning"
"""

SPIKE = """
[[rules]]
name = "spike"
target = "key"
spend_above = 50
window = "6s"
"""


class Draining:
    """An account that spends `per_poll` USD on every poll (on key prod-api),
    until topped up; `spike` adds a one-off jump to the key's spending."""

    def __init__(self, balance: float, per_poll: float) -> None:
        self.balance, self.used, self.per_poll = balance, 100.0, per_poll
        self.key_used = 10.0
        self.spike = 0.0

    async def __call__(self, _: web.Request) -> web.StreamResponse:
        self.balance -= self.per_poll
        self.used += self.per_poll
        self.key_used += self.per_poll + self.spike
        self.spike = 0.0
        keys = [{"name": "prod-api", "remain_quota": 500, "used_quota": self.key_used}]
        body = quota(self.balance, keys, total_used_quota=self.used)
        return web.json_response(body)


def notices(bot: BotProcess, needle: str) -> list[str]:
    return [line for line in bot.lines if "notify" in line and needle in line]


async def test_a_draining_balance_fires_the_forecast_once_and_a_top_up_resolves_it(
    write_config, comet
):
    drain = Draining(balance=20.0, per_poll=1.0)
    comet.default = drain
    comet.seed_responder = reply_balance(20)  # no daily_quota here: live data only
    path = write_config(rules=RUNWAY, bot='burn_window = "20s"')
    bot = await BotProcess("run", "-c", path, env=ENV).start()
    # $1 a second is $86,400 a day: $20 lasts seconds, once 5 s of samples exist
    await bot.wait_for(
        lambda lines: any("WARNING · main / total: ≈ 0.0 days left" in x for x in lines)
    )
    drain.balance = 1_000_000.0  # a top-up: 11.6 days at this rate
    await bot.wait_for(lambda lines: any("RESOLVED · main / total: ≈ 1" in x for x in lines))
    assert await bot.stop() == 0
    fired = notices(bot, "WARNING · main / total: ≈")
    assert len(fired) == 1
    assert re.search(r"at \$8\d,\d{3}\.\d\d/day \(below 3 days; resolves at 4\.5 days\)", fired[0])
    assert len(notices(bot, "RESOLVED · main / total")) == 1
    assert "gathering data" not in "".join(fired)

    check = await run_bot("check", "--json", "--no-notify", "-c", path, env=ENV)
    (account,) = json.loads(check.stdout)["accounts"]
    assert account["burn_usd_per_day"] > 80_000  # the run's samples are still in the window
    assert account["days_left"] > 4.5
    text = await run_bot("check", "--no-notify", "-c", path, env=ENV)
    perfdata = text.stdout.splitlines()[0].split(" | ")[1]
    assert " 'main_days_left'=" in perfdata and perfdata.endswith(";3:;")


async def test_a_spend_spike_on_one_key_fires_and_resolves(write_config, comet):
    drain = Draining(balance=1000.0, per_poll=0.5)
    comet.default = drain
    comet.seed_responder = reply_balance(1000)
    bot = await BotProcess("run", "-c", write_config(rules=SPIKE), env=ENV).start()
    polls = len(comet.requests)
    await comet.wait_requests(polls + 4)  # 2 s of samples: a quarter of the window and more
    drain.spike = 60.0
    await bot.wait_for(lambda lines: any("WARNING · main / key prod-api: $6" in x for x in lines))
    await bot.wait_for(
        lambda lines: any("RESOLVED · main / key prod-api:" in x for x in lines), within=30
    )
    assert await bot.stop() == 0
    (fired,) = notices(bot, "WARNING · main / key prod-api")
    assert "spent in the last 6s (above $50.00; resolves at $40.00)" in fired
    (resolved,) = notices(bot, "RESOLVED · main / key prod-api")
    assert "spent in the last 6s (at or below $40.00) after" in resolved


async def test_seeded_rates_give_a_forecast_on_the_first_poll(write_config, comet):
    today = datetime.now(UTC).date()
    comet.daily = {
        (today - timedelta(days=d)).isoformat(): [daily_entry("prod-api", 12.0, 40)]
        for d in (1, 2, 3)
    }
    comet.default = reply_balance(60, [{"name": "prod-api", "remain_quota": 5, "used_quota": 1}])
    bot = await run_bot("check", "--json", "--no-notify", "-c", write_config(rules=RUNWAY), env=ENV)
    (account,) = json.loads(bot.stdout)["accounts"]
    assert account["burn_usd_per_day"] == 12.0 and account["days_left"] == 5.0
    (seed,) = comet.seed_requests
    assert seed.query["end_date"] == (today - timedelta(days=1)).isoformat()
    assert seed.query["start_date"] == (today - timedelta(days=1)).isoformat()  # a 1-day window


async def test_a_broken_daily_quota_is_one_log_line_and_gathering_data(write_config, comet):
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()

    async def garbage(_: web.Request) -> web.StreamResponse:
        return web.json_response(quota(60) | {"daily_quota": {yesterday: "nonsense"}})

    comet.seed_responder = garbage
    bot = await run_bot("check", "--json", "--no-notify", "-c", write_config(rules=RUNWAY), env=ENV)
    (account,) = json.loads(bot.stdout)["accounts"]
    assert account["burn_usd_per_day"] is None and account["error"] is None
    assert len([x for x in bot.lines if "seed.unavailable" in x]) == 1
    assert bot.proc.returncode == 0


def digest_config(at: datetime) -> str:
    return f'\n[digest]\nat = "{at.strftime("%H:%M:%S")}"\n'


async def test_the_digest_arrives_once_at_its_time(write_config, comet):
    comet.default = reply_balance(42)
    at = datetime.now(UTC) + timedelta(seconds=4)
    bot = await BotProcess("run", "-c", write_config(extra=digest_config(at)), env=ENV).start()
    await bot.wait_for(lambda lines: any("CometAPI daily digest" in x for x in lines), within=20)
    polls = len(comet.requests)
    await comet.wait_requests(polls + 3)
    assert await bot.stop() == 0
    assert len(notices(bot, "CometAPI daily digest")) == 1
    assert notices(bot, "Balance: $42.00")


async def test_a_digest_missed_while_down_goes_out_at_start_once(write_config, comet):
    comet.default = reply_balance(42)
    path = write_config(extra=digest_config(datetime.now(UTC) - timedelta(hours=1)))
    for expected in (1, 0):  # a restart the same day sends no second one
        bot = await BotProcess("run", "-c", path, env=ENV).start()
        await bot.wait_for(lambda lines: any("bot.started" in x for x in lines))
        polls = len(comet.requests)
        await comet.wait_requests(polls + 2)
        assert await bot.stop() == 0
        assert len(notices(bot, "CometAPI daily digest")) == expected, bot.stderr


async def test_run_waits_for_a_slow_seed_so_that_the_first_poll_has_a_forecast(write_config, comet):
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    keys = [{"name": "prod-api", "remain_quota": 5, "used_quota": 1}]

    async def slow_seed(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.5)  # slower than the first poll would be
        daily = {yesterday: [daily_entry("prod-api", 30.0, 40)]}
        return web.json_response(quota(60, keys) | {"daily_quota": daily})

    comet.seed_responder = slow_seed
    comet.default = reply_balance(60, keys)
    path = Path(write_config(rules=RUNWAY))
    path.write_text(path.read_text().replace('interval = "1s"', 'interval = "1h"'))
    bot = await BotProcess("run", "-c", str(path), env=ENV).start()
    await bot.wait_for(
        lambda lines: any("WARNING · main / total: ≈ 2.0 days left" in x for x in lines)
    )
    assert await bot.stop() == 0
    assert len(comet.requests) == 1  # the first poll of the hour, not a later one
