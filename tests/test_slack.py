"""The Slack notifier: the real slack-sdk clients against a loopback fake Slack."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app.commands import REFUSAL, ChatCommands
from bot.app.service import App
from bot.engine.model import Severity
from bot.notifiers import DeliveryError, NotifierContext
from bot.notifiers.base import StartError
from bot.notifiers.message import Message, Section, Span
from bot.notifiers.slack import (
    CONTINUED,
    MAX_BLOCKS,
    PAYLOAD_BUDGET,
    TEXT_LIMIT,
    SlackConfig,
    SlackNotifier,
    render,
)
from fakes.cometapi import reply_balance
from fakes.slack import (
    BOT_NAME,
    FakeSlack,
    api_error,
    message_problem,
    rate_limited,
    server_error,
    text_objects,
)
from tests.conftest import printed
from tests.helpers import FAST, KEY_RULE, QUICK, TOTAL_RULE, Clock

BOT_TOKEN = "xoxb-test-SECRET-bot-token-123"
APP_TOKEN = "xapp-1-test-SECRET-app-token-456"
SECRETS = ("SECRET-bot-token", "SECRET-app-token")
ALERTS, OTHER = "C0ALERTS01", "C0OTHER001"
USER, STRANGER = "U0USER0001", "U0STRANGE1"
HOSTILE = "<b>x</b> & co"


# --- fixtures and helpers ---------------------------------------------------------


@pytest.fixture
async def slack():
    fake = FakeSlack(BOT_TOKEN, APP_TOKEN)
    fake.add_channel(ALERTS, "alerts")
    fake.add_channel(OTHER, "random")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(autouse=True)
def _tokens_never_printed(caplog, capsys):
    """Requirement: neither token appears in any log record or output, in every test."""
    caplog.set_level(logging.DEBUG)
    yield
    leaked = [t for t in printed(caplog, capsys) if any(s in t for s in SECRETS)]
    assert not leaked, leaked[:3]


def slack_section(fake: FakeSlack, channel: str = ALERTS, extra: str = "") -> str:
    return f"""
