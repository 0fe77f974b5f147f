"""A fake Slack on 127.0.0.1: Web API, Socket Mode websocket and response URLs.

Point the notifier at it with `api_url = fake.url`. The Web API under
`/api/<method>` answers auth.test, conversations.info, chat.postMessage,
chat.postEphemeral and apps.connections.open (whose URL leads to the Socket
Mode endpoint `/link`), checks the bearer token of each, and validates
messages the way Slack does (blocks, text sizes). Failures are scripted per
method with `fail()`. The websocket says hello, delivers slash commands
(`slash()`), records acks with their delay, and can be dropped three ways.
Response URLs (`/response/<envelope id>`) record what they receive.

Tests wait on conditions, never on sleeps: `wait_calls()`, `wait_posted()`,
`wait_connections()`, `wait_ack()`, `wait_responses()`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bot.web import WebServer

TEAM_ID = "T0FAKE0001"
APP_ID = "A0FAKE0001"
BOT_USER_ID = "U0BOT00001"
BOT_NAME = "balancebot"

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- scripted failures ---------------------------------------------------------------


def api_error(error: str, status: int = 200, **extra: Any) -> Reply:
    """`{"ok": false, "error": ...}`, as Slack answers most failures (HTTP 200)."""

    async def reply(_: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": False, "error": error, **extra}, status=status)

    return reply


def rate_limited(retry_after: int = 1) -> Reply:
    async def reply(_: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"ok": False, "error": "ratelimited"},
            status=429,
            headers={"Retry-After": str(retry_after)},
        )

    return reply


def server_error(status: int = 500) -> Reply:
    async def reply(_: web.Request) -> web.StreamResponse:
        return web.Response(
            status=status, text="<html>upstream trouble</html>", content_type="text/html"
        )

    return reply


def stall(release: asyncio.Event) -> Reply:
    """Answer nothing until `release` is set (then a 500): a hung request."""

    async def reply(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return await server_error()(request)

    return reply


# --- what Slack accepts -------------------------------------------------------------

MAX_BLOCKS = 50
TEXT_LIMIT = 3000
BLOCKS_TEXT_LIMIT = 12_000  # observed: msg_blocks_too_long above ~12k characters in total
MESSAGE_TEXT_LIMIT = 40_000


def text_objects(blocks: list[dict[str, Any]]) -> list[str]:
    """Every `text` string inside the blocks (section text, fields, context elements)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def message_problem(body: dict[str, Any]) -> str:
    """The error Slack would answer for this message, or ''."""
    blocks = body.get("blocks")
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    text = body.get("text") or ""
    if not blocks and not text:
        return "no_text"
    if len(text) > MESSAGE_TEXT_LIMIT:
        return "msg_too_long"
    if blocks:
        if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
            return "invalid_blocks"
        texts = text_objects(blocks)
        if any(len(t) > TEXT_LIMIT or not t.strip() for t in texts):
            return "invalid_blocks"
        if sum(len(t) for t in texts) > BLOCKS_TEXT_LIMIT:
            return "msg_blocks_too_long"
    return ""


# --- records ----------------------------------------------------------------------


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    auth: str  # "bot", "app", "wrong" or "none": never the token itself
    status: int = 200


@dataclass
class Posted:
    method: str
    channel: str
    text: str
    blocks: list[dict[str, Any]]
    args: dict[str, Any]


@dataclass
class Ack:
    envelope_id: str
    delay: float  # seconds from sending the envelope to receiving its ack
    body: dict[str, Any]


@dataclass
class Channel:
    id: str
    name: str
    is_member: bool = True


