"""A fake CometAPI /user/quota on 127.0.0.1, scripted per request.

A request naming `start_date` or `end_date` asks for per-day usage
(`daily_quota`): such seeding requests are kept apart (`seed_requests`,
`wait_seed_requests()`), answered from `daily` or `seed_responder`, and touch
neither `requests` nor the `script`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from aiohttp import web

from bot.ops.web import WebServer

Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


def quota(total: float, keys: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "username": "example_user",
        "total_quota": total,
        "total_used_quota": 21.5,
        "request_count": 1221,
        "keys": keys if keys is not None else [],
    }
    body.update(extra)
    return body


def daily_entry(token_name: str, quota_used: float, request_count: int = 0) -> dict[str, Any]:
    """One key's use on one day, as in `daily_quota` (quota_used in USD)."""
    return {"token_name": token_name, "quota_used": quota_used, "request_count": request_count}


def reply_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Responder:
    async def respond(_: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status, headers=headers)

    return respond


def reply_balance(
    total: float, keys: list[dict[str, Any]] | None = None, **extra: Any
) -> Responder:
    return reply_json(quota(total, keys, **extra))


def reply_status(
    status: int,
    text: str = "",
    headers: dict[str, str] | None = None,
    content_type: str = "text/plain",
) -> Responder:
    async def respond(_: web.Request) -> web.StreamResponse:
        return web.Response(
            status=status,
            text=text or f"error {status}",
            headers=headers,
            content_type=content_type,
        )

    return respond


def reply_raw(body: bytes, status: int = 200, content_type: str = "application/json") -> Responder:
    async def respond(_: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, content_type=content_type)

    return respond


def reply_stall(seconds: float, first: bytes = b"") -> Responder:
    """Headers (and `first`) at once, then nothing for `seconds`."""

    async def respond(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        if first:
            await resp.write(first)
        await asyncio.sleep(seconds)
        return resp

    return respond


class FakeCometAPI:
    """Answers each request with the next scripted responder, then `default`."""

    def __init__(self, key: str = "test-query-key-0123456789") -> None:
        self.key = key
        self.script: list[Responder] = []
        self.default: Responder = reply_balance(100.0)
        self.requests: list[web.Request] = []
        self.seed_requests: list[web.Request] = []  # those with start_date / end_date
        self.seed_responder: Responder | None = None
        self.daily: dict[str, list[dict[str, Any]]] | None = None  # "YYYY-MM-DD" -> entries
        self._served = asyncio.Condition()
        self._server: WebServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/user/quota"

    def push(self, *responders: Responder) -> None:
        self.script.extend(responders)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if "start_date" in request.query or "end_date" in request.query:
            return await self._seed(request)
        self.requests.append(request)
        async with self._served:
            self._served.notify_all()
        if request.query.get("key") != self.key:
            return web.json_response({"success": False, "message": "invalid key"}, status=401)
        responder = self.script.pop(0) if self.script else self.default
        return await responder(request)

    async def _seed(self, request: web.Request) -> web.StreamResponse:
        self.seed_requests.append(request)
        async with self._served:
            self._served.notify_all()
        if request.query.get("key") != self.key:
            return web.json_response({"success": False, "message": "invalid key"}, status=401)
        if self.seed_responder is not None:
            return await self.seed_responder(request)
        try:
            start = date.fromisoformat(request.query.get("start_date") or "0001-01-01")
            end = date.fromisoformat(request.query.get("end_date") or "9999-12-31")
        except ValueError:
            return web.json_response({"success": False, "message": "invalid date"}, status=400)
        response = await self.default(request)
        if self.daily is None or not isinstance(response, web.Response) or response.prepared:
            return response
        try:
            body = json.loads(response.body) if isinstance(response.body, bytes) else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return response
        body["daily_quota"] = {
            day: list(entries)
            for day, entries in sorted(self.daily.items())
            if start <= date.fromisoformat(day) <= end
        }
        skip = ("content-type", "content-length")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in skip}
        return web.json_response(body, status=response.status, headers=headers)

    async def wait_seed_requests(self, count: int, within: float = 30.0) -> None:
        """Return once `count` seeding requests have arrived in total."""
        async with asyncio.timeout(within), self._served:
            await self._served.wait_for(lambda: len(self.seed_requests) >= count)

    async def wait_requests(self, count: int, within: float = 30.0) -> None:
        """Return once `count` requests have arrived in total."""
        async with asyncio.timeout(within), self._served:
            await self._served.wait_for(lambda: len(self.requests) >= count)

    async def start(self, port: int = 0) -> FakeCometAPI:
        """Serve on `port` (0: any free port; pass the old one to come back after stop())."""
        app = web.Application()
        app.router.add_get("/user/quota", self._handle)
        app.router.add_get("/user/quota/", self._handle)
        self._server = WebServer(app, "127.0.0.1", port, shutdown_timeout=0.5)
        await self._server.start()
        self.port = self._server.port
        return self

    async def stop(self) -> None:
        if self._server:
            await self._server.stop()
