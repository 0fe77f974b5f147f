"""GET /healthz and GET /metrics on the application's own event loop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.logs import log_event
from bot.metrics import Metrics

logger = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, dict[str, Any]]]


def make_app(health: Health, metrics: Metrics) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        ok, body = health()
        return web.json_response(body, status=200 if ok else 503)

    async def metrics_page(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    return app


class WebServer:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        self._host, self._port = host, port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the bound port, when 0 asked for any
        log_event(
            logger,
            "http.listening",
            host=self._host,
            port=self.port,
            urls=f"http://{self._host}:{self.port}/healthz /metrics",
        )

    async def stop(self) -> None:
        await self._runner.cleanup()


def iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None
