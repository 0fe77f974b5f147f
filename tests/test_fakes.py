"""The fakes' newer behaviours (buttons, edits, callbacks, daily quota, webhooks),
driven by the real client libraries where they can be."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest

from fakes.cometapi import FakeCometAPI, daily_entry, reply_balance, reply_json
from fakes.slack import (
    BOT_ID as SLACK_BOT_ID,
)
from fakes.slack import (
    FakeSlack,
    message_problem,
)
from fakes.telegram import (
    EDIT_NOT_FOUND,
    NOT_MODIFIED,
    QUERY_TOO_OLD,
    FakeTelegram,
    bad_request,
)
from fakes.webhook import FakeWebhook, redirect, reply_status, signature
from tests.conftest import QUERY_KEY

TG_TOKEN = "123456789:AAFakeTokenForTests_abcdefghijklmnopq"
USER_CHAT, GROUP_CHAT = 111111, -100222222
BOT_TOKEN = "xoxb-test-fakes-bot-token-123"
APP_TOKEN = "xapp-1-test-fakes-app-token-456"
ALERTS = "C0ALERTS01"


# --- fixtures and helpers ---------------------------------------------------------


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram(TG_TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    client = Bot(TG_TOKEN, base_url=f"{tg.url}/bot")
    await client.initialize()
    yield client
    await client.shutdown()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(BOT_TOKEN, APP_TOKEN)
    fake.add_channel(ALERTS, "alerts")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def hook() -> AsyncIterator[FakeWebhook]:
    fake = FakeWebhook()
    await fake.start()
    yield fake
    await fake.stop()


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(d.upper(), callback_data=d) for d in data]])


def buttons(count: int) -> InlineKeyboardMarkup:
    """`count` buttons in rows of 8."""
    flat = [InlineKeyboardButton(str(i), callback_data=f"b{i}") for i in range(count)]
    return InlineKeyboardMarkup([flat[i : i + 8] for i in range(0, count, 8)])


def as_json(markup: InlineKeyboardMarkup) -> dict[str, Any]:
    return json.loads(markup.to_json())


def button(action_id: str, value: str = "v", label: str = "Press") -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label},
        "value": value,
    }


def alert_blocks(*buttons: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Balance low*: $4.20"}},
        {"type": "actions", "elements": list(buttons)},
    ]


# --- Telegram: inline keyboards and edits -------------------------------------------


async def test_telegram_keyboard_is_kept_edited_and_removed(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(USER_CHAT, "Low balance", reply_markup=keyboard("snooze:1h"))
    assert sent.reply_markup == keyboard("snooze:1h")
    (record,) = tg.sent
    assert record.message_id == sent.message_id
    assert record.reply_markup == as_json(keyboard("snooze:1h"))
    assert tg.messages[(USER_CHAT, sent.message_id)].reply_markup == record.reply_markup

    edited = await bot.edit_message_text(
        "Snoozed for 1h",
        chat_id=USER_CHAT,
        message_id=sent.message_id,
        reply_markup=keyboard("unsnooze"),
    )
    assert not isinstance(edited, bool)
    assert edited.text == "Snoozed for 1h" and edited.edit_date is not None
    assert edited.reply_markup == keyboard("unsnooze")
    (edit,) = await tg.wait_edits(1)
    assert (edit.method, edit.chat_id, edit.message_id) == (
        "editMessageText",
        USER_CHAT,
        sent.message_id,
    )
    assert edit.reply_markup == as_json(keyboard("unsnooze"))

    # the same content and keyboard again: Telegram refuses
    with pytest.raises(BadRequest, match="Message is not modified: specified new message"):
        await bot.edit_message_text(
            "Snoozed for 1h",
            chat_id=USER_CHAT,
            message_id=sent.message_id,
            reply_markup=keyboard("unsnooze"),
        )
    # the same text without reply_markup is a change: it removes the keyboard
    bare = await bot.edit_message_text("Snoozed for 1h", USER_CHAT, sent.message_id)
    assert not isinstance(bare, bool) and bare.reply_markup is None
    assert tg.messages[(USER_CHAT, sent.message_id)].reply_markup is None

    back = await bot.edit_message_reply_markup(
        USER_CHAT, sent.message_id, reply_markup=keyboard("snooze:1h")
    )
    assert not isinstance(back, bool) and back.reply_markup == keyboard("snooze:1h")
    assert back.text == "Snoozed for 1h"
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(
            USER_CHAT, sent.message_id, reply_markup=keyboard("snooze:1h")
        )

    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER_CHAT, message_id=sent.message_id + 99)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", chat_id=GROUP_CHAT, message_id=sent.message_id)

    assert [e.method for e in tg.edits] == [
        "editMessageText",
        "editMessageText",
        "editMessageReplyMarkup",
    ]
    statuses = [c.status for c in tg.calls if c.method.startswith("edit")]
    assert statuses == [200, 400, 200, 200, 400, 400, 400]


async def test_telegram_refuses_bad_buttons(tg: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(USER_CHAT, "64 bytes fit", reply_markup=keyboard("x" * 64))
    await bot.send_message(USER_CHAT, "32 two-byte letters fit", reply_markup=keyboard("é" * 32))
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(USER_CHAT, "65 bytes", reply_markup=keyboard("x" * 65))
    with pytest.raises(BadRequest, match="Button_data_invalid"):  # 33 letters, 66 bytes
        await bot.send_message(USER_CHAT, "bytes, not letters", reply_markup=keyboard("é" * 33))
    await bot.send_message(USER_CHAT, "100 buttons fit", reply_markup=buttons(100))
    with pytest.raises(BadRequest, match="Reply markup is too long"):
        await bot.send_message(USER_CHAT, "too many", reply_markup=buttons(101))
    fine = await bot.send_message(USER_CHAT, "fine", reply_markup=keyboard("ok"))
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.edit_message_reply_markup(
            USER_CHAT, fine.message_id, reply_markup=keyboard("y" * 65)
        )

    texts = ["64 bytes fit", "32 two-byte letters fit", "100 buttons fit", "fine"]
    assert [s.text for s in tg.sent] == texts
    statuses = [c.status for c in tg.calls if c.method == "sendMessage"]
    assert statuses == [200, 200, 400, 400, 200, 400, 200]
    assert tg.messages[(USER_CHAT, fine.message_id)].reply_markup == as_json(keyboard("ok"))


async def test_telegram_callback_is_fetched_and_answered_once(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(GROUP_CHAT, "Low balance", reply_markup=keyboard("snooze:1h"))
    query_id = await tg.callback(GROUP_CHAT, sent.message_id, "snooze:1h", user_id=4242)

    (update,) = await bot.get_updates(timeout=0)
    query = update.callback_query
    assert query is not None and query.id == query_id
    assert query.data == "snooze:1h" and query.from_user.id == 4242
    assert query.message is not None and query.message.message_id == sent.message_id
    assert query.message.chat.id == GROUP_CHAT
    assert query.message.reply_markup == keyboard("snooze:1h")

    assert await bot.answer_callback_query(query_id, text="Snoozed", show_alert=True)
    answer = await tg.wait_answer(query_id)
    assert (answer.text, answer.show_alert) == ("Snoozed", True)
    assert 0 <= answer.delay < 10
    with pytest.raises(BadRequest, match="Query is too old and response timeout expired"):
        await bot.answer_callback_query(query_id)
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query("123456789")
    assert [c.status for c in tg.calls if c.method == "answerCallbackQuery"] == [200, 400, 400]

    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == ()
    assert tg.offset == update.update_id + 1
    with pytest.raises(KeyError):
        await tg.callback(GROUP_CHAT, sent.message_id + 99, "snooze:1h")


async def test_telegram_withholds_callbacks_the_client_did_not_ask_for(
    tg: FakeTelegram, bot: Bot
) -> None:
    sent = await bot.send_message(USER_CHAT, "Low balance", reply_markup=keyboard("snooze:1h"))
    poll = asyncio.create_task(bot.get_updates(timeout=10, allowed_updates=["message"]))
    await tg.wait_calls("getUpdates", 1)
    await tg.callback(USER_CHAT, sent.message_id, "snooze:1h")
    await bot.get_me()  # a round trip: the long poll has seen the callback by now
    assert not poll.done()  # it did not wake up for an update it may not deliver
    await tg.message(USER_CHAT, "/status")
    (only,) = await poll
    assert only.message is not None and only.callback_query is None
    assert tg.allowed_updates == ["message"]
    # Telegram remembers the last allowed_updates until a call names others
    assert await bot.get_updates(offset=only.update_id + 1, timeout=0) == ()
    await tg.callback(USER_CHAT, sent.message_id, "snooze:2h")
    (pressed,) = await bot.get_updates(timeout=0, allowed_updates=[])
    assert pressed.callback_query is not None and pressed.callback_query.data == "snooze:2h"


async def test_telegram_scripting_covers_the_new_methods(tg: FakeTelegram, bot: Bot) -> None:
    mine = await bot.send_message(USER_CHAT, "one", reply_markup=keyboard("a"))
    theirs = await bot.send_message(GROUP_CHAT, "two", reply_markup=keyboard("b"))
    tg.fail(
        "editMessageText", bad_request("Bad Request: message can't be edited"), chat_id=GROUP_CHAT
    )
    tg.fail("answerCallbackQuery", bad_request(QUERY_TOO_OLD), chat_id=GROUP_CHAT)

    await bot.edit_message_text("one, edited", USER_CHAT, mine.message_id)
    with pytest.raises(BadRequest, match="Message can't be edited"):
        await bot.edit_message_text("two, edited", GROUP_CHAT, theirs.message_id)
    await bot.edit_message_text("two, edited", GROUP_CHAT, theirs.message_id)  # once only

    first = await tg.callback(USER_CHAT, mine.message_id, "a")
    second = await tg.callback(GROUP_CHAT, theirs.message_id, "b")
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(second)  # scripted by the chat the button is in
    await bot.answer_callback_query(first)
    assert list(tg.answers) == [first]

    release = tg.hang("editMessageReplyMarkup")
    stuck = asyncio.create_task(bot.edit_message_reply_markup(USER_CHAT, mine.message_id))
    await tg.wait_calls("editMessageReplyMarkup", 1)
    release.set()
    with pytest.raises(Exception, match="Bad Gateway"):
        await stuck
    assert len(tg.edits) == 2  # the hung one changed nothing
    assert EDIT_NOT_FOUND.startswith("Bad Request: ") and NOT_MODIFIED.startswith("Bad Request: ")


# --- Slack: buttons, updates and block_actions --------------------------------------


async def test_slack_buttons_posted_updated_and_refused(slack: FakeSlack) -> None:
    client = AsyncWebClient(base_url=slack.url, token=BOT_TOKEN)
    blocks = alert_blocks(button("snooze", "1h", "Snooze 1h"), button("ack", "yes", "Acknowledge"))
    posted = await client.chat_postMessage(channel=ALERTS, text="Balance low", blocks=blocks)
    ts = posted["ts"]
    stored = slack.messages[(ALERTS, ts)]
    assert stored.text == "Balance low" and stored.bot_id == SLACK_BOT_ID
    assert all(b["block_id"] for b in stored.blocks)  # Slack names every block
    assert slack.posted[-1].blocks == blocks and slack.posted[-1].ts == ts
    assert posted["message"]["blocks"] == stored.blocks

    new_blocks = alert_blocks(button("unsnooze", "now", "Unsnooze"))
    updated = await client.chat_update(channel=ALERTS, ts=ts, text="Snoozed", blocks=new_blocks)
    assert updated["ts"] == ts and updated["message"]["text"] == "Snoozed"
    (update,) = await slack.wait_updated(1)
    assert (update.channel, update.ts, update.text, update.blocks) == (
        ALERTS,
        ts,
        "Snoozed",
        new_blocks,
    )
    assert slack.messages[(ALERTS, ts)].blocks[1]["elements"][0]["action_id"] == "unsnooze"
    # text alone keeps the blocks, as Slack does
    await client.chat_update(channel=ALERTS, ts=ts, text="Still snoozed")
    assert slack.messages[(ALERTS, ts)].blocks[1]["elements"][0]["action_id"] == "unsnooze"

    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel=ALERTS, ts="1700009999.000100", text="x")
    assert missing.value.response["error"] == "message_not_found"
    theirs = slack.add_message(ALERTS, "a person wrote this")
    with pytest.raises(SlackApiError) as foreign:
        await client.chat_update(channel=ALERTS, ts=theirs, text="x")
    assert foreign.value.response["error"] == "cant_update_message"
    many = alert_blocks(*[button(f"b{i}") for i in range(26)])
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel=ALERTS, text="too many", blocks=many)
    assert refused.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as bad_update:
        await client.chat_update(channel=ALERTS, ts=ts, text="x", blocks=many)
    assert bad_update.value.response["error"] == "invalid_blocks"
    assert len(slack.updated) == 2 and slack.messages[(ALERTS, ts)].text == "Still snoozed"


@pytest.mark.parametrize(
    ("blocks", "problem"),
    [
        (alert_blocks(*[button(f"b{i}") for i in range(25)]), ""),
        (alert_blocks(*[button(f"b{i}") for i in range(26)]), "invalid_blocks"),
        (alert_blocks(button("a", value="v" * 2000)), ""),
        (alert_blocks(button("a", value="v" * 2001)), "invalid_blocks"),
        (alert_blocks(button("a", label="L" * 75)), ""),
        (alert_blocks(button("a", label="L" * 76)), "invalid_blocks"),
        (alert_blocks(button("a" * 255)), ""),
        (alert_blocks(button("a" * 256)), "invalid_blocks"),
        (alert_blocks(button("same"), button("same")), "invalid_blocks"),
        (
            [
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": "x"},
                    "accessory": button("same"),
                },
                {"type": "actions", "elements": [button("same")]},
            ],
            "invalid_blocks",
        ),
    ],
)
def test_slack_button_limits(blocks: list[dict[str, Any]], problem: str) -> None:
    assert message_problem({"text": "fallback", "blocks": blocks}) == problem


async def test_slack_block_action_over_socket_mode(slack: FakeSlack) -> None:
    web_client = AsyncWebClient(base_url=slack.url, token=BOT_TOKEN)
    blocks = alert_blocks(button("snooze", "1h", "Snooze 1h"))
    ts = (await web_client.chat_postMessage(channel=ALERTS, text="Balance low", blocks=blocks))[
        "ts"
    ]
    seen: list[SocketModeRequest] = []
    arrived = asyncio.Condition()
    acking = True

    async def listener(client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        if acking:
            await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))
        async with arrived:
            seen.append(request)
            arrived.notify_all()

    socket = SocketModeClient(app_token=APP_TOKEN, web_client=AsyncWebClient(base_url=slack.url))
    socket.socket_mode_request_listeners.append(listener)
    try:
        await socket.connect()
        await slack.wait_connections(1)

        envelope = await slack.block_action(ALERTS, ts, "snooze", "1h")
        ack = await slack.wait_ack(envelope)
        assert not ack.late and ack.delay < slack.ack_deadline
        (request,) = seen
        assert request.type == "interactive" and request.envelope_id == envelope
        payload = request.payload
        assert payload["type"] == "block_actions"
        assert payload["container"] == {
            "type": "message",
            "message_ts": ts,
            "channel_id": ALERTS,
            "is_ephemeral": False,
        }
        assert payload["channel"] == {"id": ALERTS, "name": "alerts"}
        assert payload["user"]["id"] == "U0USER0001" and payload["team"]["id"]
        assert payload["message"]["ts"] == ts and payload["message"]["bot_id"] == SLACK_BOT_ID
        (action,) = payload["actions"]
        stored_block = slack.messages[(ALERTS, ts)].blocks[1]
        assert action["action_id"] == "snooze" and action["value"] == "1h"
        assert action["block_id"] == stored_block["block_id"] and action["type"] == "button"
        assert action["text"]["text"] == "Snooze 1h"

        async with aiohttp.ClientSession() as http:
            for body in ({"replace_original": True, "text": "Snoozed"}, {"delete_original": True}):
                async with http.post(payload["response_url"], json=body) as response:
                    assert response.status == 200
        assert await slack.wait_responses(envelope, 2) == [
            {"replace_original": True, "text": "Snoozed"},
            {"delete_original": True},
        ]
        assert slack.late_acks() == []

        # an ack after the deadline is recorded as late (the deadline lowered, not slept)
        slack.ack_deadline = 0.0
        slow = await slack.block_action(ALERTS, ts, "snooze", "1h")
        assert (await slack.wait_ack(slow)).late

        # and an envelope never acked is late once the deadline has passed
        acking = False
        unanswered = await slack.block_action(ALERTS, ts, "snooze", "1h")
        async with asyncio.timeout(10), arrived:
            await arrived.wait_for(lambda: len(seen) == 3)
        assert unanswered not in slack.acks
        assert slack.late_acks() == [slow, unanswered]
        slack.ack_deadline = 3600.0
        assert slack.late_acks() == [slow]
    finally:
        await socket.close()
        tasks = [
            t
            for t in (
                socket.message_processor,
                socket.current_session_monitor,
                socket.message_receiver,
            )
            if t is not None
        ]
        await asyncio.gather(*tasks, return_exceptions=True)
    with pytest.raises(KeyError):
        await slack.block_action(ALERTS, ts, "no-such-button", "x")


# --- CometAPI: daily quota ---------------------------------------------------------


async def get_quota(comet: FakeCometAPI, **query: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(comet.url, params={"key": QUERY_KEY, **query}) as response,
    ):
        return response.status, await response.json()


async def test_cometapi_seeding_request_gets_daily_quota(comet: FakeCometAPI) -> None:
    comet.push(reply_balance(7.0))
    status, body = await get_quota(comet, start_date="2025-01-01", end_date="2025-01-02")
    assert status == 200 and "daily_quota" not in body  # no daily data: no key at all
    comet.daily = {
        "2024-12-31": [daily_entry("old", 9.0, 9)],
        "2025-01-01": [daily_entry("prod", 1.25, 40), daily_entry("ci", 0.5)],
        "2025-01-02": [daily_entry("prod", 2.0, 55)],
        "2025-01-03": [daily_entry("prod", 3.0, 70)],
    }
    status, body = await get_quota(comet, start_date="2025-01-01", end_date="2025-01-02")
    assert status == 200 and body["total_quota"] == 100.0  # the default body, not the script
    assert body["daily_quota"] == {
        "2025-01-01": [
            {"token_name": "prod", "quota_used": 1.25, "request_count": 40},
            {"token_name": "ci", "quota_used": 0.5, "request_count": 0},
        ],
        "2025-01-02": [{"token_name": "prod", "quota_used": 2.0, "request_count": 55}],
    }
    _, since = await get_quota(comet, start_date="2025-01-03")
    assert list(since["daily_quota"]) == ["2025-01-03"]
    await comet.wait_seed_requests(3)
    assert comet.requests == [] and len(comet.script) == 1

    status, plain = await get_quota(comet)
    assert status == 200 and plain["total_quota"] == 7.0 and "daily_quota" not in plain
    assert len(comet.requests) == 1 and len(comet.seed_requests) == 3

    comet.seed_responder = reply_json({"success": False, "message": "busy"}, status=503)
    status, body = await get_quota(comet, end_date="2025-01-02")
    assert (status, body) == (503, {"success": False, "message": "busy"})
    assert len(comet.requests) == 1 and len(comet.seed_requests) == 4


# --- the webhook receiver -----------------------------------------------------------


def test_signature_matches_githubs_documented_example() -> None:
    assert signature("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


async def test_webhook_records_posts_and_replies_as_scripted(hook: FakeWebhook) -> None:
    assert hook.url == f"http://127.0.0.1:{hook.port}/hooks/balance"
    hook.fail(reply_status(500, "boom"))
    body = json.dumps({"alert": "account-low", "balance": 4.2}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature("s3cret", body),
    }
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.post(hook.url, data=body, headers=headers) as response:
                statuses.append((response.status, await response.text()))
        async with http.post(
            f"http://127.0.0.1:{hook.port}/apprise/path?x=1", data=b"plain text"
        ) as response:
            statuses.append((response.status, await response.text()))
        hook.fail(redirect("/hooks/moved"))
        async with http.post(hook.url, json={}, allow_redirects=False) as response:
            statuses.append((response.status, response.headers["Location"]))
        async with http.get(hook.url) as response:
            assert response.status == 405
    assert statuses == [(500, "boom"), (200, "ok"), (200, "ok"), (301, "/hooks/moved")]

    first, second, other, moved = await hook.wait_received(4)
    assert len(hook.received) == 4  # the GET was not recorded
    assert first.body == second.body == body and first.path == "/hooks/balance"
    assert first.json == {"alert": "account-low", "balance": 4.2}
    assert first.headers["x-hub-signature-256"] == signature("s3cret", body)
    assert (first.status, second.status, moved.status) == (500, 200, 301)
    assert (other.path, other.query, other.json, other.body) == (
        "/apprise/path",
        {"x": "1"},
        None,
        b"plain text",
    )
