"""`balance-bot demo`: the real pipeline against a simulated CometAPI account,
on a compressed clock.

The bot runs on simulated time (bot/app/clock.py): by default one demo second
is one hour (`--speed 3600`), so a poll every 2 simulated hours comes every 2
seconds, and burn rates, days left, reminders and the digest read as they would
over days. The simulated account lives on 127.0.0.1 in this process and follows
a 100-hour script (100 seconds): its balance drains at $14.40 a day (a forecast
fires, a warning, a key warning, a reminder, then a critical), is topped up (they
resolve), the API has an outage (data unavailable, then data back), and the
script starts over; a digest goes out every simulated morning at 09:00.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets as random_tokens
import socket
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from bot import config as config_mod
from bot.app.clock import SimulatedClock
from bot.common import secrets
from bot.common.logs import log_event
from bot.common.plugins import FALLBACK
from bot.ops.web import WebServer
from bot.upstream.transport import RetryPolicy

logger = logging.getLogger(__name__)

HOUR = 3600.0
PERIOD = 100.0  # simulated hours of the script, then it starts over
SPEED = HOUR  # simulated seconds per real second: one demo second is one hour
INTERVAL = "2h"  # simulated
DIGEST_AT = "09:00"  # simulated, UTC; the clock starts at midnight

# when things happen, in simulated hours from the start (what demo.started says)
STORY = (
    (8, "a forecast"),
    (10, "a warning"),
    (20, "a key warning"),
    (24, "a reminder"),
    (28, "a critical"),
    (40, "a top-up resolves them"),
    (62, "an outage"),
    (80, "data back"),
)

DEMO_CONFIG = """
[bot]
interval = "{interval}"
state_path = "{state_path}"
stale_after = 2
request_timeout = "2s"             # real seconds, as every wait of the bot
http_listen = "{listen}"
burn_window = "24h"

[[accounts]]
name = "demo"
key = "${{BALANCE_BOT_DEMO_KEY}}"
url = "{url}"

[[rules]]
name = "account-low"
target = "total"
below = 20
recover_above = 25
severity = "warning"
repeat = "12h"

[[rules]]
name = "runway"
target = "total"
days_left_below = 2
severity = "warning"

[[rules]]
name = "account-critical"
target = "total"
below = 10
recover_above = 15
severity = "critical"

[[rules]]
name = "key-low"
target = "key"
keys = ["prod-*"]
exclude_keys = ["balance-query"]
below_percent = 20
recover_above_percent = 30
severity = "warning"

