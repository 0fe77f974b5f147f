"""A loopback webhook receiver on 127.0.0.1: records every POST, scripted replies.

`url` is `http://127.0.0.1:<port>/hooks/balance`, but any other path is
accepted too (Apprise's `json://127.0.0.1:<port>/path` posts wherever it is
told), and recorded with its path. Replies are scripted with `fail()`, one per
request, then 200. `signature()` computes GitHub's X-Hub-Signature-256 form,
for tests to check a signed body. Tests wait on conditions, never on sleeps:
`wait_received()`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from bot.ops.web import WebServer

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]

PATH = "/hooks/balance"


def signature(secret: str, body: bytes) -> str:
    """`sha256=` and the lowercase hex HMAC-SHA256 of `body` (X-Hub-Signature-256)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def reply_status(
    status: int, body: str | bytes = "", headers: dict[str, str] | None = None
) -> Reply:
    async def reply(_: web.Request) -> web.StreamResponse:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(status=status, body=data, headers=headers)

    return reply


def redirect(location: str, status: int = 301) -> Reply:
    return reply_status(status, headers={"Location": location})


@dataclass
class Received:
    path: str
    body: bytes
    headers: CIMultiDict[str]  # case-insensitive, as sent
    json: Any  # the body parsed as JSON, or None
    query: dict[str, str] = field(default_factory=dict)
    status: int = 0  # what the receiver answered


class FakeWebhook:
    """Answers each POST with the next scripted reply, then 200 "ok"."""

    def __init__(self, path: str = PATH) -> None:
        self.path = path
        self.received: list[Received] = []
        self.script: list[Reply] = []
        self._changed = asyncio.Condition()
        self._server: WebServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def fail(self, *replies: Reply) -> None:
        """The next requests get these replies, in order, one each."""
        self.script.extend(replies)

    async def wait_received(self, count: int, within: float = 10.0) -> list[Received]:
        """Return once `count` POSTs have been answered in total."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.received) >= count)
        return list(self.received)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, text="method not allowed")
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        received = Received(
            request.path, body, CIMultiDict(request.headers), parsed, dict(request.query)
        )
        reply = self.script.pop(0) if self.script else reply_status(200, "ok")
        response = await reply(request)
        received.status = response.status
        async with self._changed:
            self.received.append(received)
            self._changed.notify_all()
        return response

    async def start(self, port: int = 0) -> FakeWebhook:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = WebServer(app, "127.0.0.1", port, shutdown_timeout=0.5)
        await self._server.start()
        self.port = self._server.port
        return self

    async def stop(self) -> None:
        if self._server:
            await self._server.stop()
