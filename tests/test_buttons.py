"""Acting from the chat, end to end: the real python-telegram-bot and slack-sdk
against the loopback fakes, the bot in-process with a clock the test moves
(so that "1h" takes no hour). Buttons, snooze and ack, messages that follow
their alert, access, /id, groups and quiet hours (SPEC 5 and 6)."""

from __future__ import annotations

import html
import re
from datetime import datetime

import pytest

from bot.app.commands import REFUSAL
from bot.app.service import App
from bot.state.types import StoreError
from fakes.cometapi import reply_balance
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram, server_error
from tests.conftest import ALERTS, APP_TOKEN, BOT_TOKEN, TG_TOKEN
from tests.helpers import FAST, Clock

CHAT, GROUP, ONCALL, STRANGER = 111111, -100222222, -100333333, 999
ANN, BOB = 4242, 5151

CRITICAL = """
[[rules]]
name = "empty"
target = "total"
below = 5
recover_above = 10
severity = "critical"
repeat = "2s"
"""
WARNING = """
[[rules]]
name = "low"
target = "total"
below = 20
recover_above = 25
repeat = "2s"
"""


def telegram(fake: FakeTelegram, chats=(CHAT,), extra: str = "") -> str:
    return f"""
[notifiers.telegram]
token = "{TG_TOKEN}"
chat_ids = [{", ".join(str(c) for c in chats)}]
api_url = "{fake.url}"
{extra}
"""


def slack_section(fake: FakeSlack, extra: str = "") -> str:
    return f"""
[notifiers.slack]
bot_token = "{BOT_TOKEN}"
app_token = "{APP_TOKEN}"
channel = "{ALERTS}"
api_url = "{fake.url}"
{extra}
"""


class Bot:
    """The App under a test's clock: `poll()` runs a cycle and delivers what is due."""

    def __init__(self, app: App, clock: Clock) -> None:
        self.app, self.clock = app, clock

    async def poll(self, after: float = 0.0) -> None:
        self.clock.advance(after)
        await self.app.cycle()
        await self.app.delivery.deliver_due()

    async def deliver(self) -> None:
        await self.app.delivery.deliver_due()


async def started(cfg, clock: Clock) -> tuple[App, Bot]:
    app = App(cfg, retry=FAST, clock=clock)
    await app.__aenter__()
    await app.start_notifiers(listen=True)
    return app, Bot(app, clock)


def seen(text: str | None) -> str:
    """Telegram HTML as a reader sees it."""
    return html.unescape(re.sub(r"<[^>]+>", "", text or ""))


def keyboard(message) -> list[tuple[str, str]]:
    rows = (message.reply_markup or {}).get("inline_keyboard", [])
    return [(b["text"], b["callback_data"]) for row in rows for b in row]


# --- Telegram -------------------------------------------------------------------------


async def test_telegram_snooze_1h_stops_reminders_then_one_reminder_and_repeat_resumes(
    make_config, comet, tg
):
    comet.default = reply_balance(3)
    clock = Clock()
    app, bot = await started(make_config(CRITICAL + telegram(tg)), clock)
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)
        buttons = keyboard(alert)
        assert [label for label, _ in buttons] == ["Snooze 1h", "Snooze 1d", "Ack"]
        assert all(len(data.encode()) <= 64 for _, data in buttons)

        query = await tg.callback(CHAT, alert.message_id, buttons[0][1], username="ann")
        answer = await tg.wait_answer(query)
        assert answer.text and answer.text.startswith("Snoozed 1 alert until ")
        await bot.deliver()
        (edit,) = await tg.wait_edits(1)
        assert edit.message_id == alert.message_id
        assert re.search(r"🔕 Snoozed by @ann until \d{4}-\d\d-\d\d \d\d:\d\d UTC", seen(edit.text))
        assert keyboard(tg.messages[(CHAT, alert.message_id)]) == buttons  # still pressable

        for _ in range(5):  # ten seconds of polls: five reminders due without the snooze
            await bot.poll(after=2)
        assert len(tg.sent) == 1

        await bot.poll(after=3600)  # the snooze has ended: one reminder at once
        assert len(tg.sent) == 2 and "REMINDER · CRITICAL" in seen(tg.sent[1].text)
        assert keyboard(tg.sent[1])  # a reminder carries buttons too
        await bot.poll(after=1)
        assert len(tg.sent) == 2
        await bot.poll(after=1.5)  # then every `repeat` again
        assert len(tg.sent) == 3
    finally:
        await app.__aexit__(None, None, None)


