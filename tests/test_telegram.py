"""The Telegram notifier: the real python-telegram-bot against a loopback fake Bot API."""

from __future__ import annotations

import asyncio
import html
import logging
import re
import threading
from datetime import UTC, datetime
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest

from bot.app.commands import REFUSAL, ChatCommands
from bot.app.service import App
from bot.common.backoff import Backoff
from bot.engine.model import KeyBalance, Snapshot
from bot.notifiers import DeliveryError, NotifierContext
from bot.notifiers.base import StartError
from bot.notifiers.message import Message, Section, Span
from bot.notifiers.telegram import (
    LIMIT,
    TelegramConfig,
    TelegramNotifier,
    render,
    render_pieces,
)
from bot.notify.render import AccountView, balance_message
from fakes.cometapi import reply_balance
from fakes.telegram import (
    BOT_USERNAME,
    FakeTelegram,
    bad_request,
    conflict,
    forbidden,
    migrated,
    retry_after,
    server_error,
)
from tests.conftest import printed
from tests.helpers import FAST, KEY_RULE, QUICK, TOTAL_RULE

TOKEN = "123456789:AAFakeTokenForTests_abcdefghijklmnopq"
SECRET = TOKEN.split(":", 1)[1]
USER_CHAT, GROUP_CHAT, STRANGER = 111111, -100222222, 999


HOSTILE = ["<b>x</b>", "a&b", "*_[", "\"q\" 's'", "</b><i>"]


# --- fixtures and helpers ---------------------------------------------------------


