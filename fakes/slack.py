"""A fake Slack on 127.0.0.1: Web API, Socket Mode websocket and response URLs.

Point the notifier at it with `api_url = fake.url`. The Web API under
`/api/<method>` answers auth.test, conversations.info, chat.postMessage,
chat.postEphemeral and apps.connections.open (whose URL leads to the Socket
Mode endpoint `/link`), checks the bearer token of each, and validates
messages the way Slack does (blocks, text sizes). File uploads follow Slack's
v2 flow: files.getUploadURLExternal (refused with `missing_scope` without
`files:write` in `scopes`), a POST of the bytes to the URL it gave
(`/upload/<file id>`), files.completeUploadExternal into a channel; each
shared file is recorded in `files` (`wait_files()`). Failures are scripted per
method with `fail()`. The websocket says hello, delivers slash commands
(`slash()`), records acks with their delay, and can be dropped three ways.
Response URLs (`/response/<envelope id>`) record what they receive.

Buttons: posted messages are kept by (channel, ts); chat.update replaces them
(`updated`, `wait_updated()`); `block_action()` delivers a button click as an
`interactive` envelope with a `block_actions` payload; `late_acks()` lists the
envelopes not acknowledged within `ack_deadline` (3 s, as Slack allows).

Tests wait on conditions, never on sleeps: `wait_calls()`, `wait_posted()`,
`wait_connections()`, `wait_ack()`, `wait_responses()`, `wait_updated()`.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bot.ops.web import WebServer

TEAM_ID = "T0FAKE0001"
APP_ID = "A0FAKE0001"
BOT_USER_ID = "U0BOT00001"
BOT_NAME = "balancebot"
BOT_ID = "B0BOT00001"

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
ACTIONS_ELEMENTS_LIMIT = 25  # elements in one actions block
BUTTON_TEXT_LIMIT = 75  # a button's plain_text label
BUTTON_VALUE_LIMIT = 2000
ACTION_ID_LIMIT = 255
ACK_DEADLINE = 3.0  # seconds Slack waits for an envelope's ack before showing an error


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


def _nodes(node: Any) -> list[dict[str, Any]]:
    """Every object inside `node`, depth first."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_nodes(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_nodes(value))
    return found


def interactive_problem(blocks: list[dict[str, Any]]) -> str:
    """'invalid_blocks' if the buttons and actions break Slack's limits, else ''."""
    for block in blocks:
        if isinstance(block, dict) and block.get("type") == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or len(elements) > ACTIONS_ELEMENTS_LIMIT:
                return "invalid_blocks"
    action_ids: list[str] = []
    for node in _nodes(blocks):
        if "action_id" in node:
            action_id = node["action_id"]
            if not isinstance(action_id, str) or len(action_id) > ACTION_ID_LIMIT:
                return "invalid_blocks"
            action_ids.append(action_id)
        if node.get("type") == "button":
            label = node.get("text")
            if not isinstance(label, dict) or label.get("type") != "plain_text":
                return "invalid_blocks"
            if len(str(label.get("text", ""))) > BUTTON_TEXT_LIMIT:
                return "invalid_blocks"
            if len(str(node.get("value", ""))) > BUTTON_VALUE_LIMIT:
                return "invalid_blocks"
    if len(action_ids) != len(set(action_ids)):
        return "invalid_blocks"
    return ""


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
        if interactive_problem(blocks):
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
    ts: str = ""


@dataclass
class StoredMessage:
    """A message in a channel as it stands now (the latest chat.update)."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]  # as Slack keeps them: every block has a block_id
    user: str = BOT_USER_ID
    bot_id: str | None = BOT_ID  # None: not posted by the bot
    edited_ts: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The message object, as conversations.history or a payload carries it."""
        message: dict[str, Any] = {
            "type": "message",
            "ts": self.ts,
            "user": self.user,
            "text": self.text,
            "team": TEAM_ID,
            "blocks": copy.deepcopy(self.blocks),
        }
        if self.bot_id:
            message["bot_id"] = self.bot_id
            message["app_id"] = APP_ID
        if self.edited_ts:
            message["edited"] = {"user": self.user, "ts": self.edited_ts}
        return message


