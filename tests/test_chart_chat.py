"""/chart in Telegram (sendPhoto) and Slack (/balance chart, the v2 upload), with
the real python-telegram-bot and slack-sdk against the fakes: the pictures are
PNGs within SPEC 6b's limits, their captions say the numbers `check --json`
says, refused chats get no picture, and one answer holds at most 5 pictures."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import UTC, datetime

from aiohttp import web

from bot.app.check import build
from bot.app.commands import REFUSAL
from bot.app.service import App
from fakes.cometapi import quota
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram
from tests.conftest import ALERTS, APP_TOKEN, BOT_TOKEN, TG_TOKEN
from tests.helpers import FAST, Clock
from tests.pngs import assert_chart

START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
USER_CHAT, STRANGER = 111111, 999
RULES = """
[[rules]]
name = "account-low"
target = "total"
below = 700
recover_above = 750

[[rules]]
name = "runway"
target = "total"
days_left_below = 3
"""


def accounts(names: list[str], url: str, key: str) -> str:
    return "".join(f'\n[[accounts]]\nname = "{n}"\nkey = "{key}"\nurl = "{url}"\n' for n in names)


def telegram_section(fake: FakeTelegram) -> str:
    return f"""
[notifiers.telegram]
token = "{TG_TOKEN}"
chat_ids = [{USER_CHAT}]
api_url = "{fake.url}"
"""


def slack_section(fake: FakeSlack) -> str:
    return f"""
[notifiers.slack]
bot_token = "{BOT_TOKEN}"
app_token = "{APP_TOKEN}"
channel = "{ALERTS}"
api_url = "{fake.url}"
"""


class Spending:
    """$2.50 spent every five minutes from $1000: $720 a day, about a day left."""

    def __init__(self) -> None:
        self.polls = 0

    async def __call__(self, _: web.Request) -> web.StreamResponse:
        self.polls += 1
        used = 2.5 * self.polls
        return web.json_response(quota(1000 - used, [], total_used_quota=used))


async def spent_hours(app: App, clock: Clock, hours: int) -> dict:
    """Polls every five minutes for `hours`; the last one's `check --json` object."""
    result = None
    for _ in range(hours * 12):
        clock.advance(300)
        result = await app.cycle(notify=False)
    assert result is not None and result.committed
    model = app.model
    burn = {a: f.burn.total for a, f in model.flows.items()}
    report = build(result.results, model.rules, model.state, model.latest, model.now(), burn)
    return report.data


def numbers(caption: str) -> tuple[float, float, float]:
    """(balance, burn per day, days left) as a caption says them."""
    found = re.search(r"balance \$([\d,.]+) · burn \$([\d,.]+)/day · ≈ ([\d.]+) days left", caption)
    assert found, caption
    balance, burn, left = (float(g.replace(",", "")) for g in found.groups())
    return balance, burn, left


def assert_matches_check(caption: str, account: dict) -> None:
    balance, burn, left = numbers(caption)
    assert balance == round(account["total_quota"], 2)
    assert burn == round(account["burn_usd_per_day"], 2)
    assert left == round(account["days_left"], 1)


async def test_telegram_chart_is_a_photo_with_the_numbers_of_check(make_config, comet, tg):
    comet.default = Spending()
    clock = Clock(START)
    cfg = make_config(RULES + telegram_section(tg), bot='burn_window = "24h"')
    async with App(cfg, retry=FAST, clock=clock) as app:
        data = await spent_hours(app, clock, 8)
        await app.start_notifiers(listen=True)
        await tg.message(USER_CHAT, "/chart")
        (photo,) = await tg.wait_photos(1)
        await tg.message(USER_CHAT, "/chart main 24h")
        _, day = await tg.wait_photos(2)
        await tg.message(STRANGER, "/chart", user_id=4242)
        (refusal,) = await tg.wait_sent(1)
    assert photo.chat_id == USER_CHAT and photo.parse_mode == "HTML"
    assert photo.filename == "main-7d.png"
    assert_chart(photo.data)
    caption = html.unescape(re.sub(r"<[^>]+>", "", photo.caption))
    assert caption.startswith("main · 7d\n")
    (account,) = data["accounts"]
    assert account["days_left"] is not None  # depleting: the forecast is drawn
    assert_matches_check(caption, account)
    assert day.filename == "main-24h.png" and day.data != photo.data
    assert_chart(day.data)
    # a stranger: the refusal, no picture, no numbers
    assert refusal.chat_id == STRANGER
    assert html.unescape(re.sub(r"<[^>]+>", "", refusal.text)) == REFUSAL
    assert len(tg.photos) == 2 and not re.search(r"\d", refusal.text)


