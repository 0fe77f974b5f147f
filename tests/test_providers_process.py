"""Every provider end to end: `python -m bot run` and `check --json` as real
processes against the loopback fakes of CometAPI, new-api, OpenRouter and
DeepSeek in one config, polling every second; alerts go to the log notifier
(stderr). Amounts show in each account's currency; odd bodies fail only that
account's poll; no 16-character piece of any key shows anywhere."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from fakes.cometapi import reply_balance
from fakes.providers import FakeDeepSeek, FakeNewAPI, FakeOpenRouter, echo_error, raw
from tests.conftest import QUERY_KEY
from tests.process import BotProcess, run_bot
from tests.test_deploy import promtool

RULES = """
[[rules]]
name = "usd-low"
target = "total"
accounts = ["main", "router"]
below = 20
severity = "critical"

[[rules]]
name = "cny-low"
target = "total"
accounts = ["site", "seek"]
below = 50
recover_above = 55

[[rules]]
name = "key-low"
target = "key"
accounts = ["router"]
below = 1

[[rules]]
name = "runway"
target = "total"
accounts = ["seek"]
days_left_below = 3
"""


class Fakes:
    def __init__(self) -> None:
        self.site, self.router, self.seek = FakeNewAPI(), FakeOpenRouter(), FakeDeepSeek()

    @property
    def keys(self) -> list[str]:
        return [QUERY_KEY, self.site.key, self.router.key, self.seek.key]

    def env(self) -> dict[str, str]:
        return {
            "TEST_QUERY_KEY": QUERY_KEY,
            "NEWAPI_KEY": self.site.key,
            "OPENROUTER_MANAGEMENT_KEY": self.router.key,
            "DEEPSEEK_API_KEY": self.seek.key,
        }


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    made = Fakes()
    for fake in (made.site, made.router, made.seek):
        await fake.start()
    yield made
    for fake in (made.site, made.router, made.seek):
        await fake.stop()


@pytest.fixture
def write(tmp_path: Path, comet, fakes: Fakes) -> Callable[..., str]:
    def config(rules: str = RULES, bot: str = "", listen: str = "") -> str:
        path = tmp_path / "rules.toml"
        path.write_text(f"""
[bot]
interval = "1s"
state_path = "{tmp_path / "state.db"}"
http_listen = "{listen}"
request_timeout = "1s"
stale_after = 1
{bot}

[[accounts]]
name = "main"
key = "${{TEST_QUERY_KEY}}"
url = "{comet.url}"

[[accounts]]
name = "site"
provider = "newapi"
url = "{fakes.site.url}"
key = "${{NEWAPI_KEY}}"
currency = "CNY"

[[accounts]]
name = "router"
provider = "openrouter"
url = "{fakes.router.url}"
key = "${{OPENROUTER_MANAGEMENT_KEY}}"

[[accounts]]
name = "seek"
provider = "deepseek"
url = "{fakes.seek.url}"
key = "${{DEEPSEEK_API_KEY}}"
currency = "CNY"
{rules}
""")
        return str(path)

    return config


def notices(bot: BotProcess, needle: str) -> list[str]:
    return [line for line in bot.lines if "notify" in line and needle in line]


def no_key_in(texts: list[str], keys: list[str]) -> None:
    for text in texts:
        for key in keys:
            for start in range(len(key) - 15):
                assert key[start : start + 16] not in text, (key[start : start + 16], text[:300])


class Draining:
    """DeepSeek's balance dropping `per_poll` on each request (decimal strings)."""

    def __init__(self, fake: FakeDeepSeek, per_poll: float) -> None:
        self.fake, self.per_poll = fake, per_poll

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.fake.balances["CNY"] = round(self.fake.balances["CNY"] - self.per_poll, 2)
        return await FakeDeepSeek.answer(self.fake, request)