async def test_telegram_ack_stops_reminders_until_resolved_and_the_message_follows(
    make_config, comet, tg
):
    comet.default = reply_balance(3)
    clock = Clock()
    app, bot = await started(make_config(CRITICAL + telegram(tg)), clock)
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)
        ack = dict((label, data) for label, data in keyboard(alert))["Ack"]
        answer = await tg.wait_answer(await tg.callback(CHAT, alert.message_id, ack))
        assert answer.text == "Acknowledged 1 alert: no reminders until resolved."
        await bot.deliver()
        (edit,) = await tg.wait_edits(1)
        assert "☑️ Acknowledged by Tester" in seen(edit.text)
        for _ in range(4):
            await bot.poll(after=3)
        assert len(tg.sent) == 1

        comet.default = reply_balance(50)
        await bot.poll(after=1)
        assert "RESOLVED · main / total: $50.00" in seen(tg.sent[1].text)
        assert not keyboard(tg.sent[1])  # nothing to act on in a resolve
        edits = await tg.wait_edits(2)
        resolved = tg.messages[(CHAT, alert.message_id)]
        assert edits[-1].message_id == alert.message_id
        assert "✅ Resolved" in seen(resolved.text) and resolved.reply_markup is None

        comet.default = reply_balance(2)  # a new fire is announced, with new buttons
        await bot.poll(after=1)
        assert len(tg.sent) == 3 and "CRITICAL · main / total: $2.00" in seen(tg.sent[2].text)
        assert keyboard(tg.sent[2]) and keyboard(tg.sent[2]) != keyboard(alert)
        await bot.poll(after=2.5)
        assert "REMINDER" in seen(tg.sent[3].text)  # the ack ended with the resolve
    finally:
        await app.__aexit__(None, None, None)


@pytest.mark.parametrize(
    ("access", "presser"),
    [
        (f"allowed_users = [{ANN}]", BOB),  # an allowed chat, a user not listed
        (f"allowed_chats = [{GROUP}]", ANN),  # alerts go to CHAT, but only GROUP may act
    ],
)
async def test_a_press_from_someone_not_allowed_changes_nothing(
    make_config, comet, tg, access, presser, caplog
):
    comet.default = reply_balance(3)
    clock = Clock()
    app, bot = await started(make_config(CRITICAL + telegram(tg, extra=access)), clock)
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)
        snooze = keyboard(alert)[0][1]
        answer = await tg.wait_answer(
            await tg.callback(CHAT, alert.message_id, snooze, user_id=presser)
        )
        assert answer.text == REFUSAL and not re.search(r"\d", answer.text)
        assert await app.store.silences(clock()) == []
        await bot.poll(after=2.5)
        assert len(tg.sent) == 2 and "REMINDER" in seen(tg.sent[1].text)  # not snoozed
        assert tg.edits == []
    finally:
        await app.__aexit__(None, None, None)
    (refused,) = [r for r in caplog.records if r.getMessage() == "telegram.refused"]
    assert refused.fields["user_id"] == presser and refused.fields["command"] == "button"


async def test_id_answers_anyone_with_exactly_the_two_ids(make_config, comet, tg):
    app, _ = await started(make_config(CRITICAL + telegram(tg)), Clock())
    try:
        await tg.message(STRANGER, "/id", user_id=ANN)
        (answer,) = await tg.wait_sent(1)
        assert answer.text == f"<b>chat {STRANGER} · user {ANN}</b>"
        await tg.message(STRANGER, "/status", user_id=ANN)
        refusal = (await tg.wait_sent(2))[1]
        assert REFUSAL in refusal.text
    finally:
        await app.__aexit__(None, None, None)


