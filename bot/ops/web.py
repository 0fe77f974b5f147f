"""GET /healthz and GET /metrics, served on the application's event loop (the metrics page
rendered in a worker thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.ops.metrics import Metrics

Health = Callable[[], tuple[bool, dict[str, Any]]]


def make_app(health: Health, metrics: Metrics | Callable[[], Metrics]) -> web.Application:
    """`metrics`: the page's instruments, or what gives them at each scrape (a
    replica serves its standby's, then its active App's)."""

    async def healthz(_: web.Request) -> web.Response:
        ok, body = health()
        return web.json_response(body, status=200 if ok else 503)

    async def metrics_page(_: web.Request) -> web.Response:
        now = metrics if isinstance(metrics, Metrics) else metrics()
        body = await asyncio.to_thread(now.page())  # polls and sends go on meanwhile
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    return app


class WebServer:
    """An aiohttp app served on the running loop; `port` is the bound one after
    start() (ask for 0 to get any free port)."""

    def __init__(
        self, app: web.Application, host: str, port: int, shutdown_timeout: float = 2.0
    ) -> None:
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
        )
        self.host, self.port = host, port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self._runner.cleanup()