[notifiers.slack]
bot_token = "{BOT_TOKEN}"
app_token = "{APP_TOKEN}"
channel = "{channel}"
api_url = "{fake.url}"
{extra}
"""


def keys(names, remain=1.0):
    return [{"name": n, "remain_quota": remain, "used_quota": 3} for n in names]


def check_payload(payload: dict) -> str:
    """Assert a payload fits Slack's limits and is cleanly escaped; return what a reader sees."""
    assert message_problem(payload) == ""
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= MAX_BLOCKS
    texts = text_objects(blocks)
    assert all(0 < len(t) <= TEXT_LIMIT for t in texts)
    assert all(len(t.encode("utf-16-le")) // 2 <= TEXT_LIMIT for t in texts)
    assert sum(len(t) for t in texts) <= PAYLOAD_BUDGET
    assert 0 < len(payload["text"]) <= 200  # the fallback: the title, short
    for text in [*texts, payload["text"]]:
        assert "<" not in text and ">" not in text, text[:200]
        assert not re.search(r"&(?!amp;|lt;|gt;)", text), text[:200]
        assert "&#x27;" not in text and "&quot;" not in text
    return html.unescape("\n".join(texts))


def visible(payloads) -> str:
    return "\n".join(check_payload(p) for p in payloads)


def _app(cfg, **kw) -> App:
    return App(cfg, retry=FAST, **kw)


class _Source:
    """The smallest BalanceSource, for tests without an App."""

    timezone = ZoneInfo("UTC")


def _notifier(fake: FakeSlack, bot=BOT_TOKEN, app=APP_TOKEN, api_url=None) -> SlackNotifier:
    config = SlackConfig(bot_token=bot, app_token=app, channel=ALERTS, api_url=api_url or fake.url)
    context = NotifierContext(ChatCommands(_Source()), ZoneInfo("UTC"))  # type: ignore[arg-type]
    return SlackNotifier("slack", config, context)


def _records(caplog, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == event]


# --- 1. alerts reach the channel, escaped, within limits ------------------------------


async def test_alert_reaches_the_channel_escaped_and_within_limits(make_config, comet, slack):
    comet.default = reply_balance(10, keys([HOSTILE, 'it\'s "q"', "fine"], 1) + keys(["ok"], 50))
    cfg = make_config(TOTAL_RULE + KEY_RULE + slack_section(slack))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        await app.delivery.deliver_due()
        await app.cycle()  # still low: nothing new
        await app.delivery.deliver_due()
        (status,) = app.store._conn.execute("SELECT status FROM outbox").fetchone()
    (message,) = slack.posted
    assert message.channel == ALERTS and status == "delivered"
    raw = "\n".join(text_objects(message.blocks))
    assert "&lt;b&gt;x&lt;/b&gt; &amp; co" in raw and "<b>" not in raw
    assert 'it\'s "q"' in raw  # quotes are not escaped
    seen = check_payload({"text": message.text, "blocks": message.blocks})
    assert f"key {HOSTILE}: $1.00 left (below $2.00; resolves at $2.20)" in seen
    assert "main / total: $10.00 left" in seen
    assert seen.index("CRITICAL") < seen.index("WARNING")
    # severity at a glance: the mark leads the title and the notification text
    assert message.text.startswith("🔴 CometAPI balance: 3 critical, 1 warning")
    assert message.blocks[0]["text"]["text"].startswith("🔴 *CometAPI balance")
    assert message.args["unfurl_links"] is False and message.args["unfurl_media"] is False
    # listen=False (balance-bot check) only prepares sending: no Socket Mode
    assert {c.method for c in slack.calls} == {
        "auth.test",
        "conversations.info",
        "chat.postMessage",
    }
    assert slack.connections == 0


# --- 2. /balance: acked at once, data for allowed channels, a refusal for others -------


async def test_balance_is_acked_at_once_and_answered_after(make_config, comet, slack, caplog):
    release = asyncio.Event()

    async def slow_balance(request: web.Request) -> web.StreamResponse:
        await release.wait()  # CometAPI answers only when the test says so
        return await reply_balance(123.45, keys(["prod-api"], 7.5))(request)

    comet.push(slow_balance)
    comet.default = reply_balance(123.45, keys(["prod-api"], 7.5))
    cfg = make_config(TOTAL_RULE + slack_section(slack))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        await slack.wait_connections(1)

        envelope = await slack.slash("", ALERTS, USER)
        ack = await slack.wait_ack(envelope, within=3)
        assert ack.delay < 3 and ack.body == {"envelope_id": envelope}
        await comet.wait_requests(1)
        assert envelope not in slack.responses  # the fetch is still under way
        release.set()
        (answer,) = await slack.wait_responses(envelope)
    assert answer["response_type"] == "ephemeral"
    seen = check_payload(answer)
    assert "Balance: *$123.45*" in seen and "prod-api: $7.50 left, $3.00 used" in seen
    (record,) = _records(caplog, "slack.command")
    assert record.fields["channel_id"] == ALERTS and record.fields["user_id"] == USER


async def test_other_channel_gets_a_refusal_without_numbers(make_config, comet, slack, caplog):
    comet.default = reply_balance(123.45, keys(["prod-api"], 7.5))
    cfg = make_config(TOTAL_RULE + slack_section(slack))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        envelope = await slack.slash("", OTHER, STRANGER)
        assert (await slack.wait_ack(envelope, within=3)).delay < 3
        (refusal,) = await slack.wait_responses(envelope)
    assert refusal["response_type"] == "ephemeral"
    assert check_payload(refusal) == f"*{REFUSAL}*" and refusal["text"] == REFUSAL
    assert not re.search(r"\d|\$", str(refusal))
    assert len(comet.requests) == 0  # a stranger triggers no fetch
    (record,) = _records(caplog, "slack.refused")
    assert record.levelno == logging.WARNING
    assert record.fields["channel_id"] == OTHER and record.fields["user_id"] == STRANGER
    assert "allowed_channels" in record.fields["hint"]


async def test_allowed_users_and_channels_are_enforced(make_config, comet, slack, caplog):
    comet.default = reply_balance(50)
    extra = f'allowed_channels = ["{OTHER}"]\nallowed_users = ["{USER}"]'
    cfg = make_config(TOTAL_RULE + slack_section(slack, extra=extra))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        stranger = await slack.slash("", OTHER, STRANGER)
        alerts_channel = await slack.slash("", ALERTS, USER)  # not in allowed_channels now
        allowed = await slack.slash("", OTHER, USER)
        answers = {e: await slack.wait_responses(e) for e in (stranger, alerts_channel, allowed)}
    assert answers[stranger][0]["text"] == REFUSAL
    assert answers[alerts_channel][0]["text"] == REFUSAL
    assert "Balance: *$50.00*" in visible(answers[allowed])
    refused = {
        (r.fields["channel_id"], r.fields["user_id"]): r.fields["hint"]
        for r in _records(caplog, "slack.refused")
    }
    assert set(refused) == {(OTHER, STRANGER), (ALERTS, USER)}
    assert "allowed_users" in refused[(OTHER, STRANGER)]
    assert "allowed_channels" in refused[(ALERTS, USER)]


# --- 3. 300 keys: within 50 blocks and 3000 characters, alerts and /balance -------------


def _hostile_names(count: int) -> list[str]:
    shapes = ["<b>x</b>", "a&b", "*_[", "\"q\" 's'", "</b><i>", "<!channel>"]
    return [f"{shapes[i % len(shapes)]}-{i:03d}" for i in range(count)]


async def test_300_hostile_keys_in_one_alert_batch(make_config, comet, slack):
    names = _hostile_names(300)
    comet.default = reply_balance(100, keys(names, 0.5))
    cfg = make_config(KEY_RULE + slack_section(slack))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        await app.delivery.deliver_due()
    parts = slack.posted
    assert 2 <= len(parts) <= 8  # a handful, not 300
    seen = [check_payload({"text": p.text, "blocks": p.blocks}) for p in parts]
    for index, (part, text) in enumerate(zip(parts, seen, strict=True), 1):
        assert text.startswith(f"🔴 *CometAPI balance: 300 critical* ({index}/{len(parts)})\n")
        assert part.text == f"🔴 CometAPI balance: 300 critical ({index}/{len(parts)})"
    assert "(continued)" in seen[1]
    everything = "\n".join(seen)
    for name in names:
        assert everything.count(f"key {name}: $0.50 left") == 1, name


async def test_300_hostile_keys_in_balance_answer(make_config, comet, slack):
    names = _hostile_names(300)
    comet.default = reply_balance(100, keys(names, 0.5), username=HOSTILE)
    cfg = make_config(TOTAL_RULE + slack_section(slack))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        envelope = await slack.slash("", ALERTS, USER)
        await slack.wait_ack(envelope, within=3)
        await slack.wait_responses(envelope, 2)
        # the next command is answered only after every part of this one
        done = await slack.slash("help", ALERTS, USER)
        await slack.wait_responses(done)
        parts = slack.responses[envelope]
    assert 2 <= len(parts) <= 5  # response_url takes at most five
    seen = [check_payload(p) for p in parts]
    assert f"main ({HOSTILE})" in seen[0]
    everything = "\n".join(seen)
    for name in names:
        assert everything.count(f"{name}: $0.50 left") == 1, name


async def test_an_answer_too_long_for_five_replies_says_what_is_missing(make_config, comet, slack):
    names = [f"{i:04d}-" + "&" * 190 for i in range(600)]  # ~1000 characters a line, escaped
    comet.default = reply_balance(100, keys(names, 0.5))
    cfg = make_config(TOTAL_RULE + slack_section(slack))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        envelope = await slack.slash("", ALERTS, USER)
        parts = await slack.wait_responses(envelope, 5)
        done = await slack.slash("help", ALERTS, USER)
        await slack.wait_responses(done)
    assert len(slack.responses[envelope]) == 5
    seen = [check_payload(p) for p in parts]
    # numbered over what is sent (issue 20, defect 7)
    assert all(s.startswith(f"*CometAPI balance* ({i}/5)\n") for i, s in enumerate(seen[:4], 1))
    shown = sum(s.count(": $0.50 left") for s in seen[:4])
    note = re.fullmatch(  # one account: no "ask for one account"
        r"\*CometAPI balance\* \(5/5\)\n\*… (\d{3}) keys not shown "
        r"\(a reply holds at most 5 messages\)\*",
        "\n".join(text_objects(parts[4]["blocks"])),
    )
    assert note and shown + int(note[1]) == 600


# --- 4. 429 with Retry-After, then 500, then success: delivered exactly once --------------


async def test_retry_after_then_server_error_then_delivered_once(make_config, comet, slack, caplog):
    comet.default = reply_balance(10)
    slack.fail("chat.postMessage", rate_limited(1), server_error(500))
    clock = Clock()
    cfg = make_config(TOTAL_RULE + slack_section(slack))
    async with _app(cfg, backoff=QUICK, clock=clock) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        assert await app.delivery.deliver_due() == pytest.approx(1.1)  # Retry-After + 0.1
        assert await app.delivery.deliver_due() == pytest.approx(1.1)  # not due yet: no send
        assert len(slack.calls_of("chat.postMessage")) == 1
        clock.now += timedelta(seconds=1.1)
        assert await app.delivery.deliver_due() == pytest.approx(0.1)  # the 500: backoff
        clock.now += timedelta(seconds=0.1)
        assert await app.delivery.deliver_due() is None
        statuses = app.store._conn.execute("SELECT status, attempts FROM outbox").fetchall()
    assert [c.status for c in slack.calls_of("chat.postMessage")] == [429, 500, 200]
    assert len(slack.posted) == 1 and statuses == [("delivered", 2)]
    retries = [r.fields for r in _records(caplog, "delivery.retry")]
    assert retries[0]["retry_in"] == 1.1
    assert "rate limited" in retries[0]["reason"] and ALERTS in retries[0]["reason"]
    assert "HTTP 500" in retries[1]["reason"]


# --- 5. channel_not_found is permanent ------------------------------------------------------


async def test_channel_not_found_is_marked_failed_and_not_retried(
    make_config, comet, slack, caplog
):
    comet.default = reply_balance(10)
    cfg = make_config(TOTAL_RULE + slack_section(slack, channel="C0MISSING1"))
    async with _app(cfg, backoff=QUICK) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        assert await app.delivery.deliver_due() is None
        assert await app.delivery.deliver_due() is None  # nothing left to retry
        rows = app.store._conn.execute("SELECT status, attempts, last_error FROM outbox").fetchall()
    assert len(slack.calls_of("chat.postMessage")) == 1 and not slack.posted
    ((status, attempts, error),) = rows
    assert (status, attempts) == ("failed", 0)
    assert "C0MISSING1" in error and "channel_not_found" in error
    (record,) = _records(caplog, "delivery.failed")
    assert record.levelno == logging.ERROR
    assert record.fields["destination"] == "C0MISSING1"
    assert "channel_not_found" in record.fields["reason"]
    assert "notifiers.slack.channel" in record.fields["reason"]


# --- 6. a dropped websocket is reconnected ---------------------------------------------------


@pytest.mark.parametrize("how", ["close", "abort", "disconnect"])
async def test_dropped_websocket_is_reconnected(make_config, comet, slack, monkeypatch, how):
    # an aborted connection is noticed by the SDK's keep-alive, every ping_interval
    monkeypatch.setattr(SlackNotifier, "ping_interval", 0.5)
    comet.default = reply_balance(42)
    cfg = make_config(TOTAL_RULE + slack_section(slack))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        await slack.wait_connections(1)
        first = await slack.slash("", ALERTS, USER)
        await slack.wait_responses(first)

        await slack.drop(how)
        await slack.wait_connections(2)
        again = await slack.slash("", ALERTS, USER)
        assert (await slack.wait_ack(again, within=3)).delay < 3
        (answer,) = await slack.wait_responses(again)
    assert "Balance: *$42.00*" in check_payload(answer)
    assert len(slack.calls_of("apps.connections.open")) == 2  # a fresh URL for the new socket


# --- 7. /balance status, /balance help, /balance <account> ---------------------------------


async def test_status_help_and_account_argument(make_config, comet, slack):
    comet.default = reply_balance(5)
    cfg = make_config(TOTAL_RULE + slack_section(slack))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        await app.cycle()  # fires
        await app.delivery.deliver_due()
        answers = {}
        for text in ("status", "help", "main", "nope", " STATUS "):
            envelope = await slack.slash(text, ALERTS, USER)
            answers[text] = visible(await slack.wait_responses(envelope))
    assert "CometAPI balance: 1 firing" in answers["status"]
    assert (
        "WARNING* · main / total: $5.00 left (below $20.00; resolves at $22.00)"
        in (answers["status"])
    )
    assert answers[" STATUS "] == answers["status"]
    for line in ("/balance status", "/balance help", "/balance <account>"):
        assert f"*{line}*" in answers["help"]
    assert "Balance: *$5.00*" in answers["main"]
    assert "Unknown account 'nope'. Accounts: main" in answers["nope"]


async def test_help_names_the_command_the_app_was_given(make_config, comet, slack):
    cfg = make_config(TOTAL_RULE + slack_section(slack))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        envelope = await slack.slash("help", ALERTS, USER, command="/cometbalance")
        seen = visible(await slack.wait_responses(envelope))
    assert "*/cometbalance status*" in seen and "/balance " not in seen


# --- start-up checks and tokens ----------------------------------------------------------------


async def test_rejected_bot_token_is_reported_without_the_token(make_config, comet, slack, caplog):
    cfg = make_config(
        TOTAL_RULE + slack_section(slack).replace(BOT_TOKEN, "xoxb-test-SECRET-bot-token-999")
    )
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
    (record,) = _records(caplog, "notifier.start_failed")
    assert record.fields["notifier"] == "slack"
    assert "invalid_auth" in record.fields["reason"]
    assert "notifiers.slack.bot_token" in record.fields["reason"]
    assert slack.connections == 0


async def test_rejected_app_token_is_reported_and_stop_is_clean(slack):
    notifier = _notifier(slack, app="xapp-1-test-SECRET-app-token-999")
    with pytest.raises(StartError, match="rejected the app token") as info:
        await notifier.start(listen=True)
    assert "invalid_auth" in str(info.value) and "connections:write" in str(info.value)
    assert info.value.__cause__ is None
    await notifier.stop()
    assert slack.connections == 0


async def test_start_says_when_the_bot_is_not_in_the_channel(slack, caplog):
    slack.scopes.add("channels:read")
    slack.add_channel(ALERTS, "alerts", is_member=False)
    notifier = _notifier(slack)
    try:
        await notifier.start(listen=False)
    finally:
        await notifier.stop()
    (ready,) = _records(caplog, "slack.ready")
    assert ready.fields["bot"] == BOT_NAME and ready.fields["channel"] == ALERTS
    (record,) = _records(caplog, "slack.not_in_channel")
    assert record.levelno == logging.WARNING and record.fields["channel_name"] == "alerts"
    assert "/invite" in record.fields["hint"]


async def test_channel_check_is_skipped_without_channels_read(slack, caplog):
    notifier = _notifier(slack)
    try:
        await notifier.start(listen=False)
    finally:
        await notifier.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [c.method for c in slack.calls] == ["auth.test", "conversations.info"]


async def test_unreachable_slack_fails_check_but_not_run(slack, caplog, monkeypatch):
    monkeypatch.setattr(SlackNotifier, "connect_wait", 0.2)
    await slack.stop()
    notifier = _notifier(slack)
    with pytest.raises(StartError, match=r"auth\.test"):
        await notifier.start(listen=False)
    await notifier.stop()
    notifier = _notifier(slack)
    try:
        await notifier.start(listen=True)  # returns: commands start once Slack answers
        assert _records(caplog, "slack.unreachable")
    finally:
        await notifier.stop()


async def test_stop_is_safe_before_start_and_twice(slack):
    notifier = _notifier(slack)
    await notifier.stop()
    notifier = _notifier(slack)
    await notifier.start(listen=True)
    await slack.wait_connections(1)
    await notifier.stop()
    await notifier.stop()
    assert [c.method for c in slack.calls] == [
        "auth.test",
        "conversations.info",
        "apps.connections.open",
    ]


async def test_no_sdk_retry_handlers_on_the_alert_client(slack):
    notifier = _notifier(slack)
    slack.fail("chat.postMessage", server_error(503))
    try:
        with pytest.raises(DeliveryError):
            await notifier.send(ALERTS, render(Message("hi", ()))[0])
        assert notifier._web().retry_handlers == []
        assert len(slack.calls_of("chat.postMessage")) == 1  # the outbox retries, not the SDK
    finally:
        await notifier.stop()


@pytest.mark.parametrize(
    ("reply", "permanent", "retry_in", "text"),
    [
        (rate_limited(7), False, 7.0, "rate limited"),
        (server_error(502), False, None, "HTTP 502"),
        (api_error("internal_error"), False, None, "internal_error"),
        (api_error("channel_not_found"), True, None, "notifiers.slack.channel"),
        (api_error("not_in_channel"), True, None, "/invite"),
        (api_error("is_archived"), True, None, "archived"),
        (api_error("invalid_auth"), True, None, "notifiers.slack.bot_token"),
        (api_error("token_revoked"), True, None, "notifiers.slack.bot_token"),
        (api_error("account_inactive"), True, None, "notifiers.slack.bot_token"),
        (api_error("msg_too_long"), True, None, "msg_too_long"),
        (api_error("something_new"), True, None, "something_new"),
    ],
)
async def test_send_maps_errors(slack, reply, permanent, retry_in, text):
    notifier = _notifier(slack)
    slack.fail("chat.postMessage", reply)
    payload = render(Message("hi <there>", ()))[0]
    try:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(ALERTS, payload)
        error = info.value
        assert (error.permanent, error.retry_after) == (permanent, retry_in)
        assert text in error.reason and f"Slack channel {ALERTS}" in error.reason
        assert not any(s in error.reason for s in SECRETS)
        await notifier.send(ALERTS, payload)
        assert slack.posted[-1].blocks == payload["blocks"]
    finally:
        await notifier.stop()


async def test_unreachable_server_is_transient(slack):
    notifier = _notifier(slack)
    await slack.stop()
    try:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(ALERTS, render(Message("hi", ()))[0])
        assert not info.value.permanent and info.value.retry_after is None
        assert info.value.reason.startswith(f"Slack channel {ALERTS}: ClientConnectorError")
    finally:
        await notifier.stop()


async def test_tokens_never_appear_even_at_debug(make_config, comet, slack):
    """The autouse fixture checks every test through caplog; this one goes through the
    real log setup, slack-sdk's own debug logging included, on every path."""
    import io

    from bot.common.logs import setup_logging

    root, sdk = logging.getLogger(), logging.getLogger("slack_sdk")
    handlers, level, sdk_level = root.handlers[:], root.level, sdk.level
    stream = io.StringIO()
    setup_logging("json", "DEBUG", stream)
    sdk.setLevel(logging.DEBUG)
    try:
        comet.default = reply_balance(5)
        cfg = make_config(TOTAL_RULE + slack_section(slack))
        slack.fail("chat.postMessage", rate_limited(1))
        async with _app(cfg) as app:
            await app.start_notifiers(listen=True)
            await app.cycle()
            await app.delivery.deliver_due()
            for text in ("", "status", "help"):
                envelope = await slack.slash(text, ALERTS, USER)
                await slack.wait_responses(envelope)
            await slack.wait_responses(await slack.slash("", OTHER, STRANGER))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        sdk.setLevel(sdk_level)
    out = stream.getvalue()
    assert '"slack.command"' in out and '"delivery.retry"' in out
    assert "Sending a request" in out  # slack-sdk's debug lines are in there too
    assert not any(s in out for s in SECRETS)


# --- format() -----------------------------------------------------------------------------


def _message(lines, title="CometAPI balance: test", heading="🔴 Critical", severity=None):
    return Message(title, (Section(heading, tuple(lines)),), severity)


def test_format_escapes_exactly_amp_lt_gt_and_bolds_bold_spans():
    line = (Span("<b>x</b>", bold=True), Span(" a&b *_[ 'q' \"q\" </b>"))
    (payload,) = render(_message([line], title="T <&>", heading="H&"))
    assert payload["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*T &lt;&amp;&gt;*"}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*H&amp;*\n*&lt;b&gt;x&lt;/b&gt;* a&amp;b *_[ 'q' \"q\" &lt;/b&gt;",
            },
        },
    ]
    assert payload["text"] == "T &lt;&amp;&gt;"


