"""The fakes take pictures as the platforms do, with the real clients: Telegram's
sendPhoto (multipart) and Slack's v2 upload, each refusing what the platform
refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from telegram import Bot
from telegram.error import BadRequest

from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram
from tests.conftest import ALERTS, APP_TOKEN, BOT_TOKEN, TG_TOKEN

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
CHAT = 111111


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
    fake.add_channel("C0NOTIN001", "elsewhere", is_member=False)
    await fake.start()
    yield fake
    await fake.stop()


async def test_send_photo_records_the_upload_and_refuses_a_long_caption(tg, bot):
    sent = await bot.send_photo(
        CHAT, PNG, filename="a.png", caption="<b>x</b> &amp; y", parse_mode="HTML"
    )
    assert sent.photo and sent.caption == "<b>x</b> &amp; y"
    (photo,) = tg.photos
    assert photo.data == PNG and photo.filename == "a.png" and photo.chat_id == CHAT
    with pytest.raises(BadRequest, match="caption is too long"):
        await bot.send_photo(CHAT, PNG, caption="x" * 1025)
    # 1024 visible characters are fine, however long the markup around them
    await bot.send_photo(CHAT, PNG, caption="<b>" + "&amp;" * 1024 + "</b>", parse_mode="HTML")
    with pytest.raises(BadRequest, match="no photo"):
        await bot.send_photo(CHAT, "not-a-file-id")
    assert len(tg.photos) == 2


async def test_slack_upload_v2_shares_the_file_and_refuses_without_the_scope(slack):
    async with aiohttp.ClientSession() as session:
        web = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url, session=session)
        await web.files_upload_v2(
            channel=ALERTS, file=PNG, filename="a.png", initial_comment="hi", alt_txt="alt"
        )
        (shared,) = slack.files
        assert (shared.channel, shared.data, shared.initial_comment) == (ALERTS, PNG, "hi")
        assert shared.alt_txt == "alt"
        with pytest.raises(SlackApiError) as outside:
            await web.files_upload_v2(channel="C0NOTIN001", file=PNG, filename="a.png")
        assert outside.value.response["error"] == "not_in_channel"
        slack.scopes.discard("files:write")
        with pytest.raises(SlackApiError) as refused:
            await web.files_upload_v2(channel=ALERTS, file=PNG, filename="a.png")
    assert refused.value.response["error"] == "missing_scope"
    assert refused.value.response["needed"] == "files:write"
    assert len(slack.files) == 1


async def test_the_upload_url_takes_exactly_the_announced_bytes(slack):
    async with aiohttp.ClientSession() as session:
        web = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url, session=session)
        ticket = await web.files_getUploadURLExternal(filename="a.png", length=len(PNG))
        async with session.post(ticket["upload_url"], data=PNG[:-1]) as short:
            assert short.status == 400
        with pytest.raises(SlackApiError) as missing:
            await web.files_completeUploadExternal(
                files=[{"id": ticket["file_id"]}], channel_id=ALERTS
            )
        assert missing.value.response["error"] == "file_not_found"
        async with session.post(ticket["upload_url"], data=PNG) as whole:
            assert whole.status == 200
        done = await web.files_completeUploadExternal(
            files=[{"id": ticket["file_id"], "title": "t"}], channel_id=ALERTS
        )
    assert done["files"][0]["id"] == ticket["file_id"] and slack.files[0].title == "t"
