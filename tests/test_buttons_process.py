"""Acting from the chat with `python -m bot run` as a real process: a snooze
pressed in Telegram survives SIGKILL and silences Slack too; quiet hours end
with a scheduled release, not at the next poll."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

from fakes.cometapi import reply_balance
from tests.conftest import ALERTS, QUERY_KEY
from tests.process import BotProcess
from tests.test_buttons import (
    CHAT,
    CRITICAL,
    WARNING,
    keyboard,
    seen,
    slack_section,
    telegram,
)

ENV = {"TEST_QUERY_KEY": QUERY_KEY}


def reminders(tg, slack) -> tuple[int, int]:
    return (
        sum("REMINDER" in seen(m.text) for m in tg.sent),
        sum("REMINDER" in str(p.blocks) for p in slack.posted),
    )


async def test_a_snooze_survives_sigkill_and_applies_to_both_notifiers(
    write_config, comet, tg, slack
):
    comet.default = reply_balance(3)
    path = write_config(rules=CRITICAL, extra=telegram(tg) + slack_section(slack))
    bot = await BotProcess("run", "-c", path, env=ENV).start()
    (alert,) = await tg.wait_sent(1, within=20)
    await slack.wait_posted(1, within=20)
    await tg.wait_sent(2, within=20)  # a reminder 2 s later: `repeat` works here
    query = await tg.callback(CHAT, alert.message_id, keyboard(alert)[1][1], username="ann")
    assert (await tg.wait_answer(query)).text.startswith("Snoozed 1 alert until")
    (edit,) = await tg.wait_edits(1)
    assert "Snoozed by @ann" in seen(edit.text)
    bot.kill()  # SIGKILL: nothing is flushed on the way out
    assert await bot.wait() == -signal.SIGKILL
    before = reminders(tg, slack)

    polls = len(comet.requests)
    bot = await BotProcess("run", "-c", path, env=ENV).start()
    await comet.wait_requests(polls + 5, within=30)  # 5 s of polls: 2 reminders each, unsnoozed
    assert reminders(tg, slack) == before
    envelope = await slack.slash("status", channel_id=ALERTS)
    (status,) = await slack.wait_responses(envelope)
    assert "Snoozed" in str(status["blocks"]) and "@ann" in str(status["blocks"])
    assert await bot.stop() == 0


async def test_quiet_hours_release_at_their_end_from_the_scheduler(write_config, comet):
    """Quiet hours that end a few seconds after start: the warning goes out at
    their end, once, in one message; the critical went out at once."""
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), (now + timedelta(seconds=6)).replace(microsecond=0)
    quiet = f'quiet_hours = "{start:%H:%M:%S}-{end:%H:%M:%S}"'
    comet.default = reply_balance(15, [{"name": "prod", "remain_quota": 1, "used_quota": 5}])
    key_critical = CRITICAL.replace('target = "total"', 'target = "key"').replace(
        "below = 5", "below = 2"
    )
    path = write_config(rules=WARNING + key_critical, bot=quiet)
    bot = await BotProcess("run", "-c", path, env=ENV).start()
    await bot.wait_for(lambda lines: any("CRITICAL · main / key prod" in x for x in lines))
    assert not any("WARNING · main / total" in x for x in bot.lines)
    await bot.wait_for(lambda lines: any("quiet.released" in x for x in lines), within=20)
    await bot.wait_for(lambda lines: any("WARNING · main / total" in x for x in lines))
    released_at = datetime.now(UTC)
    assert released_at >= end - timedelta(seconds=0.5)
    assert await bot.stop() == 0
    warnings = [x for x in bot.lines if "notify" in x and "WARNING · main / total" in x]
    assert len(warnings) == 1  # the latest held event, once, though reminders fell due meanwhile
