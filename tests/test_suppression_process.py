"""What inhibition and snoozes keep silent stays silent across a restart
(SIGTERM or SIGKILL) and a reload (SIGHUP): `python -m bot run` as a real process,
its messages counted where they are said (SPEC 5, "Every configured destination
hears of every firing alert" never means "of what is silenced")."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from fakes.cometapi import reply_balance
from tests.conftest import QUERY_KEY
from tests.process import BotProcess
from tests.test_buttons import CHAT, seen, telegram

ENV = {"TEST_QUERY_KEY": QUERY_KEY}

RULES = """
[[rules]]
name = "account-low"
target = "total"
below = 20
recover_above = 25

[[rules]]
name = "account-empty"
target = "total"
below = 5
recover_above = 10
severity = "critical"
"""


def state_of(folder: Path, rule: str) -> tuple[int, int, int] | None:
    """(firing, announced, held) of the rule's alert in the state file."""
    db = sqlite3.connect(folder / "state.db")
    try:
        row = db.execute(
            "SELECT firing, announced, held FROM alerts WHERE rule=?", (rule,)
        ).fetchone()
    finally:
        db.close()
    return tuple(row) if row else None


def said(bots: list[BotProcess], text: str) -> int:
    """How many messages the log notifier said with `text` in them, in all runs."""
    return sum(bot.count(text) for bot in bots)


async def restarted(bot: BotProcess, how: str, path: str) -> BotProcess:
    """The same service after `how`: a new process, or the same one reloaded."""
    if how == "sighup":
        assert bot.proc is not None
        bot.proc.send_signal(signal.SIGHUP)
        await bot.wait_for(lambda lines: any("config.reloaded" in x for x in lines))
        return bot
    if how == "sigterm":
        assert await bot.stop() == 0
    else:
        bot.kill()
        assert await bot.wait() == -signal.SIGKILL
    again = await BotProcess("run", "-c", path, env=ENV).start()
    await again.wait_for(lambda lines: any("bot.started" in x for x in lines))
    return again


@pytest.mark.parametrize("how", ["sigterm", "sigkill", "sighup"])
async def test_an_inhibited_warning_is_not_told_after_a_restart_and_fires_once_later(
    write_config, comet, how
):
    """Balance 3: a warning (< 20) and a critical (< 5) fire; only the critical is
    sent. After the restart, with the balance unchanged: nothing. When the critical
    resolves, the warning is announced once, as a fire."""
    comet.default = reply_balance(3)
    path = write_config(rules=RULES)
    first = await BotProcess("run", "-c", path, env=ENV).start()
    await first.wait_for(lambda lines: any("CRITICAL · main / total" in x for x in lines))
    await comet.wait_requests(len(comet.requests) + 2)
    runs = [first]
    before = said(runs, "notify")
    assert said(runs, "WARNING · main / total") == 0

    bot = await restarted(first, how, path)
    if bot is not first:
        runs.append(bot)
    await comet.wait_requests(len(comet.requests) + 4)  # several polls with the balance unchanged
    assert said(runs, "notify") == before, bot.stderr
    assert said(runs, "still firing") == 0

    comet.default = reply_balance(12)  # the critical resolves (>= 10), the warning still fires
    await bot.wait_for(lambda lines: any("RESOLVED · main / total" in x for x in lines))
    await comet.wait_requests(len(comet.requests) + 3)
    assert await bot.stop() == 0
    assert said(runs, "WARNING · main / total") == 1, bot.stderr
    assert said(runs, "REMINDER") == 0


@pytest.mark.parametrize("how", ["sigterm", "sigkill", "sighup"])
async def test_a_snoozed_fire_stays_silent_across_a_restart_or_reload(
    write_config, comet, tg, tmp_path, how
):
    """/snooze main 4h, then the warning fires silently; a restart or a plain
    SIGHUP with the same config sends nothing."""
    comet.default = reply_balance(50)
    path = write_config(rules=RULES, extra=telegram(tg))
    bot = await BotProcess("run", "-c", path, env=ENV).start()
    await bot.wait_for(lambda lines: any("telegram.listening" in x for x in lines))
    await tg.message(CHAT, "/snooze main 4h")
    (answer,) = await tg.wait_sent(1)
    assert seen(answer.text).startswith("Snoozed main until")
    comet.default = reply_balance(15)
    await comet.wait_requests(len(comet.requests) + 3)  # the warning fires, silenced
    assert state_of(tmp_path, "account-low") == (1, 0, 1)  # firing, not announced, held

    bot = await restarted(bot, how, path)
    await comet.wait_requests(len(comet.requests) + 4)
    assert await bot.stop() == 0
    assert [seen(m.text) for m in tg.sent] == [seen(answer.text)], bot.stderr