async def test_snooze_and_unsnooze_commands_and_status_lists_them(make_config, comet, tg):
    comet.default = reply_balance(3)
    clock = Clock()
    app, bot = await started(make_config(CRITICAL + telegram(tg)), clock)
    try:
        await bot.poll()
        await tg.wait_sent(1)
        await tg.message(CHAT, "/snooze main/* 4h")
        reply = (await tg.wait_sent(2))[1].text
        assert "Snoozed main/* until " in reply and "1 alert firing now" in reply
        await tg.message(CHAT, "/snooze nothing-like-this 1h")
        reply = (await tg.wait_sent(3))[2].text
        assert "nothing firing matches it now" in reply
        await tg.message(CHAT, "/snooze main soon")
        assert "is not a duration" in (await tg.wait_sent(4))[3].text
        await bot.poll(after=3)
        assert len(tg.sent) == 4  # no reminder: snoozed

        await tg.message(CHAT, "/status")
        status = (await tg.wait_sent(5))[4].text
        assert "🔕 Snoozed" in status and "main/*" in status and "by Tester" in status
        await tg.message(CHAT, "/digest")  # the digest lists firing and snoozed alerts
        digest = seen((await tg.wait_sent(6))[5].text)
        assert "Firing: 1" in digest
        assert re.search(r"Snoozed: main / total \(empty\) until \d{4}-\d\d-\d\d \d\d:\d\d", digest)

        await tg.message(CHAT, "/unsnooze main/*")
        assert "Ended 1 snooze" in (await tg.wait_sent(7))[6].text
        await bot.poll(after=0.5)  # the first poll after it ends: one reminder
        assert "REMINDER · CRITICAL" in seen(tg.sent[7].text)
    finally:
        await app.__aexit__(None, None, None)


async def test_a_group_rule_reaches_only_the_group_and_group_chats_may_use_commands(
    make_config, comet, tg
):
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
        sent = await tg.wait_sent(2)
        by_chat = {m.chat_id: m.text for m in sent}
        assert set(by_chat) == {CHAT, ONCALL}
        assert "CRITICAL" in by_chat[ONCALL] and "WARNING" not in by_chat[ONCALL]
        assert "CRITICAL" not in by_chat[CHAT]
        await tg.message(ONCALL, "/status", user_id=ANN)
        assert "firing" in (await tg.wait_sent(3))[2].text
    finally:
        await app.__aexit__(None, None, None)


async def test_warning_and_critical_in_one_poll_announce_only_the_critical(make_config, comet, tg):
    comet.default = reply_balance(3)
    app, bot = await started(make_config(WARNING + CRITICAL + telegram(tg)), Clock())
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)
        assert "CRITICAL · main / total" in seen(alert.text) and "WARNING" not in alert.text
        await bot.poll(after=2.5)
        assert "REMINDER · CRITICAL" in seen(tg.sent[1].text) and "WARNING" not in tg.sent[1].text
    finally:
        await app.__aexit__(None, None, None)


async def test_quiet_hours_hold_a_warning_let_a_critical_through_and_release_at_their_end(
    make_config, comet, tg
):
    clock = Clock(datetime.fromisoformat("2026-03-10T23:00:00+00:00"))
    comet.default = reply_balance(15)
    quiet = 'quiet_hours = "22:00-07:00"'
    key_rule = CRITICAL.replace('target = "total"', 'target = "key"').replace(
        "below = 5", "below = 2"
    )
    cfg = make_config(WARNING + key_rule + telegram(tg), bot=quiet)
    app, bot = await started(cfg, clock)
    try:
        await bot.poll()
        assert tg.sent == []  # the warning waits
        comet.default = reply_balance(15, [{"name": "prod", "remain_quota": 1, "used_quota": 5}])
        await bot.poll(after=60)
        (critical,) = await tg.wait_sent(1)
        assert (
            "CRITICAL · main / key prod" in seen(critical.text) and "WARNING" not in critical.text
        )
        for _ in range(3):
            await bot.poll(after=3)  # warning reminders are held too; critical ones go
        assert all("WARNING" not in m.text for m in tg.sent)
        await app.tell_missed()  # a restart now: what is held is not "missed"
        await bot.deliver()
        assert all("WARNING" not in m.text for m in tg.sent)

        clock.now = datetime.fromisoformat("2026-03-11T07:00:00+00:00")
        await app.release_held()
        await bot.deliver()
        released = seen(tg.sent[-1].text)
        # one message: the latest held event of the warning alone, told as the fire the
        # chat never saw (before: "REMINDER · WARNING", a reminder of nothing it was told)
        assert released.count("WARNING") == 1 and "🔔 Firing\nWARNING · main / total" in released
        assert keyboard(tg.sent[-1])
        await app.release_held()
        await bot.deliver()
        assert seen(tg.sent[-1].text) == released  # released once
    finally:
        await app.__aexit__(None, None, None)


# --- Slack ----------------------------------------------------------------------------


def actions_of(blocks) -> list[dict]:
    return [e for b in blocks if b.get("type") == "actions" for e in b["elements"]]