async def test_telegram_chart_of_three_accounts_and_of_none_yet(make_config, comet, tg):
    comet.default = Spending()
    clock = Clock(START)
    extra = accounts(["spare", "lab"], comet.url, comet.key)
    cfg = make_config(extra + RULES + telegram_section(tg), bot='burn_window = "24h"')
    async with App(cfg, retry=FAST, clock=clock) as app:
        await app.start_notifiers(listen=True)
        await tg.message(USER_CHAT, "/chart")  # nothing polled yet: no history
        (none_yet,) = await tg.wait_sent(1)
        pictures_before = len(tg.photos)
        await spent_hours(app, clock, 1)
        await tg.message(USER_CHAT, "/chart 24h")
        photos = await tg.wait_photos(3)
    assert "main: no history in the last 7d yet" in html.unescape(none_yet.text)
    assert "spare: no history" in none_yet.text and pictures_before == 0
    assert sorted(p.filename for p in photos) == ["lab-24h.png", "main-24h.png", "spare-24h.png"]
    for photo in photos:
        assert_chart(photo.data)
        assert "gathering data" in photo.caption  # an hour of a 24h burn window


async def test_an_answer_holds_at_most_five_pictures(make_config, comet, tg):
    comet.default = Spending()
    clock = Clock(START)
    names = [f"acct{i}" for i in range(6)]
    cfg = make_config(accounts(names, comet.url, comet.key) + RULES + telegram_section(tg))
    async with App(cfg, retry=FAST, clock=clock) as app:
        await spent_hours(app, clock, 1)
        await app.start_notifiers(listen=True)
        await tg.message(USER_CHAT, "/chart")
        (note,) = await tg.wait_sent(1)  # the text comes after the pictures
    assert len(tg.photos) == 5
    assert "2 more accounts not shown" in note.text and "at most 5 pictures" in note.text


async def test_slack_chart_is_uploaded_into_the_channel_with_the_numbers(make_config, comet, slack):
    comet.default = Spending()
    clock = Clock(START)
    cfg = make_config(RULES + slack_section(slack), bot='burn_window = "24h"')
    async with App(cfg, retry=FAST, clock=clock) as app:
        data = await spent_hours(app, clock, 8)
        await app.start_notifiers(listen=True)
        await slack.slash("chart", channel_id=ALERTS)
        (shared,) = await slack.wait_files(1)
        refused = await slack.slash("chart", channel_id="C0ELSEWHERE")
        (refusal,) = await slack.wait_responses(refused)
    assert shared.channel == ALERTS and shared.filename == "main-7d.png"
    assert_chart(shared.data)
    assert shared.alt_txt.startswith("Balance of main over 7d")
    comment = html.unescape(shared.initial_comment)
    assert comment.startswith("*main · 7d*\n")
    assert_matches_check(comment, data["accounts"][0])
    assert [c.method for c in slack.calls if c.method.startswith("files.")] == [
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]
    assert REFUSAL in refusal["text"] and len(slack.files) == 1


async def test_slack_chart_without_files_write_names_the_scope(make_config, comet, slack):
    slack.scopes.discard("files:write")
    comet.default = Spending()
    clock = Clock(START)
    cfg = make_config(RULES + slack_section(slack))
    async with App(cfg, retry=FAST, clock=clock) as app:
        await spent_hours(app, clock, 1)
        await app.start_notifiers(listen=True)
        envelope = await slack.slash("chart", channel_id=ALERTS)
        (answer,) = await slack.wait_responses(envelope)
    assert "files:write" in answer["text"] and "reinstall" in answer["text"]
    assert answer["response_type"] == "ephemeral"
    assert not slack.files
    (call,) = slack.calls_of("files.getUploadURLExternal")
    assert call.status == 200  # Slack says missing_scope in the body


class Stalled:
    """CometAPI hanging until `release` is set, then spending on."""

    def __init__(self, spending: Spending) -> None:
        self.spending = spending
        self.asked, self.release = asyncio.Event(), asyncio.Event()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.asked.set()
        await self.release.wait()
        return await self.spending(request)


async def test_a_chart_is_never_held_up_behind_a_balance(make_config, comet, tg):
    spending = Spending()
    comet.default = spending
    clock = Clock(START)
    cfg = make_config(RULES + telegram_section(tg))
    async with App(cfg, retry=FAST, clock=clock) as app:
        await spent_hours(app, clock, 1)
        await app.start_notifiers(listen=True)
        comet.default = stalled = Stalled(spending)
        clock.advance(120)  # the data is old: /balance fetches, and CometAPI hangs
        await tg.message(USER_CHAT, "/balance")
        async with asyncio.timeout(10):
            await stalled.asked.wait()
        await tg.message(USER_CHAT, "/chart")
        (photo,) = await tg.wait_photos(1)
        assert not tg.sent  # /balance is still waiting for CometAPI
        stalled.release.set()
        (balance,) = await tg.wait_sent(1)
    assert_chart(photo.data)
    assert "main" in balance.text