def test_format_keeps_spaces_outside_bold_markers():
    (payload,) = render(_message([(Span("⚠️ fetch failed: ", bold=True), Span("HTTP 502"))]))
    assert payload["blocks"][1]["text"]["text"].endswith("*⚠️ fetch failed:* HTTP 502")


def test_format_marks_severity():
    for severity, mark in ((Severity.CRITICAL, "🔴 "), (Severity.WARNING, "🟠 "), (None, "")):
        (payload,) = render(_message([(Span("x"),)], severity=severity))
        assert payload["text"] == f"{mark}CometAPI balance: test"
        assert payload["blocks"][0]["text"]["text"] == f"{mark}*CometAPI balance: test*"


def test_format_splits_at_line_boundaries_deterministically():
    lines = [(Span(f"line {i:04d} " + "x" * 80),) for i in range(400)]
    message = _message(lines)
    payloads = render(message)
    assert payloads == render(message)
    assert len(payloads) > 1
    seen = [check_payload(p) for p in payloads]
    for index, text in enumerate(seen, 1):
        assert text.startswith(f"*CometAPI balance: test* ({index}/{len(payloads)})\n")
    for text in seen[1:]:
        assert text.split("\n")[1] == f"*🔴 Critical*{CONTINUED}"
    everything = "\n".join(seen)
    assert [int(m) for m in re.findall(r"line (\d{4}) ", everything)] == list(range(400))