async def test_slack_snooze_button_acks_in_time_updates_the_message_and_stops_reminders(
    make_config, comet, slack
):
    comet.default = reply_balance(3)
    clock = Clock()
    app, bot = await started(make_config(CRITICAL + slack_section(slack)), clock)
    try:
        await slack.wait_connections(1)
        await bot.poll()
        (alert,) = await slack.wait_posted(1)
        buttons = actions_of(alert.blocks)
        assert [b["text"]["text"] for b in buttons] == ["Snooze 1h", "Snooze 1d", "Ack"]
        envelope = await slack.block_action(ALERTS, alert.ts, "s1h", buttons[0]["value"])
        assert not (await slack.wait_ack(envelope)).late
        (response,) = await slack.wait_responses(envelope)
        assert response["response_type"] == "ephemeral"
        assert response["text"].startswith("Snoozed 1 alert until")
        await bot.deliver()
        (update,) = await slack.wait_updated(1)
        assert update.ts == alert.ts
        assert "🔕 Snoozed by @someone until" in str(update.blocks)
        assert actions_of(update.blocks)  # still pressable while it fires

        for _ in range(3):
            await bot.poll(after=2.5)
        assert len(slack.posted) == 1
        comet.default = reply_balance(50)
        await bot.poll(after=1)
        assert "main / total: $50.00 (at or above" in str(slack.posted[1].blocks)
        updated = await slack.wait_updated(2)
        assert updated[-1].ts == alert.ts and actions_of(updated[-1].blocks) == []
        assert "✅ Resolved" in str(updated[-1].blocks)
        assert slack.late_acks() == []
    finally:
        await app.__aexit__(None, None, None)


async def test_slack_reminders_resume_once_after_a_snooze_and_ack_stops_them(
    make_config, comet, slack
):
    comet.default = reply_balance(3)
    clock = Clock()
    app, bot = await started(make_config(CRITICAL + slack_section(slack)), clock)
    try:
        await slack.wait_connections(1)
        await bot.poll()
        (alert,) = await slack.wait_posted(1)
        snooze, _, ack = actions_of(alert.blocks)
        await slack.wait_responses(
            await slack.block_action(ALERTS, alert.ts, "s1h", snooze["value"])
        )
        await bot.deliver()
        await bot.poll(after=2.5)
        assert len(slack.posted) == 1  # snoozed
        await bot.poll(after=3600)  # it ended: one reminder
        assert len(slack.posted) == 2 and "REMINDER · CRITICAL" in str(slack.posted[1].blocks)
        (answer,) = await slack.wait_responses(
            await slack.block_action(ALERTS, alert.ts, "ack", ack["value"])
        )
        assert answer["text"].startswith("Acknowledged")
        await bot.deliver()
        assert "Acknowledged by @someone" in str(slack.updated[-1].blocks)
        for _ in range(3):
            await bot.poll(after=2.5)
        assert len(slack.posted) == 2  # no reminder after the ack
        comet.default = reply_balance(50)
        await bot.poll(after=1)
        assert "RESOLVED" in str(slack.posted[2].blocks)
    finally:
        await app.__aexit__(None, None, None)


async def test_a_button_pressed_after_a_restart_still_acts(make_config, comet, tg):
    comet.default = reply_balance(3)
    clock = Clock()
    cfg = make_config(CRITICAL + telegram(tg))
    app, bot = await started(cfg, clock)
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)
    finally:
        await app.__aexit__(None, None, None)
    app, bot = await started(cfg, clock)  # the button's short id is resolved from the file
    try:
        answer = await tg.wait_answer(
            await tg.callback(CHAT, alert.message_id, keyboard(alert)[0][1])
        )
        assert answer.text and answer.text.startswith("Snoozed 1 alert until ")
        await bot.deliver()
        (edit,) = await tg.wait_edits(1)
        assert edit.message_id == alert.message_id and "🔕 Snoozed by" in seen(edit.text)
        await bot.poll(after=3)
        assert len(tg.sent) == 1
    finally:
        await app.__aexit__(None, None, None)


