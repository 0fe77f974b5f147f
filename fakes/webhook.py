"""A loopback webhook receiver on 127.0.0.1: records every POST, scripted replies.

`url` is `http://127.0.0.1:<port>/hooks/balance`, but any other path is
accepted too (Apprise's `json://127.0.0.1:<port>/path` posts wherever it is
told), and recorded with its path. Replies are scripted with `fail()`, one per
request, then 200. Given a `secret`, it checks each request as a receiver
should, with `verified()` (the function docs/notifiers.md shows): one not
signed over its timestamp and body, or older than 5 minutes, gets 401 before
any script. `signature()` is the bare HMAC in GitHub's X-Hub-Signature-256
form, for tests to compute what was signed. Tests wait on conditions, never
on sleeps: `wait_received()`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
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


# --- quoted in docs/notifiers.md, "The signature" (tests/test_webhook.py checks) ---
TOLERANCE = 300  # seconds: an older request may be a replay


def verified(secret: str, body: bytes, timestamp: str | None, signature: str | None) -> bool:
    """`body`: the raw request body; `timestamp`, `signature`: the headers
    X-Balance-Bot-Timestamp and X-Balance-Bot-Signature."""
    if timestamp is None or signature is None:
        return False
    try:
        age = time.time() - int(timestamp)
    except ValueError:
        return False
    if abs(age) > TOLERANCE:
        return False  # too old (or from the future): a replay, or a clock far off
    signed = timestamp.encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


# --- end of the quote ---


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
    verified: bool | None = None  # with a secret: whether verified() passed it


class FakeWebhook:
    """Answers each POST with the next scripted reply, then 200 "ok"."""

    def __init__(self, path: str = PATH, secret: str | None = None) -> None:
        self.path = path
        self.secret = secret  # set: requests that do not verify get 401
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
        if self.secret is not None:
            received.verified = verified(
                self.secret,
                body,
                request.headers.get("X-Balance-Bot-Timestamp"),
                request.headers.get("X-Balance-Bot-Signature"),
            )
        if received.verified is False:
            response: web.StreamResponse = web.Response(status=401, text="bad signature")
        else:
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