[digest]
at = "{digest_at}"                  # simulated time, UTC: every simulated morning
charts = true
"""

TELEGRAM = """
[notifiers.telegram]
token = "${TELEGRAM_BOT_TOKEN}"
chat_ids = ["${TELEGRAM_CHAT_ID}"]
api_url = "${TELEGRAM_API_URL:-https://api.telegram.org}"
"""

SLACK = """
[notifiers.slack]
bot_token = "${SLACK_BOT_TOKEN}"
app_token = "${SLACK_APP_TOKEN:-}"
channel = "${SLACK_CHANNEL}"
api_url = "${SLACK_API_URL:-https://slack.com/api/}"
"""


TOP_UP = 40.0  # simulated hour of the top-up
OUTAGE = (60.0, 80.0)


def simulated_balance(t: float) -> dict | None:
    """The account `t` simulated hours into the script; None during the outage.
    It spends $0.60 an hour ($14.40 a day) until the top-up, $0.25 after."""
    t %= PERIOD
    if OUTAGE[0] <= t < OUTAGE[1]:
        return None
    topped_up = t >= TOP_UP
    spent = 0.6 * min(t, TOP_UP) + 0.25 * max(0.0, t - TOP_UP)
    total = 60.0 - 0.25 * (t - TOP_UP) if topped_up else 26 - spent
    prod_spent = 0.15 * min(t, 32.0)  # the key runs dry, then waits for its top-up
    prod_api = 9.0 if topped_up else 5 - prod_spent
    batch_spent = 0.1 * t
    return {
        "username": "demo_user",
        "total_quota": round(total, 6),
        "total_used_quota": round(114 + spent, 6),  # only grows: top-ups raise the balance
        "request_count": int(1000 + 180 * t),
        "keys": [
            {
                "name": "prod-api",
                "remain_quota": round(prod_api, 6),
                "used_quota": round(5 + prod_spent, 6),
            },
            {
                "name": "prod-batch",
                "remain_quota": round(40 - batch_spent, 6),
                "used_quota": round(10 + batch_spent, 6),
            },
            {"name": "dev-playground", "remain_quota": 999999999, "used_quota": -1},
            {"name": "balance-query", "remain_quota": 0, "used_quota": 0},
        ],
    }


class SimulatedCometAPI:
    """The script on 127.0.0.1, read on the bot's simulated clock; the first
    request of each simulated day logs which day it is."""

    def __init__(self, key: str, clock: SimulatedClock) -> None:
        self.key, self.clock = key, clock
        self._server: WebServer | None = None
        self._day = -1
        self.url = ""

    async def quota(self, request: web.Request) -> web.Response:
        if request.query.get("key") != self.key:
            return web.json_response({"success": False, "message": "invalid key"}, status=401)
        hours = self.clock.elapsed() / HOUR
        if int(hours // 24) != self._day:
            self._day = int(hours // 24)
            log_event(
                logger,
                "demo.day",
                day=self._day + 1,
                simulated=self.clock().strftime("%a %Y-%m-%d %H:%M UTC"),
            )
        body = simulated_balance(hours)
        if body is None:
            return web.Response(
                status=502, text="<html>502 Bad Gateway</html>", content_type="text/html"
            )
        return web.json_response(body)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/user/quota", self.quota)
        self._server = WebServer(app, "127.0.0.1", 0)
        await self._server.start()
        self.url = f"http://127.0.0.1:{self._server.port}/user/quota"

    async def stop(self) -> None:
        if self._server:
            await self._server.stop()


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def with_log(cfg: config_mod.Config) -> config_mod.Config:
    """With Telegram or Slack set, the rules notify them and, as without them, the
    log: the demo shows its messages on stderr either way."""
    if not cfg.notifiers:
        return cfg  # the log notifier is the fallback
    everywhere = (FALLBACK, *cfg.notifiers)
    return replace(cfg, rules=tuple(replace(rule, notify=everywhere) for rule in cfg.rules))


def demo_config_text(
    interval: str, state_path: Path, url: str, listen: str, digest_at: str = DIGEST_AT
) -> str:
    text = DEMO_CONFIG.format(
        interval=interval, state_path=state_path, url=url, listen=listen, digest_at=digest_at
    )
    if listen:  # the status page, with the charts (its address is in the log at start)
        text += "\n[web]\nstatus_page = true\n"
    if os.environ.get("TELEGRAM_BOT_TOKEN") and os.environ.get("TELEGRAM_CHAT_ID"):
        text += TELEGRAM
    if all(os.environ.get(v) for v in ("SLACK_BOT_TOKEN", "SLACK_CHANNEL")):
        text += SLACK
    return text


def midnight() -> datetime:
    """Where the simulated clock starts: today, 00:00 UTC."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def story(speed: float) -> str:
    """What happens when, in simulated hours and, at `speed`, real seconds."""

    def at(hours: float) -> str:
        seconds = hours * HOUR / speed
        if seconds < 120:
            real = f"{seconds:.0f}s"
        elif seconds < 2 * HOUR:
            real = f"{seconds / 60:.0f} min"
        else:
            real = f"{seconds / HOUR:.0f} hours"
        return f"{hours:g}h ({real})"

    told = [f"{what} at {at(hours)}" for hours, what in STORY]
    daily = at(int(DIGEST_AT[:2]))
    return (
        ", ".join(told) + f"; a digest every simulated morning at {DIGEST_AT}, the first at "
        f"{daily}; the script repeats every {at(PERIOD)}"
    )


def pace(speed: float) -> str:
    """How the simulated clock runs, in words: 'one demo second is one hour of simulated time'."""
    for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if speed >= seconds or unit == "second":
            count = speed / seconds
            amount = f"one {unit}" if count == 1 else f"{count:g} {unit}s"
            return f"one demo second is {amount} of simulated time"
    raise AssertionError("unreachable")


async def run_demo(stop: asyncio.Event, interval: str = INTERVAL, speed: float = SPEED) -> int:
    from bot.app.fleet import active_notifier_names
    from bot.app.service import App

    if speed <= 0:
        problem = f"--speed: must be above 0, not {speed:g}"
        log_event(logger, "demo.invalid", logging.ERROR, problem=problem)
        return 3
    clock = SimulatedClock(midnight(), speed)
    key = "demo-" + random_tokens.token_urlsafe(16)
    secrets.register(key)
    simulator = SimulatedCometAPI(key, clock)
    await simulator.start()
    try:
        with tempfile.TemporaryDirectory(prefix="balance-bot-demo-") as tmp:
            listen = "127.0.0.1:9464" if _free(9464) else "127.0.0.1:0"
            text = demo_config_text(interval, Path(tmp) / "demo.db", simulator.url, listen)
            environ = {**os.environ, "BALANCE_BOT_DEMO_KEY": key}
            try:
                cfg = with_log(config_mod.parse(text, environ, "demo config"))
            except config_mod.ConfigError as exc:  # a bad TELEGRAM_CHAT_ID, --interval, ...
                for problem in exc.problems:
                    log_event(logger, "demo.invalid", logging.ERROR, problem=problem)
                return 3
            for secret in cfg.secrets():
                secrets.register(secret)
            log_event(
                logger,
                "demo.started",
                clock=f"{pace(speed)} (--speed {speed:g}), from "
                f"{clock.start:%a %Y-%m-%d %H:%M} UTC; a poll every {interval} simulated; "
                "delivery retries and timeouts wait real seconds",
                account=simulator.url,
                state=tmp,
                notifiers=", ".join(active_notifier_names(cfg)),
            )
            log_event(logger, "demo.story", story=story(speed) + "; Ctrl-C to stop")
            # polls retry within the real interval, not the simulated one
            retry = RetryPolicy.for_schedule(cfg.bot.interval / speed, cfg.bot.request_timeout)
            async with App(cfg, clock=clock, retry=retry) as app:
                await app.serve(stop)
    finally:
        await simulator.stop()
    return 0