def test_format_many_short_lines_stay_within_50_blocks():
    sections = tuple(Section(f"account {i}", ((Span("ok"),),)) for i in range(120))
    payloads = render(Message("CometAPI balance", sections))
    assert len(payloads) == 3
    assert [len(p["blocks"]) for p in payloads] == [50, 50, 23]
    visible(payloads)


def test_format_a_huge_line_or_title_cannot_exceed_the_limits():
    huge = "&" * 5000
    payloads = render(_message([(Span(huge, bold=True), Span(huge))], title=huge, heading=huge))
    (payload,) = payloads
    seen = check_payload(payload)
    assert "…" in seen and len(payload["text"]) <= 200


def test_format_message_without_sections_is_its_title():
    assert render(Message(REFUSAL, ())) == [
        {
            "text": REFUSAL,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{REFUSAL}*"}}],
        }
    ]


_texts = st.text(alphabet=st.sampled_from("ab &<>*_'\"é🔴\n"), max_size=300)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            _texts, st.lists(st.lists(st.tuples(_texts, st.booleans()), max_size=3), max_size=40)
        ),
        max_size=12,
    ),
    _texts,
)
def test_format_property_limits_and_order(raw_sections, title):
    sections = tuple(
        Section(heading, tuple(tuple(Span(t, b) for t, b in line) for line in lines))
        for heading, lines in raw_sections
    )
    payloads = render(Message(title, sections))
    assert payloads == render(Message(title, sections))
    for payload in payloads:
        assert message_problem(payload) == ""
        texts = text_objects(payload["blocks"])
        assert len(payload["blocks"]) <= MAX_BLOCKS
        assert all(len(t.encode("utf-16-le")) // 2 <= TEXT_LIMIT for t in texts)
        assert sum(len(t) for t in texts) <= PAYLOAD_BUDGET
        assert all(not re.search(r"[<>]|&(?!amp;|lt;|gt;)", t) for t in texts)


def test_manifest_turns_socket_mode_on_with_minimal_scopes():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "slack-app-manifest.yaml").read_text()
    assert re.search(r"^  socket_mode_enabled: true$", text, re.MULTILINE)
    assert re.search(r"^    - command: /balance$", text, re.MULTILINE)
    assert "url:" not in text  # Socket Mode: no request URL anywhere
    scopes = re.findall(r"^\s+- ([\w:.]+)\s*(?:#.*)?$", text, re.MULTILINE)
    assert scopes == ["chat:write", "commands", "files:write"]  # files: /balance chart (6b)


