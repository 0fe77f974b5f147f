"""GET /healthz and GET /metrics, served on the application's event loop (the metrics page
rendered in a worker thread); with a StatusSite, the status page at / and its charts
at /chart/<account>.png (SPEC 6b), behind the optional token."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.ops.metrics import Metrics
from bot.ops.status import COOKIE, StatusView, authorized, cookie_value, render_page

Health = Callable[[], tuple[bool, dict[str, Any]]]
THEMES = ("light", "dark")
# what every answer of the status page says: never cached or framed, the token
# of a ?token= address never sent on as a Referer, nothing but our own images
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
}
NEEDS_TOKEN = "401: this status page needs its token (Authorization: Bearer <token>, or ?token=)"


@dataclass(frozen=True, slots=True)
class StatusSite:
    """What the status page shows, from the app: the page's values, a chart's
    PNG (None: no such account, or no history), and the token ("" for none)."""

    page: Callable[[], Awaitable[StatusView]]
    chart: Callable[[str, str, str], Awaitable[bytes | None]]
    windows: tuple[str, ...]
    token: Callable[[], str]


def make_app(
    health: Health, metrics: Metrics | Callable[[], Metrics], status: StatusSite | None = None
) -> web.Application:
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
    if status is not None:
        _add_status_page(app, status)
    return app


def _add_status_page(app: web.Application, site: StatusSite) -> None:
    def allowed(request: web.Request) -> bool:
        return authorized(
            site.token(),
            request.headers.get("Authorization", ""),
            request.query.get("token", ""),
            request.cookies.get(COOKIE, ""),
        )

    def refused() -> web.Response:
        return web.Response(
            status=401,
            text=NEEDS_TOKEN,
            headers={**PAGE_HEADERS, "WWW-Authenticate": 'Bearer realm="balance-bot"'},
        )

    async def page(request: web.Request) -> web.StreamResponse:
        if not allowed(request):
            return refused()
        token = site.token()
        if token and "token" in request.query:
            # the token leaves the address bar: a cookie derived from it opens the
            # page and its charts from now on (the browser sends it to this host only)
            moved = web.HTTPSeeOther("/", headers=PAGE_HEADERS)
            moved.set_cookie(
                COOKIE, cookie_value(token), httponly=True, samesite="Strict", path="/"
            )
            raise moved
        view = await site.page()
        body = await asyncio.to_thread(render_page, view)
        return web.Response(text=body, content_type="text/html", headers=PAGE_HEADERS)

    async def chart(request: web.Request) -> web.StreamResponse:
        if not allowed(request):
            return refused()
        name = request.match_info["name"]
        window = request.query.get("window", "7d")
        theme = request.query.get("theme", "light")
        if not name.endswith(".png") or window not in site.windows or theme not in THEMES:
            return web.Response(status=404, text="404: no such chart", headers=PAGE_HEADERS)
        png = await site.chart(name.removesuffix(".png"), window, theme)
        if png is None:
            return web.Response(status=404, text="404: no such chart", headers=PAGE_HEADERS)
        return web.Response(body=png, content_type="image/png", headers=PAGE_HEADERS)

    app.router.add_get("/", page)
    app.router.add_get("/chart/{name:.+}", chart)


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
