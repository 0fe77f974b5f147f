"""`balance-bot demo`: the real pipeline against a simulated CometAPI account.

The simulated account lives on 127.0.0.1 in this process and follows a
100-second script: its balance drains (a forecast says the money lasts less
than a day, a warning fires, then a critical, then a reminder), is topped up
(they resolve), the API has an outage (data unavailable, then data back), and
the script starts over. A digest goes out 90 seconds after the start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets as random_tokens
import socket
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from bot import config as config_mod
from bot.common import secrets
from bot.common.logs import log_event
from bot.common.plugins import FALLBACK
from bot.ops.web import WebServer

logger = logging.getLogger(__name__)

PERIOD = 100.0
DIGEST_AFTER = 90.0  # seconds after the start

DEMO_CONFIG = """
[bot]
interval = "{interval}"
state_path = "{state_path}"
stale_after = 2
request_timeout = "2s"
http_listen = "{listen}"
burn_window = "20s"                # the demo's minutes stand for days

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
repeat = "20s"

[[rules]]
name = "runway"
target = "total"
days_left_below = 1
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
"""


def simulated_balance(t: float) -> dict | None:
    """The account at `t` seconds into the script; None during the outage."""
    t %= PERIOD
    if 60 <= t < 80:
        return None
    topped_up = t >= 45
    spent = 0.6 * min(t, 45.0)  # spending stops with the top-up: not depleting
    total = 60.0 if topped_up else 26 - spent
    prod_spent = 0.15 * min(t, 32.0)
    prod_api = 9.0 if topped_up else 5 - prod_spent
    return {
        "username": "demo_user",
        "total_quota": round(total, 6),
        "total_used_quota": round(114 + spent, 6),  # only grows: top-ups raise the balance
        "request_count": int(1000 + 37 * t),
        "keys": [
            {
                "name": "prod-api",
                "remain_quota": round(prod_api, 6),
                "used_quota": round(5 + prod_spent, 6),
            },
            {"name": "prod-batch", "remain_quota": 40, "used_quota": 10},
            {"name": "dev-playground", "remain_quota": 999999999, "used_quota": -1},
            {"name": "balance-query", "remain_quota": 0, "used_quota": 0},
        ],
    }


class SimulatedCometAPI:
    def __init__(self, key: str) -> None:
        self.key = key
        self.started = time.monotonic()
        self._server: WebServer | None = None
        self.url = ""

    async def quota(self, request: web.Request) -> web.Response:
        if request.query.get("key") != self.key:
            return web.json_response({"success": False, "message": "invalid key"}, status=401)
        body = simulated_balance(time.monotonic() - self.started)
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


def demo_config_text(interval: str, state_path: Path, url: str, listen: str) -> str:
    text = DEMO_CONFIG.format(interval=interval, state_path=state_path, url=url, listen=listen)
    digest_at = (datetime.now(UTC) + timedelta(seconds=DIGEST_AFTER)).strftime("%H:%M:%S")
    text += f'\n[digest]\nat = "{digest_at}"\ncharts = true\n'  # in UTC, the demo's time zone
    if listen:  # the status page, with the charts (its address is in the log at start)
        text += "\n[web]\nstatus_page = true\n"
    if os.environ.get("TELEGRAM_BOT_TOKEN") and os.environ.get("TELEGRAM_CHAT_ID"):
        text += TELEGRAM
    if all(os.environ.get(v) for v in ("SLACK_BOT_TOKEN", "SLACK_CHANNEL")):
        text += SLACK
    return text


async def run_demo(stop: asyncio.Event, interval: str = "2s") -> int:
    from bot.app.fleet import active_notifier_names
    from bot.app.service import App

    key = "demo-" + random_tokens.token_urlsafe(16)
    secrets.register(key)
    simulator = SimulatedCometAPI(key)
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
                account=simulator.url,
                state=tmp,
                notifiers=", ".join(active_notifier_names(cfg)),
                hint="a forecast fires after ~5s, a warning after ~10s, a critical after ~27s, "
                "a reminder after ~30s, they resolve at ~45s, an outage follows at ~60s, "
                "the digest at ~90s; Ctrl-C to stop",
            )
            async with App(cfg) as app:
                await app.serve(stop)
    finally:
        await simulator.stop()
    return 0