async def test_slack_press_from_a_channel_or_user_not_allowed_is_refused(make_config, comet, slack):
    comet.default = reply_balance(3)
    clock = Clock()
    section = slack_section(slack, extra='allowed_users = ["U0ANN0001"]')
    app, bot = await started(make_config(CRITICAL + section), clock)
    try:
        await slack.wait_connections(1)
        await bot.poll()
        (alert,) = await slack.wait_posted(1)
        value = actions_of(alert.blocks)[2]["value"]
        envelope = await slack.block_action(ALERTS, alert.ts, "ack", value, user_id="U0BOB0001")
        (response,) = await slack.wait_responses(envelope)
        assert response["text"] == REFUSAL
        assert await app.store.acks() == {}
        await bot.poll(after=2.5)
        assert "REMINDER" in str(slack.posted[1].blocks)
    finally:
        await app.__aexit__(None, None, None)


async def test_a_snooze_pressed_in_telegram_silences_slack_too(make_config, comet, tg, slack):
    comet.default = reply_balance(3)
    clock = Clock()
    app, bot = await started(make_config(CRITICAL + telegram(tg) + slack_section(slack)), clock)
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)
        await slack.wait_posted(1)
        await tg.wait_answer(await tg.callback(CHAT, alert.message_id, keyboard(alert)[1][1]))
        for _ in range(3):
            await bot.poll(after=2.5)
        assert (len(tg.sent), len(slack.posted)) == (1, 1)
        envelope = await slack.slash("status", channel_id=ALERTS)
        (status,) = await slack.wait_responses(envelope)
        assert "Snoozed" in str(status["blocks"]) and "by Tester" in str(status["blocks"])
    finally:
        await app.__aexit__(None, None, None)


async def test_an_unchanged_edit_is_done_and_a_deleted_message_fails_alone(
    make_config, comet, tg, caplog
):
    comet.default = reply_balance(3)
    clock = Clock()
    app, bot = await started(make_config(CRITICAL + telegram(tg)), clock)
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)
        ack = keyboard(alert)[2][1]
        for _ in (1, 2):  # the second edit says what the first did
            await tg.wait_answer(await tg.callback(CHAT, alert.message_id, ack))
            await bot.deliver()
        assert len(tg.edits) == 1
        refused = [c for c in tg.calls if c.method == "editMessageText" and c.status != 200]
        assert len(refused) == 1  # "message is not modified"
        assert await app.store.backlog() == {}

        del tg.messages[(CHAT, alert.message_id)]  # someone deleted it
        comet.default = reply_balance(50)
        await bot.poll(after=1)
        assert "RESOLVED" in seen(tg.sent[-1].text)  # the resolve itself went out
        assert await app.store.backlog() == {}
        assert app.destinations[("telegram", str(CHAT))].ok is True
    finally:
        await app.__aexit__(None, None, None)
    (failed,) = [r for r in caplog.records if r.getMessage() == "delivery.edit_failed"]
    assert "Message to edit not found" in failed.fields["reason"]


async def test_an_edit_that_keeps_failing_holds_back_no_alert_and_goes_after_a_day(
    make_config, comet, tg, caplog
):
    comet.default = reply_balance(3)
    clock = Clock()
    deeper = CRITICAL.replace('"empty"', '"deeper"').replace("below = 5", "below = 1")
    deeper = deeper.replace("recover_above = 10", "recover_above = 2")
    app, bot = await started(make_config(CRITICAL + deeper + telegram(tg)), clock)
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)
        tg.fail_always("editMessageText", server_error(502))
        await tg.wait_answer(await tg.callback(CHAT, alert.message_id, keyboard(alert)[2][1]))
        await bot.deliver()
        assert await app.store.backlog() == {"telegram": 1}  # the edit, waiting to retry

        comet.default = reply_balance(0.5)  # a new alert while the edit keeps failing
        await bot.poll(after=1)
        fired = await tg.wait_sent(2)
        assert "CRITICAL · main / total" in seen(fired[1].text) and "$1.00" in seen(fired[1].text)

        clock.advance(25 * 3600)  # a day on, the edit is given up, not retried forever
        await bot.deliver()
        assert await app.store.backlog() == {}
        assert len(tg.sent) == 2 and tg.edits == []
    finally:
        await app.__aexit__(None, None, None)
    assert any(r.getMessage() == "delivery.edit_failed" for r in caplog.records)


