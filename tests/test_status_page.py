"""The status page (SPEC 6b, `[web] status_page`) of a serving App against the
fake CometAPI: over plain HTTP (the token, what the answers never carry, the
charts' addresses) and in a real browser — the distribution's Chromium driven
by Playwright: the page renders with each account's numbers, its charts load,
dark mode follows the browser's preference, and the token is enforced. The
browser test never skips: without /usr/bin/chromium it fails and says so."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot import config as config_mod
from bot.app.service import App
from bot.common import secrets
from bot.config import ConfigError
from bot.engine.model import Ack, AlertKey
from bot.ops.status import authorized, cookie_value
from fakes.cometapi import FakeCometAPI, quota
from tests.conftest import QUERY_KEY
from tests.helpers import FAST, Clock
from tests.pngs import assert_chart

CHROMIUM = "/usr/bin/chromium"
TOKEN = "status-SECRET-token-7f3a"
START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
ARTIFACTS = Path(os.environ.get("BALANCE_BOT_TEST_ARTIFACTS", tempfile.gettempdir()))


POLLS = 96  # eight hours of five-minute polls


class Spending:
    """Per account: $2.50 every five minutes from $1000 (main) or $400 (lab & <co>),
    for POLLS polls; then nothing (the serving App's own polls change nothing)."""

    def __init__(self, start: float) -> None:
        self.start, self.polls = start, 0

    async def __call__(self, _: web.Request) -> web.StreamResponse:
        self.polls = min(self.polls + 1, POLLS)
        used = 2.5 * self.polls
        keys = [
            {"name": "prod-api", "remain_quota": 50 - used / 10, "used_quota": used},
            {"name": "batch <b>", "remain_quota": 3, "used_quota": 1},
        ]
        return web.json_response(quota(self.start - used, keys, total_used_quota=used))


def config_text(tmp: Path, comet: FakeCometAPI, other: FakeCometAPI, token: str) -> str:
    web_token = f'token = "{token}"' if token else ""
    return f"""
[bot]
interval = "30s"
state_path = "{tmp / "state.db"}"
http_listen = "127.0.0.1:0"
burn_window = "24h"
timezone = "Europe/Berlin"

[[accounts]]
name = "main"
key = "{QUERY_KEY}"
url = "{comet.url}"

[[accounts]]
name = "lab & <co>"
key = "{QUERY_KEY}"
url = "{other.url}"

[[rules]]
name = "low"
target = "total"
below = 900
recover_above = 950

[[rules]]
name = "runway"
target = "total"
days_left_below = 3

[web]
status_page = true
{web_token}
"""


class Served:
    def __init__(self, app: App) -> None:
        self.app = app

    @property
    def base(self) -> str:
        assert self.app.web is not None
        return f"http://127.0.0.1:{self.app.web.port}"

    async def get(self, path: str, **kw) -> aiohttp.ClientResponse:
        async with aiohttp.ClientSession() as session:
            response = await session.get(self.base + path, allow_redirects=False, **kw)
            await response.read()
            return response


@pytest.fixture
async def other() -> AsyncIterator[FakeCometAPI]:
    fake = FakeCometAPI(QUERY_KEY)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def serve(tmp_path, comet, other) -> AsyncIterator:
    """A serving App with eight hours of history (a fake clock, five minutes a
    poll), so that burn rates and forecasts exist."""
    running: list[tuple[App, asyncio.Event, asyncio.Task]] = []

    async def start(token: str = TOKEN) -> Served:
        comet.default, other.default = Spending(1000), Spending(400)
        cfg = config_mod.parse(config_text(tmp_path, comet, other, token))
        for secret in cfg.secrets():
            secrets.register(secret)
        clock = Clock(START)
        app = App(cfg, retry=FAST, clock=clock)
        await app.__aenter__()
        for _ in range(POLLS):
            clock.advance(300)
            await app.cycle(notify=False)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(app.serve(stop, ready=lambda _: ready.set()))
        await asyncio.wait_for(ready.wait(), 20)
        running.append((app, stop, task))
        return Served(app)

    yield start
    for app, stop, task in running:
        stop.set()
        await asyncio.wait_for(task, 15)
        await app.__aexit__(None, None, None)


# --- over plain HTTP ---------------------------------------------------------------


async def test_without_the_token_the_page_and_charts_are_401_and_health_stays_open(serve):
    site = await serve()
    for path in ("/", "/chart/main.png?window=7d", "/?token=wrong"):
        response = await site.get(path)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await site.get("/", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert (await site.get("/healthz")).status == 200
    assert (await site.get("/metrics")).status == 200


async def test_the_page_shows_the_numbers_and_never_a_key_or_token(serve):
    site = await serve()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(site.base + "/", headers=bearer) as response:
            page = await response.text()
            headers = response.headers
        charts = re.findall(r'src="([^"]+)"', page)
        bodies = []
        for src in charts:
            async with session.get(site.base + src.replace("&amp;", "&"), headers=bearer) as r:
                assert r.status == 200 and r.content_type == "image/png"
                bodies.append(await r.read())
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
    assert '<html lang="en">' in page and "<script" not in page
    assert '<meta http-equiv="refresh" content="30">' in page
    assert "$760.00" in page  # main: $1000 less 96 polls of $2.50
    # the serving App polls too (the spending has stopped by then): rates move a little
    assert re.search(r"<dd>\$7[12]\d\.\d\d/day</dd>", page) and re.search(r"<dd>≈ 1\.\d days", page)
    assert "lab &amp; &lt;co&gt;" in page and "batch &lt;b&gt;" in page  # escaped
    assert charts == ["/chart/main.png?window=7d", "/chart/lab%20%26%20%3Cco%3E.png?window=7d"]
    for png in bodies:
        assert_chart(png)
    assert "WARNING · main / total: $760.00 left (below $900.00; resolves at $950.00)" in page
    everything = page + "".join(headers.values())
    assert TOKEN not in everything and QUERY_KEY not in everything


async def test_snoozed_and_acknowledged_alerts_say_by_whom_and_until_when(serve):
    site = await serve(token="")
    app = site.app
    assert app.commands.actions is not None
    app.commands.actions.snooze("runway 2h", "@ann")  # both accounts' runway alerts
    now = app.model.now()
    app.store.add_acks([Ack(AlertKey("low", "main", "total"), "@bob", now)])
    async with aiohttp.ClientSession() as session, session.get(site.base + "/") as response:
        page = await response.text()
    rows = re.findall(
        r"<tr><td class=\"warning\">(\w+)</td><td>([^<]+)</td>"
        r"<td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>",
        page,
    )
    states = sorted((state, who) for state, _, _, _, who in rows)
    assert states == [
        ("acknowledged", "@bob"),
        ("firing", ""),
        ("snoozed", "@ann"),
        ("snoozed", "@ann"),
    ]
    until = [u for state, _, _, u, _ in rows if state == "snoozed"]
    assert until == [until[0]] * 2 and re.fullmatch(r"2026-03-01 \d\d:\d\d", until[0])


async def test_a_token_in_the_address_becomes_a_cookie_and_leaves_the_address(serve):
    site = await serve()
    moved = await site.get(f"/?token={TOKEN}")
    assert moved.status == 303 and moved.headers["Location"] == "/"
    cookie = moved.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    value = cookie_value(TOKEN)
    page = await site.get("/", cookies={"balance_bot_status": value})
    assert page.status == 200
    assert (await site.get("/", cookies={"balance_bot_status": "0" * 64})).status == 401


async def test_a_new_token_applies_on_reload(serve, tmp_path, comet, other, caplog):
    site = await serve()
    new = config_mod.parse(config_text(tmp_path, comet, other, "another-SECRET-token"))
    await site.app.reload(new)
    assert (await site.get("/", headers={"Authorization": f"Bearer {TOKEN}"})).status == 401
    fresh = await site.get("/", headers={"Authorization": "Bearer another-SECRET-token"})
    assert fresh.status == 200
    # turning the page off needs a restart: it stays, and the log says so
    off = config_mod.parse(
        config_text(tmp_path, comet, other, "").replace("status_page = true", "status_page = false")
    )
    await site.app.reload(off)
    assert (await site.get("/")).status == 200
    (record,) = [r for r in caplog.records if r.getMessage() == "config.needs_restart"]
    assert record.fields["setting"] == "web.status_page"


async def test_unknown_charts_are_404_and_odd_windows_refused(serve):
    site = await serve(token="")  # no token: the page is open
    assert (await site.get("/")).status == 200
    assert (await site.get("/chart/nobody.png")).status == 404
    assert (await site.get("/chart/main.png?window=5y")).status == 404
    assert (await site.get("/chart/main.png?theme=pink")).status == 404
    assert (await site.get("/chart/main")).status == 404
    dark = await site.get("/chart/main.png?window=30d&theme=dark")
    assert dark.status == 200


def test_the_token_is_compared_in_constant_time_and_any_way_offered():
    assert authorized("", "", "", "")
    assert authorized(TOKEN, f"Bearer {TOKEN}", "", "")
    assert authorized(TOKEN, f"bearer  {TOKEN}", "", "")
    assert authorized(TOKEN, "", TOKEN, "")
    assert authorized(TOKEN, "", "", cookie_value(TOKEN))
    assert not authorized(TOKEN, f"Basic {TOKEN}", "", "")
    assert not authorized(TOKEN, "", "", TOKEN)  # the cookie holds the derived value only
    assert not authorized(TOKEN, "Bearer ", "", "")
    assert not authorized(TOKEN, "", TOKEN[:-1], "")


def test_the_status_page_needs_a_listening_server_and_its_token_is_a_secret(tmp_path):
    base = f"""
[bot]
state_path = "{tmp_path / "s.db"}"
http_listen = ""
[[accounts]]
name = "main"
key = "k"
[[rules]]
name = "low"
target = "total"
below = 5
"""
    with pytest.raises(ConfigError, match=r"web.status_page: needs \[bot\].http_listen"):
        config_mod.parse(base + "[web]\nstatus_page = true\n")
    cfg = config_mod.parse(
        base.replace('http_listen = ""', 'http_listen = "127.0.0.1:0"')
        + f'[web]\nstatus_page = true\ntoken = "{TOKEN}"\n'
    )
    assert cfg.web.status_page and cfg.web.token == TOKEN and TOKEN in cfg.secrets()
    assert TOKEN not in repr(cfg.web)
    off = config_mod.parse(base)
    assert off.web.status_page is False and off.web.token == ""


# --- in a real browser -------------------------------------------------------------


# What the distribution's Chromium needs here: root (no sandbox), no internet; each
# browser gets a fresh profile (launch_persistent_context's folder in tmp_path).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


async def test_the_page_in_chromium(serve, tmp_path):
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: the status page is tested in the distribution's Chromium; "
        "install it with scripts/system-deps.sh (apt-get install chromium)"
    )
    from playwright.async_api import async_playwright

    site = await serve()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            extra_http_headers={"Authorization": f"Bearer {TOKEN}"},
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = await browser.new_page()
            response = await page.goto(site.base + "/")
            assert response is not None and response.status == 200
            await page.wait_for_load_state("load")
            assert (
                await page.title() == "(4 firing) balance-bot status"
            )  # low and runway, each account
            assert await page.locator("html").get_attribute("lang") == "en"
            headings = await page.locator("h2").all_inner_texts()
            assert headings == ["main (example_user)", "lab & <co> (example_user)"]
            main = page.locator("section.account").nth(0)
            numbers = await main.locator("dl.numbers dd").all_inner_texts()
            assert numbers[0] == "$760.00"
            assert re.fullmatch(r"\$7[12]\d\.\d\d/day", numbers[1]), numbers
            assert re.fullmatch(r"≈ 1\.\d days", numbers[2]), numbers
            lab = page.locator("section.account").nth(1)
            numbers = await lab.locator("dl.numbers dd").all_inner_texts()
            assert numbers[0] == "$160.00" and re.fullmatch(r"≈ 0\.\d days", numbers[2]), numbers
            images = page.locator("img.chart")
            assert await images.count() == 2
            for i in range(2):
                image = images.nth(i)
                loaded = await image.evaluate("img => img.complete && img.naturalWidth")
                assert loaded == 1200
                alt = await image.get_attribute("alt")
                assert alt and "days left" in alt and "$" in alt
            headers = await page.locator("th[scope=col]").count()
            assert headers >= 8  # alerts and keys tables, per account
            await page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)

            # the browser's dark preference: the page's colours and its charts follow
            await page.emulate_media(color_scheme="dark")
            await page.reload()
            await page.wait_for_load_state("load")
            background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(13, 17, 23)"
            chosen = await images.nth(0).evaluate("img => img.currentSrc")
            assert chosen.endswith("theme=dark")
            assert await images.nth(0).evaluate("img => img.naturalWidth") == 1200
            await page.screenshot(path=str(ARTIFACTS / "status-page-dark.png"), full_page=True)
        finally:
            await browser.close()

        # no token: 401; a ?token= address: the page, its charts by the cookie
        browser = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "stranger"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            color_scheme="light",
        )
        try:
            page = await browser.new_page()
            refused = await page.goto(site.base + "/")
            assert refused is not None and refused.status == 401
            assert "needs its token" in await page.inner_text("body")
            assert (await page.goto(site.base + "/chart/main.png")).status == 401
            arrived = await page.goto(f"{site.base}/?token={TOKEN}")
            assert arrived is not None and arrived.status == 200
            assert page.url == site.base + "/"  # the token left the address bar
            await page.wait_for_load_state("load")
            widths = await page.locator("img.chart").evaluate_all(
                "imgs => imgs.map(img => img.naturalWidth)"
            )
            assert widths == [1200, 1200]
            assert TOKEN not in await page.content()
        finally:
            await browser.close()
