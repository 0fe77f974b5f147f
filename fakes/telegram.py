"""A fake Telegram Bot API on 127.0.0.1, enough for python-telegram-bot.

Point the notifier at it with `api_url = fake.url`. It answers getMe,
setMyCommands, getMyCommands, deleteWebhook, getUpdates (a real long poll on
queued updates, honouring `offset`), sendMessage (recorded) and sendPhoto
(a multipart upload: the image is recorded in `photos`, `wait_photos()`,
refused as Telegram refuses a missing photo, one over 10 MB or a caption over
1024 characters). Failures are
scripted per method, optionally per chat. Tests wait on conditions, never on
sleeps: `wait_sent()`, `wait_calls()`.

Inline keyboards: sent messages are kept per (chat, message_id) with their
reply_markup, checked as Telegram checks them (callback_data of 1-64 bytes, at
most 100 buttons). editMessageText and editMessageReplyMarkup change them
(`edits`, `wait_edits()`), `callback()` queues a button press as a
callback_query update, and answerCallbackQuery is recorded with its delay
(`answers`, `wait_answer()`).
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.ops.web import WebServer

BOT_ID = 7000000001
BOT_USERNAME = "BalanceTestBot"

Reply = Callable[[], web.Response]

# What Telegram answers (the texts its Bot API sends, "Bad Request: " included).
BUTTON_DATA_INVALID = "Bad Request: BUTTON_DATA_INVALID"
MARKUP_TOO_LONG = "Bad Request: reply markup is too long"
EDIT_NOT_FOUND = "Bad Request: message to edit not found"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
TEXT_EMPTY = "Bad Request: message text is empty"

PHOTO_INVALID = "Bad Request: there is no photo in the request"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
PHOTO_BYTES = 10 * 1024 * 1024  # sendPhoto: at most 10 MB
CAPTION_LIMIT = 1024  # characters, after entity parsing

CALLBACK_DATA_BYTES = 64  # callback_data: 1-64 bytes (UTF-8)
INLINE_BUTTONS_LIMIT = 100  # inline buttons in one keyboard, all rows together


def _error(status: int, description: str, **parameters: Any) -> Reply:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters

    def reply() -> web.Response:
        return web.json_response(body, status=status)

    return reply


def retry_after(seconds: int) -> Reply:
    return _error(429, f"Too Many Requests: retry after {seconds}", retry_after=seconds)


def server_error(status: int = 500) -> Reply:
    return _error(status, "Internal Server Error")


def forbidden(description: str = "Forbidden: bot was blocked by the user") -> Reply:
    return _error(403, description)


def bad_request(description: str = "Bad Request: chat not found") -> Reply:
    return _error(400, description)


def migrated(new_chat_id: int) -> Reply:
    return _error(
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        migrate_to_chat_id=new_chat_id,
    )


def conflict() -> Reply:
    return _error(
        409,
        "Conflict: terminated by other getUpdates request; "
        "make sure that only one bot instance is running",
    )


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int = 200


@dataclass
class Sent:
    chat_id: int
    text: str
    parse_mode: str | None
    params: dict[str, Any] = field(default_factory=dict)
    message_id: int = 0
    reply_markup: dict[str, Any] | None = None  # as sent, parsed


@dataclass
class Photo:
    """A sendPhoto: the image as uploaded, and its caption."""

    chat_id: int
    data: bytes
    filename: str
    caption: str
    parse_mode: str | None
    params: dict[str, Any] = field(default_factory=dict)
    message_id: int = 0


@dataclass
class StoredMessage:
    """A message the bot sent, as it stands now (after any edits)."""

    chat_id: int
    message_id: int
    text: str
    parse_mode: str | None
    reply_markup: dict[str, Any] | None  # None: no keyboard
    date: int
    edit_date: int | None = None


@dataclass
class Edit:
    """A successful editMessageText / editMessageReplyMarkup."""

    method: str
    chat_id: int
    message_id: int
    text: str | None  # None for editMessageReplyMarkup
    reply_markup: dict[str, Any] | None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Callback:
    """A button press queued by `callback()`."""

    id: str
    chat_id: int
    message_id: int
    data: str
    user_id: int
    update_id: int
    queued_at: float  # loop clock


@dataclass
class Answer:
    callback_id: str
    text: str | None
    show_alert: bool
    delay: float  # seconds from queueing the callback to its answer (loop clock)
    params: dict[str, Any] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.reply = _error(status, description)


class FakeTelegram:
    def __init__(self, token: str, username: str = BOT_USERNAME) -> None:
        self.token = token
        self.username = username
        self.calls: list[Call] = []
        self.sent: list[Sent] = []
        self.photos: list[Photo] = []
        self.commands: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []  # not yet confirmed by an offset
        self.offset = 0  # updates below this id were confirmed by the client
        self._next_update = 1
        self._next_message = 1
        self.messages: dict[tuple[int, int], StoredMessage] = {}  # (chat_id, message_id)
        self.edits: list[Edit] = []
        self.callbacks: dict[str, Callback] = {}
        self.answers: dict[str, Answer] = {}
        # the last allowed_updates a getUpdates call named (Telegram remembers it);
        # None or []: every type
        self.allowed_updates: list[str] | None = None
        self._callback_ids = itertools.count(1)
        self._once: dict[tuple[str, int | None], list[Reply]] = {}
        self._always: dict[tuple[str, int | None], Reply] = {}
        self._hung: dict[str, asyncio.Event] = {}
        self._changed = asyncio.Condition()
        self._closing = False
        self._polls = 0  # getUpdates calls so far: a newer one ends an older one's wait
        self._server: WebServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- scripting ------------------------------------------------------------

    def fail(self, method: str, *replies: Reply, chat_id: int | None = None) -> None:
        """The next calls of `method` (to `chat_id`, if given) get these replies, in order."""
        self._once.setdefault((method, chat_id), []).extend(replies)

    def fail_always(self, method: str, reply: Reply, chat_id: int | None = None) -> None:
        self._always[(method, chat_id)] = reply

    def hang(self, method: str) -> asyncio.Event:
        """Calls of `method` are recorded but not answered until the returned
        event is set; then they fail with a 502 (nothing delivered) and later
        calls are served normally again."""
        self._hung[method] = asyncio.Event()
        return self._hung[method]

    def _scripted(self, method: str, chat_id: int | None) -> Reply | None:
        for key in ((method, chat_id), (method, None)):
            if self._once.get(key):
                return self._once[key].pop(0)
            if key in self._always:
                return self._always[key]
        return None

    # --- updates --------------------------------------------------------------

    async def push(self, kind: str, message: dict[str, Any]) -> int:
        update_id = self._next_update
        self._next_update += 1
        async with self._changed:
            self.updates.append({"update_id": update_id, kind: message})
            self._changed.notify_all()
        return update_id

    async def message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str | None = None,
        edited: bool = False,
        command: bool | None = None,
        channel: bool = False,
    ) -> int:
        """Queue a user's message (or a channel post); text starting with "/"
        carries a bot_command entity."""
        now = int(time.time())
        message: dict[str, Any] = {
            "message_id": self._new_message_id(),
            "date": now,
            "chat": _chat(chat_id, "channel" if channel else chat_type),
            "text": text,
        }
        if not channel:
            message["from"] = _user(user_id or abs(chat_id))
        if command if command is not None else text.startswith("/"):
            length = len(text.split(maxsplit=1)[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if edited:
            message["edit_date"] = now
        kind = "channel_post" if channel else "message"
        return await self.push(f"edited_{kind}" if edited else kind, message)

    async def membership(
        self, chat_id: int, status: str = "member", *, old: str = "left", user_id: int = 4242
    ) -> int:
        """Queue a my_chat_member update: the bot's status in `chat_id` changed."""
        me = {"id": BOT_ID, "is_bot": True, "first_name": "Balance", "username": self.username}
        change = {
            "chat": _chat(chat_id, None),
            "from": _user(user_id),
            "date": int(time.time()),
            "old_chat_member": {"user": me, "status": old},
            "new_chat_member": {"user": me, "status": status},
        }
        return await self.push("my_chat_member", change)

    async def wait_confirmed(self, update_id: int, within: float = 10.0) -> None:
        """Return once the client has fetched `update_id` and confirmed it with an offset."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: self.offset > update_id)

    # --- waiting --------------------------------------------------------------

    async def wait_sent(self, count: int, within: float = 10.0) -> list[Sent]:
        """Return once `count` messages have been delivered in total."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.sent) >= count)
        return list(self.sent)

    async def wait_photos(self, count: int, within: float = 10.0) -> list[Photo]:
        """Return once `count` photos have been delivered in total."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.photos) >= count)
        return list(self.photos)

    async def wait_calls(self, method: str, count: int, within: float = 10.0) -> list[Call]:
        """Return once `method` has been called `count` times (failed calls included)."""

        def matching() -> list[Call]:
            return [c for c in self.calls if c.method == method]

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(matching()) >= count)
        return matching()

    # --- the API --------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["bot"] != f"bot{self.token}":
            return _error(401, "Unauthorized")()
        method = request.match_info["method"]
        params = await _params(request)
        chat_id = _int(params.get("chat_id"))
        if chat_id is None and "callback_query_id" in params:
            pressed = self.callbacks.get(str(params["callback_query_id"]))
            chat_id = pressed.chat_id if pressed else None
        call = Call(method, params)
        hung = self._hung.get(method)
        if hung is not None and not hung.is_set():
            call.status = 502
            await self._record(call)
            await hung.wait()
            return _error(502, "Bad Gateway")()
        scripted = self._scripted(method, chat_id)
        if scripted is not None:
            response = scripted()
            call.status = response.status
            await self._record(call)
            return response
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            call.status = 404
            await self._record(call)
            return _error(404, "Not Found: method not found")()
        check = getattr(self, f"_check_{method}", None)
        if check is not None:
            try:
                check(params)
            except _Refused as refused:
                response = refused.reply()
                call.status = response.status
                await self._record(call)
                return response
        if method != "getUpdates":
            await self._record(call)
        result = await handler(params)
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    async def _api_getMe(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Balance",
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _api_deleteWebhook(self, _: dict[str, Any]) -> bool:
        return True

    async def _api_setMyCommands(self, params: dict[str, Any]) -> bool:
        self.commands = _json(params.get("commands")) or []
        return True

    async def _api_getMyCommands(self, _: dict[str, Any]) -> list[dict[str, Any]]:
        return self.commands

    async def _api_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]] | web.Response:
        """A long poll. As Telegram does, a second poll with the same token ends
        the one still waiting with 409 Conflict (two bot processes, or a new
        listener started before the old one stopped)."""
        self._polls += 1
        mine = self._polls
        offset = _int(params.get("offset")) or 0
        timeout = float(params.get("timeout") or 0)
        allowed = _json(params.get("allowed_updates"))
        if isinstance(allowed, list):
            self.allowed_updates = [str(kind) for kind in allowed]
        async with self._changed:
            if offset:
                self.offset = max(self.offset, offset)
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            self.calls.append(Call("getUpdates", params))
            self._changed.notify_all()
            if not self._deliverable() and timeout > 0 and not self._closing:
                try:
                    async with asyncio.timeout(timeout):
                        await self._changed.wait_for(
                            lambda: self._deliverable() or self._closing or self._polls != mine
                        )
                except TimeoutError:
                    pass
                if self._polls != mine and not self._deliverable():
                    return conflict()()
            return self._deliverable()[:100]

    def _deliverable(self) -> list[dict[str, Any]]:
        """Pending updates, less callback queries when the client restricted
        allowed_updates without naming them (Telegram would not send those)."""
        if not self.allowed_updates or "callback_query" in self.allowed_updates:
            return list(self.updates)
        return [u for u in self.updates if "callback_query" not in u]

    def _check_sendMessage(self, params: dict[str, Any]) -> None:
        _check_markup(_json(params.get("reply_markup")))

    async def _api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _int(params.get("chat_id"))
        assert chat_id is not None, params
        text = str(params.get("text", ""))
        markup = _json(params.get("reply_markup"))
        message_id = self._new_message_id()
        stored = StoredMessage(
            chat_id,
            message_id,
            text,
            params.get("parse_mode"),
            _inline(markup),
            int(time.time()),
        )
        self.messages[(chat_id, message_id)] = stored
        sent = Sent(chat_id, text, params.get("parse_mode"), params, message_id, markup)
        async with self._changed:
            self.sent.append(sent)
            self._changed.notify_all()
        return self._bot_message(stored)

    def _check_sendPhoto(self, params: dict[str, Any]) -> None:
        photo = params.get("photo")
        if not isinstance(photo, Upload) or not photo.data:
            raise _Refused(PHOTO_INVALID)
        if len(photo.data) > PHOTO_BYTES:
            raise _Refused("Bad Request: file is too big")
        caption = str(params.get("caption") or "")
        if params.get("parse_mode") == "HTML":
            caption = html.unescape(re.sub(r"<[^>]+>", "", caption))
        if len(caption.encode("utf-16-le")) // 2 > CAPTION_LIMIT:
            raise _Refused(CAPTION_TOO_LONG)

    async def _api_sendPhoto(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _int(params.get("chat_id"))
        assert chat_id is not None, params
        upload: Upload = params["photo"]
        message_id = self._new_message_id()
        caption = str(params.get("caption") or "")
        photo = Photo(
            chat_id,
            upload.data,
            upload.filename,
            caption,
            params.get("parse_mode"),
            params,
            message_id,
        )
        async with self._changed:
            self.photos.append(photo)
            self._changed.notify_all()
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Balance"},
            "caption": caption,
            "photo": [
                {
                    "file_id": f"photo-{message_id}",
                    "file_unique_id": f"u{message_id}",
                    "width": 1200,
                    "height": 600,
                    "file_size": len(upload.data),
                }
            ],
        }

    # --- inline keyboards: edits and callback queries ---------------------------

    def _to_edit(self, params: dict[str, Any]) -> StoredMessage:
        chat_id, message_id = _int(params.get("chat_id")), _int(params.get("message_id"))
        stored = None
        if chat_id is not None and message_id is not None:
            stored = self.messages.get((chat_id, message_id))
        if stored is None:
            raise _Refused(EDIT_NOT_FOUND)
        return stored

    def _check_editMessageText(self, params: dict[str, Any]) -> None:
        markup = _json(params.get("reply_markup"))
        _check_markup(markup)
        stored = self._to_edit(params)
        text = str(params.get("text") or "")
        if not text.strip():
            raise _Refused(TEXT_EMPTY)
        unchanged = (stored.text, stored.parse_mode, stored.reply_markup)
        if (text, params.get("parse_mode"), _inline(markup)) == unchanged:
            raise _Refused(NOT_MODIFIED)

    async def _api_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self._to_edit(params)
        stored.text = str(params.get("text"))
        stored.parse_mode = params.get("parse_mode")
        # no reply_markup in an edit removes the keyboard, as with the real API
        stored.reply_markup = _inline(_json(params.get("reply_markup")))
        return await self._edited("editMessageText", stored, params, stored.text)

    def _check_editMessageReplyMarkup(self, params: dict[str, Any]) -> None:
        markup = _json(params.get("reply_markup"))
        _check_markup(markup)
        if _inline(markup) == self._to_edit(params).reply_markup:
            raise _Refused(NOT_MODIFIED)

    async def _api_editMessageReplyMarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self._to_edit(params)
        stored.reply_markup = _inline(_json(params.get("reply_markup")))
        return await self._edited("editMessageReplyMarkup", stored, params, None)

    async def _edited(
        self, method: str, stored: StoredMessage, params: dict[str, Any], text: str | None
    ) -> dict[str, Any]:
        stored.edit_date = int(time.time())
        edit = Edit(method, stored.chat_id, stored.message_id, text, stored.reply_markup, params)
        async with self._changed:
            self.edits.append(edit)
            self._changed.notify_all()
        return self._bot_message(stored)

    def _bot_message(
        self, stored: StoredMessage, chat: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The Message object of a bot's message (with `chat` in full, if given,
        as updates carry it)."""
        chat_id = stored.chat_id
        message: dict[str, Any] = {
            "message_id": stored.message_id,
            "date": stored.date,
            "chat": chat or {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Balance"},
            "text": stored.text,
        }
        if stored.edit_date is not None:
            message["edit_date"] = stored.edit_date
        if stored.reply_markup is not None:
            message["reply_markup"] = stored.reply_markup
        return message

    async def callback(
        self,
        chat_id: int,
        message_id: int,
        data: str,
        *,
        user_id: int | None = None,
        chat_type: str | None = None,
        username: str | None = None,
    ) -> str:
        """Queue a callback_query update: a user (@username, if given) pressed a
        button of the bot's message `message_id` in `chat_id`. Returns the
        callback query id."""
        stored = self.messages.get((chat_id, message_id))
        if stored is None:
            raise KeyError(f"the bot sent no message {message_id} to chat {chat_id}")
        query_id = f"{4_200_000_000_000_000 + next(self._callback_ids)}"
        user = user_id or abs(chat_id)
        query = {
            "id": query_id,
            "from": _user(user, username),
            "message": self._bot_message(stored, _chat(chat_id, chat_type)),
            "chat_instance": str(-1_000_000_000_000 - abs(chat_id)),
            "data": data,
        }
        queued_at = asyncio.get_running_loop().time()
        pressed = Callback(query_id, chat_id, message_id, data, user, 0, queued_at)
        self.callbacks[query_id] = pressed
        pressed.update_id = await self.push("callback_query", query)
        return query_id

    def _check_answerCallbackQuery(self, params: dict[str, Any]) -> None:
        query_id = str(params.get("callback_query_id"))
        if query_id not in self.callbacks or query_id in self.answers:
            raise _Refused(QUERY_TOO_OLD)

    async def _api_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id"))
        delay = asyncio.get_running_loop().time() - self.callbacks[query_id].queued_at
        text = params.get("text")
        alert = _json(params.get("show_alert")) in (True, "true", "True", 1)
        answer = Answer(query_id, None if text is None else str(text), alert, delay, params)
        async with self._changed:
            self.answers[query_id] = answer
            self._changed.notify_all()
        return True

    async def wait_edits(self, count: int, within: float = 10.0) -> list[Edit]:
        """Return once `count` edits have succeeded in total."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.edits) >= count)
        return list(self.edits)

    async def wait_answer(self, callback_id: str, within: float = 10.0) -> Answer:
        """Return once the callback query `callback_id` has been answered."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: callback_id in self.answers)
        return self.answers[callback_id]

    def _new_message_id(self) -> int:
        self._next_message += 1
        return self._next_message

    # --- lifecycle ------------------------------------------------------------

    async def start(self, port: int = 0) -> FakeTelegram:
        """Serve on `port` (0: any free port)."""
        app = web.Application()
        app.router.add_route("*", "/{bot}/{method}", self._handle)
        self._server = WebServer(app, "127.0.0.1", port, shutdown_timeout=0.5)
        await self._server.start()
        self.port = self._server.port
        return self

    async def stop(self) -> None:
        async with self._changed:
            self._closing = True  # long polls under way return at once
            self._changed.notify_all()
        if self._server:
            await self._server.stop()


def _buttons(markup: Any) -> list[dict[str, Any]]:
    """The inline buttons of a reply_markup (none for other kinds of markup)."""
    if not isinstance(markup, dict) or not isinstance(markup.get("inline_keyboard"), list):
        return []
    rows = markup["inline_keyboard"]
    return [b for row in rows if isinstance(row, list) for b in row if isinstance(b, dict)]


def _check_markup(markup: Any) -> None:
    """Refuse an inline keyboard the way Telegram does."""
    buttons = _buttons(markup)
    for button in buttons:
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str) or not 1 <= len(data.encode()) <= CALLBACK_DATA_BYTES:
                raise _Refused(BUTTON_DATA_INVALID)
    if len(buttons) > INLINE_BUTTONS_LIMIT:
        raise _Refused(MARKUP_TOO_LONG)


def _inline(markup: Any) -> dict[str, Any] | None:
    """The keyboard a message keeps: an inline keyboard with buttons, else none."""
    return markup if _buttons(markup) else None


def _chat(chat_id: int, chat_type: str | None) -> dict[str, Any]:
    chat_type = chat_type or ("private" if chat_id > 0 else "supergroup")
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat["first_name"] = "Tester"
    else:
        chat["title"] = f"Group {chat_id}"
    return chat


def _user(user_id: int, username: str | None = None) -> dict[str, Any]:
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": "Tester"}
    if username:
        user["username"] = username
    return user


@dataclass
class Upload:
    """A file in a multipart request (sendPhoto's `photo`)."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)


async def _params(request: web.Request) -> dict[str, Any]:
    """PTB posts form fields (JSON-encoded where not a string), multipart with a
    file; others post JSON. A file field becomes an Upload."""
    if request.content_type == "application/json":
        body = await request.json()
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        form = await request.post()
        for k, v in form.items():
            if isinstance(v, str):
                params[k] = v
            elif isinstance(v, web.FileField):
                params[k] = Upload(v.filename, v.content_type, v.file.read())
    return params


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _json(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value