@dataclass
class Updated:
    """A successful chat.update."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    args: dict[str, Any]


@dataclass
class Ack:
    envelope_id: str
    delay: float  # seconds from sending the envelope to receiving its ack
    body: dict[str, Any]
    late: bool = False  # arrived after `ack_deadline`: Slack had shown the user an error


@dataclass
class Uploaded:
    """A file shared into a channel by files.completeUploadExternal."""

    id: str
    channel: str
    filename: str
    title: str
    data: bytes
    initial_comment: str
    alt_txt: str


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
    scopes: set[str] = field(default_factory=lambda: {"chat:write", "commands", "files:write"})

    def __post_init__(self) -> None:
        self.calls: list[Call] = []
        self.posted: list[Posted] = []
        self.messages: dict[tuple[str, str], StoredMessage] = {}  # (channel, ts)
        self.updated: list[Updated] = []
        self.ack_deadline = ACK_DEADLINE
        self.acks: dict[str, Ack] = {}
        self.responses: dict[str, list[dict[str, Any]]] = {}
        self.files: list[Uploaded] = []  # shared into a channel
        self._uploads: dict[str, dict[str, Any]] = {}  # file id -> what getUploadURL said
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

    def add_message(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        user: str = "U0USER0001",
    ) -> str:
        """Put a message someone else wrote in `channel` (the bot may not update
        it); returns its ts."""
        ts = f"{1600000000 + len(self.messages)}.000200"
        self.messages[(channel, ts)] = StoredMessage(
            channel, ts, text, _with_block_ids(blocks or []), user, None
        )
        return ts

    async def start(self, port: int = 0) -> FakeSlack:
        """Serve on `port` (0: any free port)."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link", self._socket)
        app.router.add_post("/response/{envelope}", self._response)
        app.router.add_post("/upload/{file}", self._upload)
        self._server = WebServer(app, "127.0.0.1", port, shutdown_timeout=0.5)
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

    async def wait_updated(self, count: int, within: float = 10.0) -> list[Updated]:
        """Until `count` chat.update calls have succeeded in total."""
        await self._wait(lambda: len(self.updated) >= count, within)
        return self.updated

    async def wait_files(self, count: int, within: float = 10.0) -> list[Uploaded]:
        """Until `count` files have been shared into channels in total."""
        await self._wait(lambda: len(self.files) >= count, within)
        return self.files

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

    def late_acks(self) -> list[str]:
        """The envelopes Slack would have given up on by now: acked after
        `ack_deadline`, or not acked and sent longer ago than that."""
        now = asyncio.get_running_loop().time()
        late = []
        for envelope, sent_at in self._sent_at.items():
            ack = self.acks.get(envelope)
            if ack.late if ack else now - sent_at > self.ack_deadline:
                late.append(envelope)
        return late

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
                bot_id=BOT_ID,
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
        if method == "chat.update":
            return self._update(args)
        if method == "files.getUploadURLExternal":
            return self._upload_url(args)
        if method == "files.completeUploadExternal":
            return self._complete(args)
        return _fail("unknown_method")

    # --- files: the v2 upload flow ------------------------------------------

    def _upload_url(self, args: dict[str, Any]) -> web.StreamResponse:
        if "files:write" not in self.scopes:
            return _fail("missing_scope", needed="files:write", provided=",".join(self.scopes))
        filename = str(args.get("filename") or "")
        try:
            length = int(args.get("length") or 0)
        except ValueError:
            length = 0
        if not filename or length <= 0:
            return _fail("invalid_arguments")
        file_id = f"F0FAKE{len(self._uploads) + 1:04d}"
        self._uploads[file_id] = {
            "filename": filename,
            "length": length,
            "alt_txt": str(args.get("alt_txt") or ""),
            "data": None,
        }
        return _ok(upload_url=f"http://127.0.0.1:{self.port}/upload/{file_id}", file_id=file_id)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        upload = self._uploads.get(request.match_info["file"])
        data = await request.read()
        if upload is None:
            return web.Response(status=404, text="invalid upload url")
        if len(data) != upload["length"]:
            return web.Response(status=400, text="length does not match")
        upload["data"] = data
        return web.Response(text=f"OK - {len(data)}")

    def _complete(self, args: dict[str, Any]) -> web.StreamResponse:
        files = args.get("files")
        if isinstance(files, str):
            files = json.loads(files)
        if not isinstance(files, list) or not files:
            return _fail("invalid_arguments")
        channel = self.channels.get(str(args.get("channel_id")))
        if channel is None:
            return _fail("channel_not_found")
        if not channel.is_member:
            return _fail("not_in_channel")
        shared = []
        for item in files:
            file_id = str(item.get("id"))
            upload = self._uploads.get(file_id)
            if upload is None or upload["data"] is None:
                return _fail("file_not_found")
            title = str(item.get("title") or upload["filename"])
            self.files.append(
                Uploaded(
                    file_id,
                    channel.id,
                    upload["filename"],
                    title,
                    upload["data"],
                    str(args.get("initial_comment") or ""),
                    upload["alt_txt"],
                )
            )
            shared.append({"id": file_id, "name": upload["filename"], "title": title})
        return _ok(files=shared)

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
        ts = f"{1700000000 + len(self.posted) + 1}.000100"
        text = args.get("text") or ""
        self.posted.append(Posted(method, channel.id, text, blocks, args, ts))
        if method == "chat.postEphemeral":
            return _ok(channel=channel.id, ts=ts)
        stored = StoredMessage(channel.id, ts, text, _with_block_ids(blocks))
        self.messages[(channel.id, ts)] = stored
        return _ok(channel=channel.id, ts=ts, message=stored.as_json())

    def _update(self, args: dict[str, Any]) -> web.StreamResponse:
        channel = self.channels.get(str(args.get("channel")))
        if channel is None:
            return _fail("channel_not_found")
        stored = self.messages.get((channel.id, str(args.get("ts"))))
        if stored is None:
            return _fail("message_not_found")
        if stored.bot_id != BOT_ID:
            return _fail("cant_update_message")
        # text and blocks left out keep their old values; `blocks: []` removes them
        text = stored.text if args.get("text") is None else str(args["text"])
        blocks: Any = args.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if blocks is None:
            blocks = stored.blocks
        problem = message_problem({"text": text, "blocks": blocks})
        if problem:
            return _fail(problem)
        stored.text, stored.blocks = text, _with_block_ids(blocks)
        stored.edited_ts = f"{time.time():.6f}"
        self.updated.append(Updated(channel.id, stored.ts, text, blocks, args))
        return _ok(channel=channel.id, ts=stored.ts, text=text, message=stored.as_json())

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
            if body.get("delete_original") in (True, "true"):
                self.responses.setdefault(envelope, []).append(body)
                return web.Response(text="ok")
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
                    late = delay > self.ack_deadline
                    self.acks[envelope] = Ack(envelope, delay, body, late)
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

    async def block_action(
        self,
        channel_id: str,
        message_ts: str,
        action_id: str,
        value: str,
        *,
        user_id: str = "U0USER0001",
        within: float = 10.0,
    ) -> str:
        """Deliver a click on the button `action_id` of the message `message_ts`
        over the open websocket, as Slack does; returns its envelope id."""
        stored = self.messages.get((channel_id, message_ts))
        if stored is None:
            raise KeyError(f"no message {message_ts} in {channel_id}")
        block_id, element = _find_action(stored.blocks, action_id)
        await self._wait(self._open, within)
        assert self._ws is not None
        self._envelopes += 1
        envelope = f"env-{self._envelopes:04d}"
        name = self.channels[channel_id].name if channel_id in self.channels else "elsewhere"
        payload = {
            "type": "block_actions",
            "user": {"id": user_id, "username": "someone", "name": "someone", "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "fake-verification-token",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": False,
            },
            "trigger_id": f"trigger-{envelope}",
            "team": {"id": TEAM_ID, "domain": "fake"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel_id, "name": name},
            "message": stored.as_json(),
            "state": {"values": {}},
            "response_url": f"http://127.0.0.1:{self.port}/response/{envelope}",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": copy.deepcopy(element.get("text"))
                    or {"type": "plain_text", "text": action_id, "emoji": True},
                    "value": value,
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        self._sent_at[envelope] = asyncio.get_running_loop().time()
        await self._ws.send_json(
            {
                "envelope_id": envelope,
                "type": "interactive",
                "accepts_response_payload": False,
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


def _with_block_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of `blocks` in which each block has a block_id, as Slack stores them."""
    kept = copy.deepcopy(blocks)
    for index, block in enumerate(kept):
        if isinstance(block, dict) and not block.get("block_id"):
            digest = hashlib.sha1(json.dumps(block, sort_keys=True).encode()).hexdigest()
            block["block_id"] = f"{digest[:4]}{index}"
    return kept


def _find_action(blocks: list[dict[str, Any]], action_id: str) -> tuple[str, dict[str, Any]]:
    """The block_id and element of the interactive element `action_id`."""
    for block in blocks:
        for node in _nodes(block):
            if node.get("action_id") == action_id:
                return str(block.get("block_id", "")), node
    raise KeyError(f"no element with action_id {action_id!r} in the message")


def _ok(**data: Any) -> web.Response:
    return web.json_response({"ok": True, **data})


def _fail(error: str, **extra: Any) -> web.Response:
    return web.json_response({"ok": False, "error": error, **extra})
