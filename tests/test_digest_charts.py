"""Charts in the digest (`[digest] charts = true`, SPEC 6b): each account's 7-day
chart after the digest's text, through the outbox like any message — Telegram
as a photo, Slack as an upload, Apprise as an attachment where the service
takes one, the webhook not at all; retried, never lost, sent once."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from aiohttp import web

from bot.app.service import App
from bot.engine.message import Message, Picture
from bot.engine.model import MessageKind
from bot.state.codec import decode_payload, encode_payload
from bot.state.types import OutboxItem
from fakes.cometapi import quota, reply_balance
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram, server_error
from fakes.webhook import FakeWebhook
from tests.conftest import ALERTS, APP_TOKEN, BOT_TOKEN, QUERY_KEY, TG_TOKEN
from tests.helpers import FAST, QUICK, Clock
from tests.pngs import assert_chart
from tests.process import BotProcess

START = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
DAY = date(2026, 3, 1)
CHAT = 111111
DIGEST = "CometAPI daily digest"
RULES = """
[[rules]]
name = "low"
target = "total"
below = 5
"""


class Spending:
    """$1 every five minutes from $1000."""

    def __init__(self) -> None:
        self.polls = 0

    async def __call__(self, _: web.Request) -> web.StreamResponse:
        self.polls += 1
        return web.json_response(quota(1000 - self.polls, [], total_used_quota=self.polls))


def sections(tg: FakeTelegram, slack: FakeSlack, hook: FakeWebhook, charts: bool = True) -> str:
    return f"""
{RULES}
[[accounts]]
name = "spare"
key = "{{key}}"
url = "{{url}}"

[digest]
at = "09:00"
charts = {"true" if charts else "false"}

[notifiers.telegram]
token = "{TG_TOKEN}"
chat_ids = [{CHAT}]
api_url = "{tg.url}"

[notifiers.slack]
bot_token = "{BOT_TOKEN}"
app_token = "{APP_TOKEN}"
channel = "{ALERTS}"
api_url = "{slack.url}"