@pytest.fixture
async def tg():
    fake = FakeTelegram(TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(autouse=True)
def _token_never_printed(caplog, capsys):
    """Requirement: the bot token appears in no log record and no output, in every test."""
    caplog.set_level(logging.DEBUG)
    yield
    leaked = [t for t in printed(caplog, capsys) if SECRET in t]
    assert not leaked, leaked[:3]


def telegram_section(fake: FakeTelegram, chat_ids=(USER_CHAT, GROUP_CHAT), token=TOKEN) -> str:
    return f"""
[notifiers.telegram]
token = "{token}"
chat_ids = [{", ".join(str(c) for c in chat_ids)}]
api_url = "{fake.url}"
"""


def keys(names, remain=1.0):
    return [{"name": n, "remain_quota": remain, "used_quota": 3} for n in names]


class TelegramHTML(HTMLParser):
    """Accepts only what we emit: <b> tags, balanced, and the escapes for & < >."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.open = 0
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag != "b" or attrs:
            self.problems.append(f"<{tag} {attrs}>")
        self.open += 1
        if self.open > 1:
            self.problems.append("nested <b>")

    def handle_endtag(self, tag):
        if tag != "b" or self.open == 0:
            self.problems.append(f"</{tag}>")
        self.open -= 1

    def handle_entityref(self, name):
        if name not in ("amp", "lt", "gt"):
            self.problems.append(f"&{name};")
        self.text.append(html.unescape(f"&{name};"))

    def handle_charref(self, name):
        self.problems.append(f"&#{name};")

    def handle_data(self, data):
        if "&" in data or "<" in data or ">" in data:
            self.problems.append(f"raw markup in {data!r}")
        self.text.append(data)


def check_html(text: str) -> str:
    """Assert `text` is HTML Telegram accepts and fits; return what a reader sees."""
    assert len(text) <= LIMIT and len(text.encode("utf-16-le")) // 2 <= LIMIT
    parser = TelegramHTML()
    parser.feed(text)
    parser.close()
    assert not parser.problems and parser.open == 0, parser.problems[:5]
    # convert_charrefs=False makes the parser hand over "&amp;" etc. as entityrefs;
    # a bare "&" would have been reported as data above.
    return "".join(parser.text)


def _app(cfg, **kw) -> App:
    return App(cfg, retry=FAST, **kw)


# --- 1. alerts reach each chat once, escaped ------------------------------------------


async def test_alert_reaches_each_chat_once_html_escaped(make_config, comet, tg):
    comet.default = reply_balance(10, keys(["<b>x</b>", "a&b", "fine"], 1) + keys(["ok"], 50))
    cfg = make_config(TOTAL_RULE + KEY_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        await app.delivery.deliver_due()
        await app.delivery.deliver_due()
        await app.cycle()  # still low: nothing new
        await app.delivery.deliver_due()
    assert sorted(m.chat_id for m in tg.sent) == sorted([USER_CHAT, GROUP_CHAT])
    for message in tg.sent:
        assert message.parse_mode == "HTML"
        assert "&lt;b&gt;x&lt;/b&gt;" in message.text and "a&amp;b" in message.text
        assert "<b>x</b>" not in message.text
        seen = check_html(message.text)
        assert "key <b>x</b>: $1.00 left" in seen and "main / total: $10.00 left" in seen
        assert seen.index("CRITICAL") < seen.index("WARNING")
    # listen=False (balance-bot check) only prepares sending: no commands, no polling
    assert {c.method for c in tg.calls} == {"getMe", "sendMessage"}


# --- 2. /balance: data for allowed chats, a refusal for everyone else -----------------


async def test_balance_for_allowed_chat_and_refusal_for_others(make_config, comet, tg, caplog):
    comet.default = reply_balance(123.45, keys(["prod-api"], 7.5))
    cfg = make_config(TOTAL_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        assert [c["command"] for c in tg.commands] == [
            "balance",
            "status",
            "spend",
            "digest",
            "chart",
            "snooze",
            "unsnooze",
            "id",
            "help",
        ]

        await tg.message(USER_CHAT, "/balance")
        (answer,) = await tg.wait_sent(1)
        assert answer.chat_id == USER_CHAT and answer.parse_mode == "HTML"
        seen = check_html(answer.text)
        assert "Balance: $123.45" in seen and "prod-api: $7.50 left" in seen
        fetched = len(comet.requests)

        await tg.message(STRANGER, "/balance", user_id=4242)
        refusal = (await tg.wait_sent(2))[1]
    assert refusal.chat_id == STRANGER
    assert check_html(refusal.text) == REFUSAL
    assert not re.search(r"\d|\$", refusal.text)
    assert len(comet.requests) == fetched  # a stranger triggers no fetch
    (record,) = [r for r in caplog.records if r.getMessage() == "telegram.refused"]
    assert record.levelno == logging.WARNING
    assert record.fields["chat_id"] == STRANGER and record.fields["user_id"] == 4242
    assert "chat_ids" in record.fields["hint"]


async def test_status_help_and_unknown_account(make_config, comet, tg):
    comet.default = reply_balance(5)
    cfg = make_config(TOTAL_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        await app.cycle()  # fires
        await tg.message(USER_CHAT, "/status")
        await tg.message(USER_CHAT, "/help")
        await tg.message(USER_CHAT, "/balance  no <such> account")
        status, helptext, unknown = await tg.wait_sent(3)
    assert "1 firing" in check_html(status.text) and "$5.00 left" in check_html(status.text)
    seen = check_html(helptext.text)
    assert "/balance [account]" in seen and "/status" in seen and "/help" in seen
    assert "Unknown account 'no <such> account'" in check_html(unknown.text)


# --- 3. 300 hostile key names: every message fits and is valid HTML -------------------


def _hostile_names(count: int) -> list[str]:
    return [f"{HOSTILE[i % len(HOSTILE)]}-{i:03d}" for i in range(count)]


async def test_300_hostile_keys_in_one_alert_batch(make_config, comet, tg):
    names = _hostile_names(300)
    comet.default = reply_balance(100, keys(names, 0.5))
    cfg = make_config(KEY_RULE + telegram_section(tg, chat_ids=[USER_CHAT]))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        await app.delivery.deliver_due()
    parts = tg.sent
    assert 3 <= len(parts) <= 10  # a handful, not 300
    seen = [check_html(p.text) for p in parts]
    for index, text in enumerate(seen, 1):
        assert text.startswith(f"CometAPI balance: 300 critical ({index}/{len(parts)})")
    everything = "\n".join(seen)
    for name in names:
        assert everything.count(f"key {name}: $0.50 left") == 1, name


async def test_300_hostile_keys_in_balance_answer(make_config, comet, tg):
    names = _hostile_names(300)
    comet.default = reply_balance(100, keys(names, 0.5))
    cfg = make_config(TOTAL_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        await tg.message(USER_CHAT, "/balance")
        while not tg.sent or "Data from" not in tg.sent[-1].text:  # the answer's last line
            await tg.wait_sent(len(tg.sent) + 1)
    parts = tg.sent
    assert len(parts) > 1
    seen = [check_html(p.text) for p in parts]
    everything = "\n".join(seen)
    for name in names:
        assert everything.count(f"{name}: $0.50 left") == 1, name
    assert seen[1].startswith(f"CometAPI balance ({2}/{len(parts)})")


# --- 4. 429, then 500, then success: delivered exactly once --------------------------


async def test_retry_after_then_server_error_then_delivered_once(make_config, comet, tg, caplog):
    comet.default = reply_balance(10)
    tg.fail("sendMessage", retry_after(1), server_error(500))
    cfg = make_config(TOTAL_RULE + telegram_section(tg, chat_ids=[USER_CHAT]))
    async with _app(cfg, backoff=QUICK) as app:
        await app.start_notifiers(listen=False)
        loop = asyncio.create_task(app.delivery.run())
        try:
            await app.cycle()
            await tg.wait_sent(1)
        finally:
            app.delivery.stop()
            await loop
        assert await app.delivery.deliver_due() is None
        statuses = app.store._conn.execute("SELECT status, attempts FROM outbox").fetchall()
    assert [c.status for c in tg.calls if c.method == "sendMessage"] == [429, 500, 200]
    assert len(tg.sent) == 1 and statuses == [("delivered", 2)]
    retries = [r.fields for r in caplog.records if r.getMessage() == "delivery.retry"]
    assert retries[0]["retry_in"] == 1.1  # Telegram's retry_after, honoured
    assert "rate limited" in retries[0]["reason"] and str(USER_CHAT) in retries[0]["reason"]
    assert "Internal Server Error" in retries[1]["reason"]


# --- 5. a blocked chat does not hold up the others ------------------------------------


@pytest.mark.parametrize(
    ("reply", "why"),
    [(forbidden(), "bot was blocked by the user"), (bad_request(), "chat not found")],
)
async def test_failing_chat_is_marked_failed_and_others_delivered(
    make_config, comet, tg, reply, why
):
    comet.default = reply_balance(10)
    chats = [111, 222, 333]
    tg.fail_always("sendMessage", reply, chat_id=222)
    cfg = make_config(TOTAL_RULE + telegram_section(tg, chat_ids=chats))
    async with _app(cfg, backoff=QUICK) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        await app.delivery.deliver_due()
        assert await app.delivery.deliver_due() is None  # nothing left to retry
        rows = app.store._conn.execute(
            "SELECT destination, status, last_error FROM outbox ORDER BY destination"
        ).fetchall()
    assert sorted(m.chat_id for m in tg.sent) == [111, 333]
    assert [c.params["chat_id"] for c in tg.calls if c.method == "sendMessage"].count("222") == 1
    assert [(d, s) for d, s, _ in rows] == [
        ("111", "delivered"),
        ("222", "failed"),
        ("333", "delivered"),
    ]
    assert "222" in rows[1][2] and why in rows[1][2].lower()


# --- 6. groups, edits and chatter --------------------------------------------------------


async def test_group_command_works_edits_and_chatter_are_ignored(make_config, comet, tg):
    comet.default = reply_balance(42)
    cfg = make_config(TOTAL_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        await tg.message(GROUP_CHAT, f"/balance@{BOT_USERNAME}")
        await tg.message(GROUP_CHAT, "/balance@SomeOtherBot")
        await tg.message(GROUP_CHAT, "/balance", edited=True)
        await tg.message(USER_CHAT, "/status", edited=True)
        await tg.message(GROUP_CHAT, "what is our balance?")
        await tg.message(USER_CHAT, "/balance is low", command=False)
        await tg.message(STRANGER, "hello")
        await tg.wait_sent(1)  # the /balance answer (commands are answered concurrently)
        # Updates are dispatched in order, so once /help is answered the rest was seen.
        await tg.message(USER_CHAT, "/help")
        while not tg.sent or "commands" not in tg.sent[-1].text:
            await tg.wait_sent(len(tg.sent) + 1)
    assert [m.chat_id for m in tg.sent] == [GROUP_CHAT, USER_CHAT]
    assert "Balance: $42.00" in check_html(tg.sent[0].text)


async def test_commands_in_an_allowed_channel(make_config, comet, tg):
    channel = -100333333
    cfg = make_config(TOTAL_RULE + telegram_section(tg, chat_ids=[USER_CHAT, channel]))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        await tg.message(channel, "/status", channel=True, edited=True)
        await tg.message(-100444444, "/status", channel=True)
        await tg.message(channel, "/status", channel=True)
        await tg.wait_sent(2)
    assert [m.chat_id for m in tg.sent] == [-100444444, channel]
    assert check_html(tg.sent[0].text) == REFUSAL
    assert "No alert is firing" in check_html(tg.sent[1].text)


async def test_balance_argument_picks_the_account(make_config, comet, tg):
    comet.default = reply_balance(42)
    cfg = make_config(TOTAL_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        await tg.message(GROUP_CHAT, f"/balance@{BOT_USERNAME} MAIN")
        (answer,) = await tg.wait_sent(1)
    assert "main (example_user)" in check_html(answer.text)


async def test_a_balance_answer_told_to_wait_a_second_still_arrives(make_config, comet, tg):
    comet.default = reply_balance(42)
    cfg = make_config(TOTAL_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        tg.fail("sendMessage", retry_after(1))
        await tg.message(USER_CHAT, "/balance")
        (answer,) = await tg.wait_sent(1)
    assert "main (example_user)" in check_html(answer.text)
    refused = [c for c in tg.calls if c.method == "sendMessage" and c.status == 429]
    assert len(refused) == 1


async def test_joining_a_group_logs_its_chat_id(make_config, comet, tg, caplog):
    cfg = make_config(TOTAL_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        await tg.membership(-100555)
        await tg.membership(GROUP_CHAT)
        await tg.message(USER_CHAT, "/help")  # answered after the updates before it
        await tg.wait_sent(1)
    joined = [r.fields for r in caplog.records if r.getMessage() == "telegram.membership"]
    assert [(f["chat_id"], f["allowed"]) for f in joined] == [(-100555, False), (GROUP_CHAT, True)]
    assert "chat_ids" in joined[0]["hint"] and "hint" not in joined[1]
    polls = [c for c in tg.calls if c.method == "getUpdates"]
    assert polls[-1].params["allowed_updates"] == (
        '["message", "channel_post", "my_chat_member", "callback_query"]'  # buttons
    )


# --- robustness ------------------------------------------------------------------------


async def test_conflict_with_another_poller_is_logged_clearly(make_config, comet, tg, caplog):
    tg.fail("getUpdates", conflict())
    cfg = make_config(TOTAL_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        await tg.wait_calls("getUpdates", 2)  # polling goes on after the conflict
        await tg.message(USER_CHAT, "/help")
        await tg.wait_sent(1)
    (record,) = [r for r in caplog.records if r.getMessage() == "telegram.conflict"]
    assert record.levelno == logging.ERROR
    assert "terminated by other getUpdates request" in record.fields["reason"]
    assert "one balance-bot per token" in record.fields["hint"]


async def test_a_failing_handler_is_logged_and_polling_goes_on(make_config, comet, tg, caplog):
    cfg = make_config(TOTAL_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        notifier = app.notifiers["telegram"]

        async def broken(arg=""):
            raise RuntimeError("boom")

        notifier.context.commands.balance = broken
        await app.start_notifiers(listen=True)
        await tg.message(USER_CHAT, "/balance")
        await tg.message(USER_CHAT, "/help")
        (answer,) = await tg.wait_sent(1)
    assert "commands" in answer.text
    (record,) = [r for r in caplog.records if r.getMessage() == "telegram.command_failed"]
    assert record.fields["chat_id"] == USER_CHAT and "boom" in record.fields["reason"]


async def test_unreachable_telegram_at_start_is_retried(
    make_config, comet, tg, caplog, monkeypatch
):
    monkeypatch.setattr(TelegramNotifier, "start_backoff", Backoff(0.01, 0.02, 0))
    tg.fail("getMe", server_error(502), server_error(502))
    cfg = make_config(TOTAL_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        await tg.message(USER_CHAT, "/help")
        await tg.wait_sent(1)
    waits = [r for r in caplog.records if r.getMessage() == "telegram.unreachable"]
    assert len(waits) == 2 and not [
        r for r in caplog.records if r.getMessage() == "notifier.start_failed"
    ]


async def test_rejected_token_is_reported_without_the_token(tg, caplog):
    other = FakeTelegram("987654321:AAnotherTokenThatTheFakeDoesNotKnowXYZ")
    await other.start()
    try:
        notifier = _notifier(other)
        with pytest.raises(StartError, match="rejected the bot token") as info:
            await notifier.start(listen=True)
        assert SECRET not in str(info.value) and info.value.__cause__ is None
        with pytest.raises(DeliveryError) as sent:
            await notifier.send(str(USER_CHAT), "hi")
        assert sent.value.permanent and "rejected the bot token" in sent.value.reason
        assert SECRET not in sent.value.reason and str(USER_CHAT) in sent.value.reason
        await notifier.stop()
    finally:
        await other.stop()


@pytest.mark.parametrize(
    ("reply", "permanent", "retry_in", "text"),
    [
        (retry_after(7), False, 7.0, "rate limited"),
        (server_error(502), False, None, "Internal Server Error"),
        (forbidden("Forbidden: bot was kicked from the group chat"), True, None, "kicked"),
        (bad_request(), True, None, "Chat not found"),
        (migrated(-100777), True, None, "is now a supergroup with id -100777"),
    ],
)
async def test_send_maps_errors(tg, reply, permanent, retry_in, text):
    notifier = _notifier(tg)
    tg.fail("sendMessage", reply)
    try:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(str(USER_CHAT), "hi")
        error = info.value
        assert (error.permanent, error.retry_after) == (permanent, retry_in)
        assert text in error.reason and f"Telegram chat {USER_CHAT}" in error.reason
        await notifier.send(str(USER_CHAT), "<b>hi</b>")
        assert tg.sent[-1].text == "<b>hi</b>"
    finally:
        await notifier.stop()


async def test_unreachable_server_is_transient(tg):
    notifier = _notifier(tg)
    await tg.stop()
    try:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(str(USER_CHAT), "hi")
        assert not info.value.permanent and info.value.retry_after is None
    finally:
        await notifier.stop()


async def test_stop_is_safe_before_start_and_twice(tg):
    notifier = _notifier(tg)
    await notifier.stop()
    notifier = _notifier(tg)
    await notifier.start(listen=True)
    await notifier.stop()
    await notifier.stop()
    assert [c.method for c in tg.calls if c.method != "getUpdates"] == [
        "getMe",
        "setMyCommands",
        "deleteWebhook",
    ]


async def test_same_loop_no_thread_no_job_queue(tg):
    threads = threading.active_count()
    notifier = _notifier(tg)
    await notifier.start(listen=True)
    try:
        with pytest.warns(UserWarning, match="No `JobQueue` set up"):
            assert notifier._app.job_queue is None
        assert threading.active_count() == threads
    finally:
        await notifier.stop()


class _Source:
    """The smallest BalanceSource, for tests without an App."""

    timezone = ZoneInfo("UTC")


def _notifier(fake: FakeTelegram, chat_ids=(USER_CHAT,)) -> TelegramNotifier:
    config = TelegramConfig(token=TOKEN, chat_ids=list(chat_ids), api_url=fake.url)
    context = NotifierContext(ChatCommands(_Source()), ZoneInfo("UTC"))  # type: ignore[arg-type]
    return TelegramNotifier("telegram", config, context)


# --- format() -------------------------------------------------------------------------


def _message(lines, title="CometAPI balance: test", heading="🔴 Critical") -> Message:
    return Message(title, (Section(heading, tuple(lines)),))


def test_format_escapes_every_span_and_bolds_bold_ones():
    line = (Span("<b>x</b>", bold=True), Span(" a&b *_[ 'q' \"q\" </b>"))
    (part,) = render(_message([line], title="T <&>", heading="H&"))
    assert part == (
        "<b>T &lt;&amp;&gt;</b>\n\n<b>H&amp;</b>\n"
        "<b>&lt;b&gt;x&lt;/b&gt;</b> a&amp;b *_[ 'q' \"q\" &lt;/b&gt;"
    )


def test_format_splits_at_line_boundaries_and_repeats_title():
    lines = [(Span(f"line {i:04d} " + "&" * 150),) for i in range(400)]
    message = _message(lines)
    parts = render(message)
    assert parts == render(message)  # deterministic: delivery resumes by index
    assert len(parts) > 1
    originals = [f"line {i:04d} " + "&amp;" * 150 for i in range(400)]
    found = []
    for index, part in enumerate(parts, 1):
        check_html(part)
        head, body = part.split("\n\n", 1)
        assert head == f"<b>CometAPI balance: test</b> ({index}/{len(parts)})"
        first, *rest = body.split("\n")
        assert first == ("<b>🔴 Critical</b>" if index == 1 else "<b>🔴 Critical</b> (continued)")
        found.extend(rest)
    assert found == originals  # every line whole, in order, once


def test_format_single_title_part_has_no_marker():
    assert render(Message("Sorry, not allowed", ())) == ["<b>Sorry, not allowed</b>"]


def test_format_a_huge_line_or_title_cannot_exceed_the_limit():
    huge = "&<" * 5000
    parts = render(_message([(Span("x", bold=True), Span(huge))], title=huge, heading=huge))
    assert len(parts) == 1
    text = check_html(parts[0])
    assert text.endswith("…") and "x" in text


def test_format_counts_utf16_units():
    # Emoji take two UTF-16 units each; Telegram counts those.
    lines = [(Span("💸" * 199),) for _ in range(100)]
    for part in render(_message(lines)):
        assert len(part.encode("utf-16-le")) // 2 <= LIMIT
        check_html(part)


def test_format_many_sections_fit():
    sections = tuple(
        Section(f"account {i} <{i}>", tuple((Span(f"key {j} & co"),) for j in range(30)))
        for i in range(40)
    )
    parts = render(Message("CometAPI balance", sections))
    seen = "\n".join(check_html(p) for p in parts)
    for i in range(40):
        assert f"account {i} <{i}>\n" in seen


# --- the program as a user runs it -----------------------------------------------------


async def test_run_and_check_as_real_processes(tmp_path, comet, tg):
    from tests.conftest import QUERY_KEY
    from tests.process import BotProcess, run_bot

    comet.default = reply_balance(10)
    path = tmp_path / "rules.toml"
    path.write_text(f"""
[bot]
interval = "1h"
state_path = "{tmp_path / "state.db"}"
http_listen = ""

[[accounts]]
name = "main"
key = "${{TEST_QUERY_KEY}}"
url = "{comet.url}"
{TOTAL_RULE}
[notifiers.telegram]
token = "${{TELEGRAM_BOT_TOKEN}}"
chat_ids = [{USER_CHAT}]
api_url = "{tg.url}"
""")
    env = {"TEST_QUERY_KEY": QUERY_KEY, "TELEGRAM_BOT_TOKEN": TOKEN}
    bot = await BotProcess("run", "-c", str(path), "--log-level", "DEBUG", env=env).start()
    await bot.wait_for(lambda lines: any("telegram.listening" in line for line in lines))
    (alert,) = await tg.wait_sent(1)
    assert "WARNING · main / total: $10.00 left" in check_html(alert.text)
    await tg.message(STRANGER, "/balance")
    await tg.message(USER_CHAT, "/balance")
    refusal, answer = (await tg.wait_sent(3))[1:]
    assert (refusal.chat_id, answer.chat_id) == (STRANGER, USER_CHAT)
    assert "Balance: $10.00" in check_html(answer.text)
    assert await bot.stop() == 0
    (refused,) = [line for line in bot.lines if "telegram.refused" in line]
    assert f"chat_id={STRANGER}" in refused
    assert "bot.stopped" in bot.stderr

    comet.default = reply_balance(100)  # resolves: `check` sends, and never polls updates
    calls = len(tg.calls)
    check = await run_bot("check", "-c", str(path), "--log-level", "DEBUG", env=env)
    assert check.proc.returncode == 0, check.stderr
    assert "RESOLVED" in check_html(tg.sent[-1].text)
    # and the alert's message is edited to say so, its buttons gone
    assert {c.method for c in tg.calls[calls:]} == {"getMe", "sendMessage", "editMessageText"}
    (edit,) = tg.edits
    assert edit.message_id == alert.message_id and edit.reply_markup is None
    assert "✅ Resolved" in check_html(edit.text)
    for text in (bot.stderr, bot.stdout, check.stderr, check.stdout):
        assert SECRET not in text


def _accounts(*names: str) -> Message:
    """A /balance of accounts with 2,000 keys each (the render's own tests)."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    keys = tuple(KeyBalance(f"key-{i:04d}", 5, 1) for i in range(2000))
    views = [AccountView(n, Snapshot(n, "", 100, 1, None, keys, at)) for n in names]
    return balance_message(views, at, ZoneInfo("UTC"))


@pytest.mark.parametrize("accounts", [("main",), ("main", "other")])
def test_a_cut_answer_numbers_what_is_sent_and_suggests_one_account_only_among_several(
    accounts,
):
    """Issue 20, defect 7: the parts said (1/44)…(4/44) though five were sent,
    and a one-account setup was told to ask for one account."""
    message = _accounts(*accounts)
    parts = [
        html.unescape(re.sub(r"<[^>]+>", "", text))
        for text, _ in render_pieces(message, "/balance")
    ]
    assert [p.split("\n")[0] for p in parts] == [f"CometAPI balance ({i}/5)" for i in range(1, 6)]
    shown = sum(p.count(": $5.00 left") for p in parts)
    note = parts[4].split("\n\n", 1)[1]
    match = re.fullmatch(r"… (\d+) keys not shown \(a reply holds at most 5 messages\)(.*)", note)
    assert match, note
    assert shown + int(match[1]) == 2000 * len(accounts)
    several = "; ask for one account: /balance <account>"
    assert match[2] == (several if len(accounts) > 1 else "")
    assert len(render_pieces(message)) > 5  # an alert is never cut: only answers are


async def test_a_command_storm_from_one_chat_makes_one_answer_at_a_time(make_config, comet, tg):
    """Issue 20, defect 3: while a /balance is being answered in a chat, a repeat
    there is told once to wait, further repeats get nothing; other commands and
    other chats go on, and once answered, /balance answers again."""
    release = asyncio.Event()
    answer = reply_balance(42)

    async def slow(request):
        await release.wait()
        return await answer(request)

    comet.default = slow
    cfg = make_config(TOTAL_RULE + telegram_section(tg))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=True)
        for _ in range(3):
            await tg.message(USER_CHAT, "/balance")
        await tg.message(USER_CHAT, "/help")
        await tg.message(USER_CHAT, "/id")
        await tg.message(GROUP_CHAT, "/balance")  # another chat: not held back
        await tg.wait_sent(3)  # help, id, and the one note
        early = [check_html(s.text) for s in tg.sent]
        release.set()
        await tg.wait_sent(5)  # both chats' answers
        await tg.message(USER_CHAT, "/balance")  # answered again
        await tg.wait_sent(6)
    texts = [(s.chat_id, check_html(s.text)) for s in tg.sent]
    busy = "Still working on your last /balance; ask again once it is answered."
    assert [t for _, t in texts].count(busy) == 1
    assert any(t.startswith("balance-bot commands") for t in early)
    assert f"chat {USER_CHAT} · user {USER_CHAT}" in early
    answers = [chat for chat, t in texts if "Balance: $42.00" in t]
    assert sorted(answers) == sorted([USER_CHAT, USER_CHAT, GROUP_CHAT])
    assert len(texts) == 6
