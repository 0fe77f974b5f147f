"""SIGHUP reloads the config (SPEC 7), with `python -m bot run` as a real
process: a lowered threshold resolves on the next poll; a broken config is
logged problem by problem and the running one keeps alerting; a chat added by
a reload hears of what fires; state and history are kept."""

from __future__ import annotations

import signal
from pathlib import Path

from fakes.cometapi import reply_balance
from tests.conftest import QUERY_KEY, TG_TOKEN
from tests.process import BotProcess

ENV = {"TEST_QUERY_KEY": QUERY_KEY}
CHAT = 111111

RULE = """
[[rules]]
name = "low"
target = "total"
below = 20
recover_above = 25
"""


def hangup(bot: BotProcess) -> None:
    assert bot.proc is not None
    bot.proc.send_signal(signal.SIGHUP)


def notices(bot: BotProcess, needle: str) -> list[str]:
    return [line for line in bot.lines if "notify" in line and needle in line]


async def test_sighup_applies_a_new_threshold_and_keeps_a_broken_config_out(write_config, comet):
    comet.default = reply_balance(15)
    path = Path(write_config(rules=RULE))
    bot = await BotProcess("run", "-c", str(path), env=ENV).start()
    await bot.wait_for(lambda lines: any("WARNING · main / total: $15.00" in x for x in lines))

    path.write_text(path.read_text().replace("below = 20\nrecover_above = 25", "below = 10"))
    hangup(bot)
    await bot.wait_for(lambda lines: any("config.reloaded" in x for x in lines))
    await bot.wait_for(lambda lines: any("RESOLVED · main / total: $15.00" in x for x in lines))

    good = path.read_text()
    path.write_text(good.replace("below = 10", 'below = "ten"\nbellow = 3'))
    hangup(bot)
    await bot.wait_for(lambda lines: any("config.kept" in x for x in lines))
    problems = [x for x in bot.lines if "config.invalid" in x]
    assert any("rules[0].below" in x for x in problems)
    assert any("rules[0].bellow" in x and "unknown key" in x for x in problems)
    comet.default = reply_balance(5)  # the running config (below 10) still alerts
    await bot.wait_for(lambda lines: any("WARNING · main / total: $5.00" in x for x in lines))

    path.write_text(good + "deep = " + "[" * 5000 + "]" * 5000 + "\n")  # tomllib recurses
    hangup(bot)
    await bot.wait_for(lambda lines: sum("config.kept" in x for x in lines) == 2)
    path.write_text(good)  # and the next SIGHUP still works
    hangup(bot)
    await bot.wait_for(lambda lines: sum("config.reloaded" in x for x in lines) == 2)
    assert await bot.stop() == 0
    assert len(notices(bot, "WARNING · main / total")) == 2  # no repeat from the reloads
    assert not any("Traceback" in x for x in bot.lines)


async def test_a_chat_added_by_a_reload_hears_of_what_fires(write_config, comet, tg):
    comet.default = reply_balance(15)
    path = Path(write_config(rules=RULE))
    bot = await BotProcess("run", "-c", str(path), env=ENV).start()
    await bot.wait_for(lambda lines: any("WARNING · main / total: $15.00" in x for x in lines))
    section = f'\n[notifiers.telegram]\ntoken = "{TG_TOKEN}"\nchat_ids = [{CHAT}]\n'
    section += f'api_url = "{tg.url}"\n'
    text = path.read_text().replace('interval = "1s"', 'interval = "2s"')
    path.write_text(text + section)
    hangup(bot)
    (told,) = await tg.wait_sent(1, within=20)
    assert "still firing" in told.text and "main / total: $15.00" in told.text
    polls = len(comet.requests)
    await comet.wait_requests(polls + 2)

    # a changed section restarts the listener: the old one stops first, since
    # Telegram ends one of two long polls on a token with 409 Conflict
    listening = len([c for c in tg.calls if c.method == "getUpdates"])
    path.write_text(path.read_text() + "allowed_users = [4242]\n")
    hangup(bot)
    await bot.wait_for(lambda lines: sum("config.reloaded" in x for x in lines) == 2)
    await tg.wait_calls("getUpdates", listening + 2, within=20)
    assert await bot.stop() == 0
    first, second = [x for x in bot.lines if "config.reloaded" in x]
    assert "restarted=telegram" in first and "notifiers=telegram" in first
    assert "restarted=telegram" in second
    assert not any("telegram.conflict" in x for x in bot.lines)
    assert not any("Traceback" in x for x in bot.lines)