[notifiers.webhook]
url = "{hook.url}"
"""


@pytest.fixture
async def hook():
    fake = FakeWebhook()
    await fake.start()
    yield fake
    await fake.stop()


def config(make_config, comet, tg, slack, hook, charts: bool = True):
    text = sections(tg, slack, hook, charts).replace("{key}", comet.key).replace("{url}", comet.url)
    # the second account goes after the first one make_config writes
    accounts, rest = text.split("[digest]")
    return make_config(accounts.replace(RULES, "") + RULES + "\n[digest]" + rest)


async def polled(app: App, clock: Clock, polls: int = 24) -> None:
    for _ in range(polls):
        clock.advance(300)
        await app.cycle(notify=False)


async def test_each_accounts_chart_follows_the_digest_text(make_config, comet, tg, slack, hook):
    comet.default = Spending()
    clock = Clock(START)
    cfg = config(make_config, comet, tg, slack, hook)
    async with App(cfg, retry=FAST, clock=clock, backoff=QUICK) as app:
        await polled(app, clock)
        await app.start_notifiers(listen=False)
        assert await app.send_digest(DAY)
        await app.delivery.deliver_due()
        rows = [
            (notifier, status, json.loads(payload)["kind"])
            for notifier, status, payload in app.store._conn.execute(
                "SELECT notifier, status, events FROM outbox ORDER BY id"
            )
        ]
    # Telegram: the text, then a photo per account
    (text,) = [s for s in tg.sent if DIGEST in s.text]
    assert [p.filename for p in tg.photos] == ["main-7d.png", "spare-7d.png"]
    for photo in tg.photos:
        assert_chart(photo.data)
        assert photo.chat_id == CHAT and photo.message_id > text.message_id  # after the text
    assert "balance $" in tg.photos[0].caption
    # Slack: the digest posted, then each chart uploaded into the channel
    assert any(DIGEST in p.text for p in slack.posted)
    assert [(f.channel, f.filename) for f in slack.files] == [
        (ALERTS, "main-7d.png"),
        (ALERTS, "spare-7d.png"),
    ]
    assert_chart(slack.files[1].data)
    # the webhook: the digest, and no image
    (received,) = hook.received
    assert received.json["kind"] == "digest"
    assert b"PNG" not in received.body and "chart" not in received.body.decode()
    assert {status for _, status, _ in rows} == {"delivered"}
    assert [k for n, _, k in rows if n == "webhook"] == ["digest"]  # no chart row at all
    per_notifier = [(n, k) for n, _, k in rows if n == "telegram"]
    assert per_notifier == [("telegram", "digest"), ("telegram", "chart"), ("telegram", "chart")]


async def test_without_charts_the_digest_is_text_only(make_config, comet, tg, slack, hook):
    comet.default = Spending()
    clock = Clock(START)
    cfg = config(make_config, comet, tg, slack, hook, charts=False)
    assert cfg.digest is not None and cfg.digest.charts is False
    async with App(cfg, retry=FAST, clock=clock) as app:
        await polled(app, clock, 3)
        await app.start_notifiers(listen=False)
        assert await app.send_digest(DAY)
        await app.delivery.deliver_due()
    assert [s for s in tg.sent if DIGEST in s.text] and not tg.photos and not slack.files


async def test_a_chart_that_fails_is_retried_and_sent_once_after_a_restart(
    make_config, comet, tg, slack, hook
):
    """The text went out; the bot stops before the picture did (its send
    failed): after the restart the picture goes out, once, and the text is not
    sent again."""
    comet.default = Spending()
    clock = Clock(START)
    cfg = config(make_config, comet, tg, slack, hook)
    tg.fail_always("sendPhoto", server_error(502))
    async with App(cfg, retry=FAST, clock=clock, backoff=QUICK) as app:
        await polled(app, clock)
        await app.start_notifiers(listen=False)
        assert await app.send_digest(DAY)
        await app.delivery.deliver_due()
    assert len([s for s in tg.sent if DIGEST in s.text]) == 1 and not tg.photos
    assert [c.status for c in tg.calls if c.method == "sendPhoto"] == [502]

    tg._always.clear()  # Telegram is back
    clock.advance(3600)
    async with App(cfg, retry=FAST, clock=clock, backoff=QUICK) as app:
        await app.start_notifiers(listen=False)
        await app.delivery.deliver_due()
        await app.delivery.deliver_due()  # nothing is sent twice
        assert not await app.send_digest(DAY)  # that date had its digest
        pending = app.store._conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE status != 'delivered'"
        ).fetchone()[0]
    assert [p.filename for p in tg.photos] == ["main-7d.png", "spare-7d.png"]
    assert len([s for s in tg.sent if DIGEST in s.text]) == 1
    assert pending == 0


def test_a_chart_row_keeps_its_picture_through_the_codec():
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    picture = Picture(png, "main-7d.png", ("main · 7d", "balance $1.00"), "Balance of main")
    message = Message("main · 7d", (), kind="chart", pictures=(picture,))
    text = encode_payload(OutboxItem("telegram", "1", (), MessageKind.CHART, message))
    stored = json.loads(text)
    assert base64.b64decode(stored["message"]["pictures"][0]["png"]) == png
    kind, events, decoded, edit_of = decode_payload(text)
    assert kind is MessageKind.CHART and events == () and edit_of is None
    assert decoded is not None and decoded.pictures == (picture,)
    # a digest row from before pictures reads as before
    plain = Message("digest", ())
    assert (
        decode_payload(encode_payload(OutboxItem("t", "1", (), MessageKind.DIGEST, plain)))[2]
        == plain
    )


async def test_apprise_gets_the_chart_as_an_attachment_where_the_service_takes_one(
    make_config, comet, hook
):
    comet.default = Spending()
    clock = Clock(START)
    url = f"json://127.0.0.1:{hook.port}/hooks/x"
    cfg = make_config(
        RULES
        + f'\n[digest]\nat = "09:00"\ncharts = true\n\n[notifiers.apprise]\nurls = ["{url}"]\n'
    )
    async with App(cfg, retry=FAST, clock=clock, backoff=QUICK) as app:
        await polled(app, clock, 3)
        await app.start_notifiers(listen=False)
        assert await app.send_digest(DAY)
        await app.delivery.deliver_due()
        notifier = app.fleet.notifiers["apprise"]
        (target,) = notifier._targets.values()
        assert target.attachments  # json:// takes attachments
        # a service that takes none is sent nothing for a picture
        object.__setattr__(target, "attachments", False)
        picture = Picture(b"\x89PNG\r\n\x1a\n", "x.png", ("x · 7d",))
        await notifier.send("1", notifier.picture(picture))
    text, chart = hook.received  # nothing more after the flag was off
    assert DIGEST in text.json["title"] and not text.json.get("attachments")
    (attached,) = chart.json["attachments"]
    assert attached["filename"] == "main-7d.png" and attached["mimetype"] == "image/png"
    assert_chart(base64.b64decode(attached["base64"]))
    assert chart.json["title"] == "main · 7d" and "balance $" in chart.json["message"]


async def test_sigkill_between_the_text_and_the_picture_sends_each_once(write_config, comet, tg):
    """A real `balance-bot run`: the digest's text goes out, the process is
    killed (SIGKILL) while Telegram has the photo's upload in hand and has not
    answered; the next run sends the photo, once, and neither the text nor a
    second digest again."""
    comet.default = reply_balance(42)
    at = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%H:%M:%S")
    path = write_config(
        rules=RULES,
        extra=f"""
[digest]
at = "{at}"
charts = true

[notifiers.telegram]
token = "{TG_TOKEN}"
chat_ids = [{CHAT}]
api_url = "{tg.url}"
""",
    )
    env = {"TEST_QUERY_KEY": QUERY_KEY}
    held = tg.hang("sendPhoto")
    first = await BotProcess("run", "-c", path, env=env).start()
    await tg.wait_calls("sendPhoto", 1, within=60)  # the text went before it
    assert len([s for s in tg.sent if DIGEST in s.text]) == 1
    first.kill()
    await first.wait()
    held.set()  # the upload Telegram had in hand fails: nothing was shown
    second = await BotProcess("run", "-c", path, env=env).start()
    (photo,) = await tg.wait_photos(1, within=60)
    assert await second.stop() == 0  # SIGTERM: whatever is under way finishes
    assert photo.filename == "main-7d.png" and photo.chat_id == CHAT
    assert_chart(photo.data)
    assert len(tg.photos) == 1
    assert len([s for s in tg.sent if DIGEST in s.text]) == 1
