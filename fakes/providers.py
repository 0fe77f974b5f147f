"""Loopback fakes of the new-api, OpenRouter and DeepSeek balance endpoints
(SPEC 2b), driven by the real aiohttp client. Each refuses what the real one
refuses: no `Authorization: Bearer <key>` is a 401 (a key anywhere else is
ignored), and that 401 echoes the header it got back in its body, as some
servers do, so tests can show the bot never repeats it. `script` answers the
next requests (any path) before the figures do; `echo_auth` makes every scripted
error body echo the header too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.ops.web import WebServer

Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


def echo_error(status: int = 200, message: str = "upstream says no") -> Responder:
    """An error body that repeats the request's Authorization header."""

    async def respond(request: web.Request) -> web.StreamResponse:
        sent = request.headers.get("Authorization", "")
        error = {"message": f"{message}; you sent {sent}", "type": "invalid_request"}
        return web.json_response({"error": error}, status=status)

    return respond


def raw(body: bytes | str, status: int = 200) -> Responder:
    data = body.encode() if isinstance(body, str) else body

    async def respond(_: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=data, content_type="application/json")

    return respond


class _Fake:
    paths: tuple[str, ...] = ()

    def __init__(self, key: str) -> None:
        self.key = key
        self.script: list[Responder] = []
        self.requests: list[web.Request] = []
        self._served = asyncio.Condition()
        self._server: WebServer | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, *responders: Responder) -> None:
        self.script.extend(responders)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        async with self._served:
            self._served.notify_all()
        sent = request.headers.get("Authorization", "")
        if sent != f"Bearer {self.key}":
            error = {"message": f"invalid token: {sent or 'none'}", "type": "auth_error"}
            return web.json_response({"error": error}, status=401)
        if self.script:
            return await self.script.pop(0)(request)
        return await self.answer(request)

    async def answer(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def wait_requests(self, count: int, within: float = 30.0) -> None:
        async with asyncio.timeout(within), self._served:
            await self._served.wait_for(lambda: len(self.requests) >= count)

    async def start(self, port: int = 0) -> Any:
        app = web.Application()
        for path in self.paths:
            app.router.add_get(path, self._handle)
        self._server = WebServer(app, "127.0.0.1", port, shutdown_timeout=0.5)
        await self._server.start()
        self.port = self._server.port
        return self

    async def stop(self) -> None:
        if self._server:
            await self._server.stop()


class FakeNewAPI(_Fake):
    """A new-api site: `granted` (hard_limit_usd) and `used` (whole units; served
    in hundredths as total_usage)."""

    paths = ("/v1/dashboard/billing/subscription", "/v1/dashboard/billing/usage")

    def __init__(self, key: str = "sk-newapi-test-token-0123456789abcdef") -> None:
        super().__init__(key)
        self.granted = 100.0
        self.used = 20.0

    @property
    def url(self) -> str:
        return self.base

    async def answer(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/subscription"):
            return web.json_response(
                {
                    "object": "billing_subscription",
                    "has_payment_method": True,
                    "soft_limit_usd": self.granted,
                    "hard_limit_usd": self.granted,
                    "system_hard_limit_usd": self.granted,
                    "access_until": 0,
                }
            )
        return web.json_response({"object": "list", "total_usage": round(self.used * 100, 6)})


class FakeOpenRouter(_Fake):
    """OpenRouter's /credits and paged /keys (100 a page, by `offset`)."""

    paths = ("/api/v1/credits", "/api/v1/keys")

    def __init__(self, key: str = "sk-or-v1-management-0123456789abcdef0123") -> None:
        super().__init__(key)
        self.total_credits = 100.0
        self.total_usage = 10.0
        self.keys: list[dict[str, Any]] = []
        self.endless = False  # every page full, forever

    @property
    def url(self) -> str:
        return f"{self.base}/api/v1"

    @staticmethod
    def entry(
        name: str, remaining: float | None, usage: float = 0.0, disabled: bool = False
    ) -> dict[str, Any]:
        """One key as /keys lists it; `remaining` None: no limit."""
        return {
            "name": name,
            "label": f"sk-or-v1-{name[:3]}...xyz",
            "disabled": disabled,
            "limit": None if remaining is None else remaining + usage,
            "limit_remaining": remaining,
            "usage": usage,
            "hash": f"h-{name}",
        }

    async def answer(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/credits"):
            data = {"total_credits": self.total_credits, "total_usage": self.total_usage}
            return web.json_response({"data": data})
        offset = int(request.query.get("offset", "0") or 0)
        if self.endless:
            page = [self.entry(f"k{offset + i}", 5.0) for i in range(100)]
        else:
            page = self.keys[offset : offset + 100]
        return web.json_response({"data": page})


class FakeDeepSeek(_Fake):
    """DeepSeek's /user/balance: `balances` by currency, served as decimal strings."""

    paths = ("/user/balance",)

    def __init__(self, key: str = "sk-deepseek-test-0123456789abcdef01234") -> None:
        super().__init__(key)
        self.balances: dict[str, float] = {"CNY": 110.0}
        self.available = True

    @property
    def url(self) -> str:
        return self.base

    async def answer(self, request: web.Request) -> web.StreamResponse:
        infos = [
            {
                "currency": code,
                "total_balance": str(Decimal(str(total)).quantize(Decimal("0.01"))),
                "granted_balance": "0.00",
                "topped_up_balance": str(Decimal(str(total)).quantize(Decimal("0.01"))),
            }
            for code, total in self.balances.items()
        ]
        body = {"is_available": self.available, "balance_infos": infos}
        return web.Response(body=json.dumps(body), content_type="application/json")
