"""Telegram clients may send any callback_data (issue 20, defect 5): a forged
press is answered "Nothing to do" without a traceback, and a press acts only
on a message that was sent to the chat it came from. The real
python-telegram-bot against the fake Bot API, as in test_buttons.py."""

from __future__ import annotations

import pytest

from fakes.cometapi import reply_balance
from fakes.telegram import FakeTelegram
from tests.helpers import Clock
from tests.test_buttons import CHAT, CRITICAL, ONCALL, WARNING, keyboard, started, telegram

TOO_OLD = "This message is too old for its buttons; use /snooze <pattern> <duration>."


def forgeries(token: str) -> list[str]:
    """callback_data no button of balance-bot carries; `token`: a real one's."""
    row, part = token.split(".")
    return [
        "ack:" + "9" * 30 + ".0",  # past SQLite's integers: OverflowError
        f"ack:{2**63}.0",  # one past them
        f"ack: {row}.{part}",  # int() takes the spaces
        f"ack:{row}_0.{part}",  # and underscores
        f"ack:{row}.{part}.0",
        f"ack:{row}",
        "ack:\u0661.0",  # an Arabic-Indic one
        f"zap:{token}",  # a verb it does not know
        "",
    ]


async def pressed(tg: FakeTelegram, chat: int, message_id: int, data: str) -> str:
    answer = await tg.wait_answer(await tg.callback(chat, message_id, data))
    return answer.text or ""


async def test_forged_callback_data_is_nothing_to_do_and_no_traceback(
    make_config, comet, tg, caplog
):
    comet.default = reply_balance(3)
    app, bot = await started(make_config(CRITICAL + telegram(tg)), Clock())
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)
        ack = dict(keyboard(alert))["Ack"]
        for data in forgeries(ack.partition(":")[2]):
            answer = await pressed(tg, CHAT, alert.message_id, data)
            assert answer.startswith("Nothing to do"), (data, answer)
        await bot.deliver()
        assert await app.store.acks() == {} and tg.edits == []
        assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]
        # the real button still works
        answer = await pressed(tg, CHAT, alert.message_id, ack)
        assert answer == "Acknowledged 1 alert: no reminders until resolved."
    finally:
        await app.__aexit__(None, None, None)


@pytest.mark.parametrize("verb", ["ack", "s1h"])
async def test_a_press_acts_only_on_messages_sent_to_its_own_chat(make_config, comet, tg, verb):
    """A critical goes to the oncall group, a key warning to CHAT only: from the
    group, the token of CHAT's message acknowledges and edits nothing."""
    comet.default = reply_balance(3, [{"name": "prod", "remain_quota": 1, "used_quota": 5}])
    key_warning = (
        WARNING.replace('target = "total"', 'target = "key"')
        .replace("below = 20", "below = 2")
        .replace("recover_above = 25", "recover_above = 3")
    )
    oncall = CRITICAL.replace(
        'severity = "critical"', 'severity = "critical"\nnotify = ["telegram:oncall"]'
    )
    groups = f"[notifiers.telegram.groups]\noncall = [{ONCALL}]"
    app, bot = await started(
        make_config(oncall + key_warning + telegram(tg, extra=groups)), Clock()
    )
    try:
        await bot.poll()
        sent = {m.chat_id: m for m in await tg.wait_sent(2)}
        theirs = dict(keyboard(sent[CHAT]))
        ours = dict(keyboard(sent[ONCALL]))
        label = "Ack" if verb == "ack" else "Snooze 1h"
        assert theirs[label] != ours[label]

        answer = await pressed(tg, ONCALL, sent[ONCALL].message_id, theirs[label])
        assert answer == TOO_OLD
        await bot.deliver()
        assert await app.store.acks() == {} and await app.store.silences(bot.clock()) == []
        assert tg.edits == []  # neither CHAT's message nor the group's

        # the group's own button acts on the group's own alert, and edits only its message
        answer = await pressed(tg, ONCALL, sent[ONCALL].message_id, ours[label])
        assert answer.startswith("Acknowledged 1 alert" if verb == "ack" else "Snoozed 1 alert")
        await bot.deliver()
        acted = set(await app.store.acks()) | {
            k for s in await app.store.silences(bot.clock()) for k in s.alerts
        }
        assert {k.rule for k in acted} == {"empty"}
        assert {e.chat_id for e in await tg.wait_edits(1)} == {ONCALL}
    finally:
        await app.__aexit__(None, None, None)