async def test_a_slash_command_storm_makes_one_answer_at_a_time_per_person(
    make_config, comet, slack
):
    """Issue 20, defect 3: answers are ephemeral, so the limit is per person in a
    channel: a repeat while /balance is answered hears once to wait, further
    repeats nothing; another person, and other commands, go on."""
    release = asyncio.Event()
    answer = reply_balance(42)

    async def slow(request):
        await release.wait()
        return await answer(request)

    comet.default = slow
    extra = f'allowed_users = ["{USER}", "U0SECOND01"]'
    cfg = make_config(TOTAL_RULE + slack_section(slack, extra=extra))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        first, second, third = [await slack.slash("", ALERTS, USER) for _ in range(3)]
        status = await slack.slash("status", ALERTS, USER)
        other = await slack.slash("", ALERTS, "U0SECOND01")
        (note,) = await slack.wait_responses(second)
        await slack.wait_responses(status)
        release.set()
        await slack.wait_responses(first)
        await slack.wait_responses(other)
        again = await slack.slash("", ALERTS, USER)
        await slack.wait_responses(again)
    assert check_payload(note) == (
        "*Still working on your last /balance; ask again once it is answered.*"
    )
    assert third not in slack.responses
    for envelope in (first, other, again):
        assert "Balance: *$42.00*" in check_payload(slack.responses[envelope][0])