@dataclass
class FakeSlack:
    bot_token: str
    app_token: str
    channels: dict[str, Channel] = field(default_factory=dict)
    scopes: set[str] = field(default_factory=lambda: {"chat:write", "commands"})

    def __post_init__(self) -> None:
        self.calls: list[Call] = []
        self.posted: list[Posted] = []
        self.acks: dict[str, Ack] = {}
        self.responses: dict[str, list[dict[str, Any]]] = {}
        self.connections = 0  # websocket connections accepted so far
        self.script: dict[str, list[Reply]] = {}
        self._changed = asyncio.Condition()
        self._ws: web.WebSocketResponse | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._sent_at: dict[str, float] = {}
        self._envelopes = 0
        self._server: WebServer | None = None
        self.port = 0

    # --- set-up -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def add_channel(self, channel_id: str, name: str, is_member: bool = True) -> None:
        self.channels[channel_id] = Channel(channel_id, name, is_member)

    def fail(self, method: str, *replies: Reply) -> None:
        """The next calls of `method` get these replies, in order."""
        self.script.setdefault(method, []).extend(replies)

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link", self._socket)
        app.router.add_post("/response/{envelope}", self._response)
        self._server = WebServer(app, "127.0.0.1", 0, shutdown_timeout=0.5)
        await self._server.start()
        self.port = self._server.port
        return self

    async def stop(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._server:
            await self._server.stop()

    # --- waiting ------------------------------------------------------------

    async def _wait(self, predicate: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_calls(self, method: str, count: int, within: float = 10.0) -> list[Call]:
        await self._wait(lambda: len(self.calls_of(method)) >= count, within)
        return self.calls_of(method)

    async def wait_posted(self, count: int, within: float = 10.0) -> list[Posted]:
        await self._wait(lambda: len(self.posted) >= count, within)
        return self.posted

    async def wait_connections(self, count: int, within: float = 10.0) -> None:
        """Until `count` websockets have been accepted and one is open."""
        await self._wait(lambda: self.connections >= count and self._open(), within)

    async def wait_ack(self, envelope_id: str, within: float = 10.0) -> Ack:
        await self._wait(lambda: envelope_id in self.acks, within)
        return self.acks[envelope_id]

    async def wait_responses(
        self, envelope_id: str, count: int = 1, within: float = 10.0
    ) -> list[dict[str, Any]]:
        await self._wait(lambda: len(self.responses.get(envelope_id, [])) >= count, within)
        return self.responses[envelope_id]

    def _open(self) -> bool:
        return self._ws is not None and not self._ws.closed

    # --- Web API ------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update(await request.post())
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        auth = {self.bot_token: "bot", self.app_token: "app", "": "none"}.get(token, "wrong")
        call = Call(method, args, auth)
        self.calls.append(call)
        try:
            scripted = self.script.get(method)
            if scripted:
                response = await scripted.pop(0)(request)
            else:
                response = self._answer(method, args, auth)
            call.status = response.status
            return response
        finally:
            await self._notify()

    def _answer(self, method: str, args: dict[str, Any], auth: str) -> web.StreamResponse:
        wanted = "app" if method == "apps.connections.open" else "bot"
        if auth == "none":
            return _fail("not_authed")
        if auth == "wrong":
            return _fail("invalid_auth")
        if auth != wanted:
            return _fail("not_allowed_token_type")
        if method == "auth.test":
            return _ok(
                url="https://fake.slack.com/",
                team="Fake Team",
                user=BOT_NAME,
                team_id=TEAM_ID,
                user_id=BOT_USER_ID,
                bot_id="B0BOT00001",
            )
        if method == "apps.connections.open":
            return _ok(url=f"ws://127.0.0.1:{self.port}/link")
        if method == "conversations.info":
            if "channels:read" not in self.scopes:
                return _fail("missing_scope", needed="channels:read")
            channel = self.channels.get(str(args.get("channel")))
            if channel is None:
                return _fail("channel_not_found")
            return _ok(
                channel={"id": channel.id, "name": channel.name, "is_member": channel.is_member}
            )
        if method in ("chat.postMessage", "chat.postEphemeral"):
            return self._post(method, args)
        return _fail("unknown_method")

    def _post(self, method: str, args: dict[str, Any]) -> web.StreamResponse:
        channel = self.channels.get(str(args.get("channel")))
        if channel is None:
            return _fail("channel_not_found")
        if not channel.is_member:
            return _fail("not_in_channel")
        problem = message_problem(args)
        if problem:
            return _fail(problem)
        blocks = args.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        self.posted.append(Posted(method, channel.id, args.get("text") or "", blocks, args))
        return _ok(channel=channel.id, ts=f"{1700000000 + len(self.posted)}.000100")

    # --- response_url -------------------------------------------------------

    async def _response(self, request: web.Request) -> web.StreamResponse:
        envelope = request.match_info["envelope"]
        body = await request.json()
        try:
            scripted = self.script.get("response")
            if scripted:
                return await scripted.pop(0)(request)
            if envelope not in self._sent_at:
                return web.Response(status=404, text="invalid_url")
            if len(self.responses.get(envelope, [])) >= 5:
                return web.Response(status=404, text="used_url")
            problem = message_problem(body)
            if problem:
                return web.Response(status=400, text=problem)
            self.responses.setdefault(envelope, []).append(body)
            return web.Response(text="ok")
        finally:
            await self._notify()

    # --- Socket Mode --------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._ws, self._transport = ws, request.transport
        self.connections += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
                "connection_info": {"app_id": APP_ID},
            }
        )
        await ws.ping(b"fake-slack-ping")  # Slack pings too; the SDK must pong
        await self._notify()
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                body = json.loads(message.data)
                envelope = body.get("envelope_id")
                if envelope in self._sent_at:
                    delay = asyncio.get_running_loop().time() - self._sent_at[envelope]
                    self.acks[envelope] = Ack(envelope, delay, body)
                    await self._notify()
        finally:
            if self._ws is ws:
                self._ws = None
            await self._notify()
        return ws

    async def slash(
        self,
        text: str = "",
        channel_id: str = "",
        user_id: str = "U0USER0001",
        command: str = "/balance",
        within: float = 10.0,
    ) -> str:
        """Deliver a slash command over the open websocket; returns its envelope id."""
        await self._wait(self._open, within)
        assert self._ws is not None
        self._envelopes += 1
        envelope = f"env-{self._envelopes:04d}"
        payload = {
            "token": "fake-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "fake",
            "channel_id": channel_id,
            "channel_name": self.channels[channel_id].name
            if channel_id in self.channels
            else "elsewhere",
            "user_id": user_id,
            "user_name": "someone",
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": f"http://127.0.0.1:{self.port}/response/{envelope}",
            "trigger_id": f"trigger-{envelope}",
        }
        self._sent_at[envelope] = asyncio.get_running_loop().time()
        await self._ws.send_json(
            {
                "envelope_id": envelope,
                "type": "slash_commands",
                "accepts_response_payload": True,
                "payload": payload,
            }
        )
        return envelope

    async def drop(self, how: str = "close") -> None:
        """End the websocket: "close" (a close frame), "abort" (the TCP connection
        vanishes) or "disconnect" (Slack's own `disconnect` message, asking the
        client to reconnect)."""
        ws = self._ws
        assert ws is not None, "no websocket to drop"
        if how == "close":
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"dropped by the test")
        elif how == "abort":
            assert self._transport is not None
            self._transport.abort()
        elif how == "disconnect":
            await ws.send_json(
                {
                    "type": "disconnect",
                    "reason": "refresh_requested",
                    "debug_info": {"host": "fake-slack"},
                }
            )
        else:
            raise ValueError(how)


def _ok(**data: Any) -> web.Response:
    return web.json_response({"ok": True, **data})


def _fail(error: str, **extra: Any) -> web.Response:
    return web.json_response({"ok": False, "error": error, **extra})