async def test_an_acknowledged_alert_gets_no_reminder_when_its_snooze_ends(make_config, comet, tg):
    comet.default = reply_balance(3)
    clock = Clock()
    app, bot = await started(make_config(CRITICAL + telegram(tg)), clock)
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)
        ack, snooze = keyboard(alert)[2][1], keyboard(alert)[0][1]
        await tg.wait_answer(await tg.callback(CHAT, alert.message_id, ack))
        await tg.wait_answer(await tg.callback(CHAT, alert.message_id, snooze))
        await bot.poll(after=3600)
        await bot.poll(after=3)
        assert len(tg.sent) == 1  # neither the snooze's end nor `repeat` reminds
        comet.default = reply_balance(50)
        await bot.poll(after=1)
        assert "RESOLVED" in seen(tg.sent[-1].text)
    finally:
        await app.__aexit__(None, None, None)


async def test_a_warning_whose_held_fire_was_left_out_fires_not_reminds_later(
    make_config, comet, tg
):
    clock = Clock(datetime.fromisoformat("2026-03-10T23:00:00+00:00"))
    comet.default = reply_balance(15)  # the warning fires: held for quiet hours
    cfg = make_config(
        WARNING.replace('repeat = "2s"', 'repeat = "1d"')
        + CRITICAL.replace('repeat = "2s"', "")
        + telegram(tg),
        bot='quiet_hours = "22:00-07:00"',
    )
    app, bot = await started(cfg, clock)
    try:
        await bot.poll()
        comet.default = reply_balance(3)  # a critical: at once; it inhibits the warning
        await bot.poll(after=60)
        await tg.wait_sent(1)
        clock.now = datetime.fromisoformat("2026-03-11T07:00:00+00:00")
        await app.release_held()  # the held warning fire no longer holds: left out
        await bot.deliver()
        assert len(tg.sent) == 1
        comet.default = reply_balance(15)  # the critical resolves, the warning still fires
        await bot.poll(after=60)
        texts = [seen(m.text) for m in tg.sent[1:]]
        assert any("RESOLVED · main / total" in t for t in texts)
        assert any("WARNING · main / total" in t and "REMINDER" not in t for t in texts)
        assert not any("REMINDER" in t for t in texts)
    finally:
        await app.__aexit__(None, None, None)


async def test_an_acked_alert_is_not_fired_again_after_a_held_catch_up_is_left_out(
    make_config, comet, tg
):
    """A chat added in quiet hours gets its catch-up held; the alert is acked in
    the chat that heard it. The release leaves the catch-up out, and the alert,
    announced elsewhere, is not fired again to everyone."""
    clock = Clock(datetime.fromisoformat("2026-03-10T21:00:00+00:00"))
    comet.default = reply_balance(15)
    rules = WARNING.replace('repeat = "2s"', "")
    app, bot = await started(make_config(rules + telegram(tg)), clock)
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)  # told to CHAT before quiet hours
        clock.now = datetime.fromisoformat("2026-03-10T23:00:00+00:00")
        quiet = 'quiet_hours = "22:00-07:00"'
        await app.reload(make_config(rules + telegram(tg, chats=(CHAT, GROUP)), bot=quiet))
        await bot.deliver()
        assert len(tg.sent) == 1  # GROUP's catch-up is held
        await tg.wait_answer(await tg.callback(CHAT, alert.message_id, keyboard(alert)[2][1]))
        await bot.deliver()
        clock.now = datetime.fromisoformat("2026-03-11T07:00:00+00:00")
        await app.release_held()
        await bot.deliver()
        await bot.poll(after=60)
        assert not any("WARNING · main / total" in seen(m.text) for m in tg.sent[1:])
    finally:
        await app.__aexit__(None, None, None)


async def test_quiet_hours_removed_by_a_reload_release_what_they_held(
    make_config, comet, tg, tmp_path
):
    clock = Clock(datetime.fromisoformat("2026-03-10T23:00:00+00:00"))
    comet.default = reply_balance(15)
    cfg = make_config(WARNING + telegram(tg), bot='quiet_hours = "22:00-07:00"')
    app, bot = await started(cfg, clock)
    try:
        await bot.poll()
        assert tg.sent == []
        await app.reload(make_config(WARNING + telegram(tg)))
        await bot.deliver()
        (released,) = await tg.wait_sent(1)
        assert "WARNING · main / total" in seen(released.text)
    finally:
        await app.__aexit__(None, None, None)