async def test_four_providers_fire_once_resolve_once_in_their_currencies(
    write, comet, fakes: Fakes, tmp_path
):
    comet.default = reply_balance(100)
    fakes.site.granted, fakes.site.used = 100.0, 70.0  # ¥30 left
    fakes.router.total_credits, fakes.router.total_usage = 100.0, 10.0
    fakes.router.keys = [FakeOpenRouter.entry(f"key-{i:03}", 5.0 + i, 1.0) for i in range(250)]
    fakes.router.keys[217] = FakeOpenRouter.entry("low-one", 0.5, 9.5)  # on the third page
    fakes.router.keys[3] = FakeOpenRouter.entry("switched-off", 0.0, disabled=True)
    fakes.router.keys[120] = FakeOpenRouter.entry("no-limit", None, 50.0)
    fakes.seek.balances = {"USD": 9.0, "CNY": 40.0}
    path = write(listen="127.0.0.1:0")
    bot = await BotProcess("run", "-c", path, "--log-level", "DEBUG", env=fakes.env()).start()
    await bot.wait_for(lambda lines: any("WARNING · site / total: ¥30.00 left" in x for x in lines))
    await bot.wait_for(lambda lines: any("WARNING · seek / total: ¥40.00 left" in x for x in lines))
    await bot.wait_for(
        lambda lines: any("WARNING · router / key low-one: $0.50" in x for x in lines)
    )
    listening = next(x for x in bot.lines if "http.listening" in x)
    port = listening.rsplit("port=", 1)[1].split()[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            page = await resp.text()
        async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            health = await resp.text()
    checked = promtool("check", "metrics", stdin=page)
    assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip()
    assert 'balance_bot_balance{account="seek",currency="CNY",provider="deepseek"} 40.0' in page
    assert 'balance_bot_balance{account="site",currency="CNY",provider="newapi"} 30.0' in page
    assert 'key="low-one",provider="openrouter"} 0.5' in page
    # between the threshold and the recovery level: nothing; at it: one resolve
    fakes.site.used = 48.0  # ¥52
    fakes.seek.balances["CNY"] = 53.0
    n = len(bot.lines)
    await bot.wait_for(lambda lines: len(lines) > n + 20)  # a few cycles
    fakes.site.used = 40.0  # ¥60
    fakes.seek.balances["CNY"] = 80.0
    fakes.router.keys[217] = FakeOpenRouter.entry("low-one", 5.0, 9.5)
    for who in ("site / total: ¥60.00", "seek / total: ¥80.00", "router / key low-one: $5.00"):
        await bot.wait_for(lambda lines, w=who: any(f"RESOLVED · {w}" in x for x in lines))
    assert await bot.stop() == 0
    for subject in ("site / total", "seek / total", "router / key low-one"):
        assert len(notices(bot, f"WARNING · {subject}")) == 1, subject
        assert len(notices(bot, f"RESOLVED · {subject}")) == 1, subject
    assert not notices(bot, "switched-off") and not notices(bot, "no-limit")
    assert not notices(bot, "main /")  # $100 is fine
    assert "(below ¥50.00; resolves at ¥55.00)" in notices(bot, "WARNING · site / total")[0]
    no_key_in(
        [bot.stderr, page, health, (tmp_path / "state.db").read_bytes().decode("latin-1")],
        fakes.keys,
    )

    check = await run_bot("check", "--json", "--no-notify", "-c", path, env=fakes.env())
    data = json.loads(check.stdout)
    by_name = {a["name"]: a for a in data["accounts"]}
    assert {n: (a["provider"], a["currency"]) for n, a in by_name.items()} == {
        "main": ("cometapi", "USD"),
        "site": ("newapi", "CNY"),
        "router": ("openrouter", "USD"),
        "seek": ("deepseek", "CNY"),
    }
    assert by_name["seek"]["total_quota"] == 80.0 and by_name["seek"]["keys"] == []
    assert len(by_name["router"]["keys"]) == 249
    assert check.proc.returncode == 0, check.stdout


async def test_odd_bodies_fail_only_their_account_while_cometapi_still_alerts(
    write, comet, fakes: Fakes
):
    comet.default = reply_balance(10)  # below 20: CRITICAL
    fakes.site.push(*[echo_error(200, "quota exhausted")] * 2)
    fakes.router.push(raw('{"data": {"total_credits": 1e400, "total_usage": 0}}'), raw("{}"))
    fakes.seek.push(
        raw(
            '{"is_available": true, "balance_infos": [{"currency": "CNY", "total_balance": "12 yuan"}]}'
        )
    )
    args = ("check", "--json", "--no-notify", "--log-level", "DEBUG", "-c", write())
    check = await run_bot(*args, env=fakes.env())
    data = json.loads(check.stdout)
    errors = {a["name"]: a["error"] for a in data["accounts"]}
    assert errors["main"] is None
    assert "quota exhausted" in errors["site"] and "***" in errors["site"]
    assert errors["router"] and errors["seek"] and "total_balance" in errors["seek"]
    assert data["status"] == "CRITICAL"  # the CometAPI account alerts all the same
    assert [(a["account"], a["rule"]) for a in data["alerts"]] == [("main", "usd-low")]
    no_key_in([check.stdout, check.stderr], fakes.keys)


async def test_a_rejected_key_and_a_deepseek_account_that_cannot_call(write, comet, fakes: Fakes):
    comet.default = reply_balance(100)
    fakes.router.push(*[echo_error(401, "management key required")] * 4)
    fakes.seek.available = False
    fakes.seek.balances = {"CNY": 100.0}
    args = ("check", "--no-notify", "--log-level", "DEBUG", "-c", write())
    text = await run_bot(*args, env=fakes.env())
    first = text.stdout.splitlines()[0]
    assert first.startswith("BALANCE CRITICAL - seek: not available for API calls")
    assert "router: key rejected (HTTP 401" in first
    assert "main $100.00" not in first and "'seek_total'=100.00" in first
    no_key_in([text.stdout, text.stderr], fakes.keys)


async def test_a_deepseek_burn_rate_from_balance_drops_and_a_top_up(write, comet, fakes: Fakes):
    """¥0.50 a second is ¥43,200 a day: the forecast fires within seconds; a
    top-up resolves it and the rate never goes negative."""
    comet.default = reply_balance(100)
    fakes.seek.balances = {"CNY": 1000.0}
    drain = Draining(fakes.seek, 0.5)
    fakes.seek.answer = drain  # type: ignore[method-assign]
    path = write(bot='burn_window = "8s"')
    bot = await BotProcess("run", "-c", path, env=fakes.env()).start()
    await bot.wait_for(
        lambda lines: any("WARNING · seek / total: ≈ 0.0 days left" in x for x in lines)
    )
    fired = notices(bot, "WARNING · seek / total: ≈")[0]
    rate = float(fired.split(" at ¥")[1].split("/day")[0].replace(",", ""))
    served = drain.per_poll * 86400  # one poll a second
    assert abs(rate - served) / served < 0.05, fired
    drain.per_poll = 0.0
    fakes.seek.balances["CNY"] = 10_000_000.0  # a top-up: never spending
    await bot.wait_for(lambda lines: any("RESOLVED · seek / total" in x for x in lines))
    assert await bot.stop() == 0
    check = await run_bot("check", "--json", "--no-notify", "-c", path, env=fakes.env())
    seek = next(a for a in json.loads(check.stdout)["accounts"] if a["name"] == "seek")
    assert seek["burn_usd_per_day"] is not None and seek["burn_usd_per_day"] >= 0
    assert seek["total_used_quota"] > 0  # the derived used figure
    assert len(notices(bot, "WARNING · seek / total")) == 1
    assert any("AI credit balance" in line for line in bot.lines)  # not "CometAPI"