async def test_a_still_firing_warning_waits_for_the_end_of_quiet_hours(make_config, comet, tg):
    clock = Clock(datetime.fromisoformat("2026-03-10T23:00:00+00:00"))
    comet.default = reply_balance(15, [{"name": "prod", "remain_quota": 1, "used_quota": 5}])
    key_rule = CRITICAL.replace('target = "total"', 'target = "key"').replace(
        "below = 5", "below = 2"
    )
    rules = WARNING.replace('repeat = "2s"', "") + key_rule.replace('repeat = "2s"', "")
    app, bot = await started(make_config(rules + telegram(tg)), clock)
    try:
        await bot.poll()  # both fire and are told before quiet hours are configured
        await tg.wait_sent(1)
        quiet = 'quiet_hours = "22:00-07:00"'
        await app.reload(make_config(rules + telegram(tg, chats=(CHAT, GROUP)), bot=quiet))
        await bot.deliver()
        (now,) = [seen(m.text) for m in tg.sent if m.chat_id == GROUP]
        assert "CRITICAL · main / key prod" in now and "WARNING" not in now
        clock.now = datetime.fromisoformat("2026-03-11T07:00:00+00:00")
        await app.release_held()
        await bot.deliver()
        later = [seen(m.text) for m in tg.sent if m.chat_id == GROUP][1:]
        assert len(later) == 1 and "WARNING · main / total" in later[0]
        assert "CRITICAL" not in later[0]
    finally:
        await app.__aexit__(None, None, None)


async def test_each_part_of_a_split_message_has_buttons_for_its_own_alerts(make_config, comet, tg):
    names = [f"prod-{i:03d}-{'x' * 40}" for i in range(150)]
    comet.default = reply_balance(
        100, [{"name": n, "remain_quota": 1, "used_quota": 5} for n in names]
    )
    key_rule = CRITICAL.replace('target = "total"', 'target = "key"').replace(
        "below = 5", "below = 2"
    )
    clock = Clock()
    app, bot = await started(make_config(key_rule + telegram(tg)), clock)
    try:
        await bot.poll()
        parts = list(tg.sent)
        assert len(parts) > 2 and all(keyboard(p) for p in parts)
        data = [keyboard(p)[0][1] for p in parts]
        assert len(set(data)) == len(parts)  # each part names itself
        second = parts[1]
        in_second = {n for n in names if n in seen(second.text)}
        await tg.wait_answer(await tg.callback(CHAT, second.message_id, data[1]))
        (silence,) = await app.store.silences(clock())
        assert {k.subject for k in silence.alerts} == in_second
        await bot.deliver()
        (edit,) = await tg.wait_edits(1)
        assert edit.message_id == second.message_id and len(edit.text or "") <= 4096
        await bot.poll(after=2.5)  # reminders: for every alert but the second part's
        reminded = "".join(seen(m.text) for m in tg.sent[len(parts) :])
        assert not any(n in reminded for n in in_second)
        assert all(n in reminded for n in names if n not in in_second)
    finally:
        await app.__aexit__(None, None, None)


async def test_slack_id_answers_anyone_and_other_words_refuse_strangers(make_config, comet, slack):
    app, _ = await started(make_config(CRITICAL + slack_section(slack)), Clock())
    try:
        await slack.wait_connections(1)
        envelope = await slack.slash("id", channel_id="C0ELSEWHERE", user_id="U0ANN0001")
        (answer,) = await slack.wait_responses(envelope)
        assert answer["text"] == "chat C0ELSEWHERE · user U0ANN0001"
        envelope = await slack.slash("status", channel_id="C0ELSEWHERE", user_id="U0ANN0001")
        (refusal,) = await slack.wait_responses(envelope)
        assert refusal["text"] == REFUSAL
    finally:
        await app.__aexit__(None, None, None)


async def test_a_press_the_bot_cannot_store_is_still_answered_and_logged(
    make_config, comet, tg, caplog, monkeypatch
):
    comet.default = reply_balance(3)
    app, bot = await started(make_config(CRITICAL + telegram(tg)), Clock())
    try:
        await bot.poll()
        (alert,) = await tg.wait_sent(1)

        def broken(*_: object) -> None:
            raise StoreError("state file is read-only")

        monkeypatch.setattr(app.store, "add_acks", broken)
        answer = await tg.wait_answer(
            await tg.callback(CHAT, alert.message_id, keyboard(alert)[2][1])
        )
        assert answer.text == "balance-bot could not do that; the reason is in its log."
    finally:
        await app.__aexit__(None, None, None)
    (failed,) = [r for r in caplog.records if r.getMessage() == "telegram.press_failed"]
    assert "read-only" in str(failed.exc_info[1])
