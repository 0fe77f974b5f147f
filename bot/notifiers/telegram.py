"""Telegram notifier: alerts to chat_ids (and groups), with Snooze/Ack buttons
that edit the message; the commands of the one table.

python-telegram-bot runs on the application's own event loop: `start()` does
what `Application.run_polling()` would do minus taking over the loop, and
`stop()` undoes it. Alerts are sent as HTML; `format()` escapes every span and
splits at line boundaries so that no message exceeds Telegram's 4096 limit.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import os
import re
import ssl
from collections.abc import Sequence
from typing import Annotated, Any, NamedTuple

import aiohttp
import httpx
from pydantic import BeforeValidator, Field, SecretStr
from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Update,
    User,
)
from telegram.constants import ChatMemberStatus, MessageLimit, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import (
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    filters,
)
from telegram.request import HTTPXRequest

from bot.common.backoff import retry_after
from bot.common.logs import log_event
from bot.notifiers import (
    Command,
    DeliveryError,
    GroupName,
    NotifierConfig,
    NotifierContext,
    Press,
)
from bot.notifiers.base import ChatNotifier, StartError, Unreachable, capped, shaped
from bot.notifiers.message import Limits, Message, Piece, Span, buttons, fit, pack, units

# Time periods as timedelta, as PTB 23 will do by default; without this opt-in
ANSWER_TRIES = 3  # a command's answer, per message, when Telegram asks to wait
ANSWER_WAIT_MAX = 10.0  # seconds: a longer wait and the answer is given up (logged)

# PTB 22 warns that the int form is deprecated each time it builds a RetryAfter.
os.environ.setdefault("PTB_TIMEDELTA", "1")

logger = logging.getLogger(__name__)

LIMIT = MessageLimit.MAX_TEXT_LENGTH  # 4096
# Escaping can grow a 200-character name fivefold (& -> &amp;), so every piece
# of a message has a budget; together they always fit in LIMIT.
TITLE_BUDGET = 1000
HEADING_BUDGET = 1000
LINE_BUDGET = LIMIT - TITLE_BUDGET - HEADING_BUDGET - 16
CONTINUED = " (continued)"  # what message.pack adds to a repeated heading

POLL_TIMEOUT = 30  # seconds a getUpdates long poll stays open
STOP_WAIT = 5.0  # seconds to let command answers under way finish on stop
# Edited messages are not even fetched; my_chat_member tells when the bot joins a chat.
UPDATES = ("message", "channel_post", "my_chat_member", "callback_query")

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
# Loggers whose records carry the token: httpx logs each URL at INFO
# (.../bot<token>/sendMessage) and PTB's bot logs its base URL at DEBUG.
TOKEN_CARRIERS = ("httpx", "telegram.Bot", "telegram.ext.ExtBot")


def _chat_id(value: Any) -> Any:
    """A chat id is a number; a @username or a t.me link is not (the Bot API
    takes @channel names, but commands and buttons compare ids)."""
    if isinstance(value, str) and not re.fullmatch(r"\s*-?\d+\s*", value):
        name = ", not a @username" if value.strip().startswith("@") else ""
        raise ValueError(
            f"must be a numeric chat id such as 123456789 or -1001234567890{name}: send /id "
            "to the bot in that chat to see it (until then any number runs the bot, e.g. 1)"
        )
    return value


ChatId = Annotated[int, BeforeValidator(_chat_id)]


class TelegramConfig(NotifierConfig):
    token: Annotated[
        SecretStr,
        shaped(".*:", "does not look like a bot token from @BotFather (123456:ABC...)"),
    ]
    chat_ids: list[ChatId] = Field(min_length=1)
    # may use commands and buttons; empty: chat_ids and the chats of every group
    allowed_chats: list[ChatId] = Field(default_factory=list)
    allowed_users: list[int] = Field(
        default_factory=list
    )  # if set, only these users may (in an allowed chat)
    groups: dict[GroupName, Annotated[list[ChatId], Field(min_length=1)]] = Field(
        default_factory=dict
    )
    api_url: str = "https://api.telegram.org"


class Post(NamedTuple):
    """One Telegram message: HTML text, and inline buttons as (label, callback data)."""

    text: str
    buttons: tuple[tuple[str, str], ...] = ()


class TelegramNotifier(ChatNotifier):
    Config = TelegramConfig
    config: TelegramConfig
    library_loggers = TOKEN_CARRIERS

    def __init__(self, name: str, config: TelegramConfig, context: NotifierContext) -> None:
        self._token = config.token.get_secret_value()
        super().__init__(name, config, context, secrets=[self._token])
        api = config.api_url.rstrip("/")
        # Our own request objects, so stop() can close them even if start() never ran.
        self._requests = (
            # one TLS context for both (each would load the CA bundle: ~1 MB)
            HTTPXRequest(connection_pool_size=8, read_timeout=10.0, httpx_kwargs=_tls()),
            HTTPXRequest(connection_pool_size=1, read_timeout=10.0, httpx_kwargs=_tls()),
        )
        self._app = (
            ApplicationBuilder()
            .token(self._token)
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            .request(self._requests[0])
            .get_updates_request(self._requests[1])
            .job_queue(None)  # the service has its own scheduler
            .concurrent_updates(True)  # a slow /balance never holds up another command
            .build()
        )
        self._add_handlers()

    def destinations(self) -> list[str]:
        return [str(c) for c in self.config.chat_ids]

    def groups(self) -> dict[str, list[str]]:
        return {g: [str(c) for c in chats] for g, chats in self.config.groups.items()}

    def allowed(self, chat_id: int | None, user_id: int | None) -> bool:
        """Access (docs/telegram.md): the chat must be allowed and, if
        allowed_users is set, the user listed (a channel post, with no user,
        then never is)."""
        config = self.config
        chats = config.allowed_chats or [
            *config.chat_ids,
            *(c for members in config.groups.values() for c in members),
        ]
        if chat_id not in chats:
            return False
        return not config.allowed_users or user_id in config.allowed_users

    # --- alerts -----------------------------------------------------------------

    def format(self, message: Message) -> list[Post]:
        return [post for post, _ in self.pieces(message)]

    def pieces(self, message: Message) -> list[tuple[Any, Sequence[str]]]:
        return [
            (Post(text, tuple(buttons(message, i, refs))), refs)
            for i, (text, refs) in enumerate(render_pieces(message))
        ]

    async def send(self, destination: str, payload: Post | str) -> str:
        try:
            sent = await self._app.bot.send_message(chat_id=int(destination), **_text(payload))
        except TelegramError as exc:
            raise self._delivery_error(destination, exc) from None
        return str(sent.message_id)

    async def edit(self, destination: str, message_id: str, payload: Post | str) -> None:
        """editMessageText; without buttons in the new text the keyboard goes."""
        try:
            await self._app.bot.edit_message_text(
                chat_id=int(destination), message_id=int(message_id), **_text(payload)
            )
        except BadRequest as exc:
            if "not modified" in str(exc).lower():
                return  # it already says this
            raise self._delivery_error(destination, exc) from None
        except TelegramError as exc:
            raise self._delivery_error(destination, exc) from None

    def remedy(self, error: DeliveryError) -> str:
        _, _, hint = error.reason.partition("; ")  # _delivery_error's own advice
        if error.permanent and hint:
            return hint
        text = error.reason.lower()
        if "chat not found" in text:
            return "check chat_ids (/id in the chat shows its id) and add the bot to that chat"
        if "forbidden" in text:
            return "the bot was blocked or removed: add it to the chat again"
        return super().remedy(error)

    def _delivery_error(self, chat_id: str, exc: TelegramError) -> DeliveryError:
        where = f"Telegram chat {chat_id}"
        if isinstance(exc, RetryAfter):
            return DeliveryError(f"{where}: rate limited", retry_after=retry_after(exc.retry_after))
        if isinstance(exc, ChatMigrated):
            return DeliveryError(
                f"{where} is now a supergroup with id {exc.new_chat_id}; "
                "put that id in notifiers.telegram.chat_ids",
                permanent=True,
            )
        if isinstance(exc, InvalidToken | EndPointNotFound):
            return DeliveryError(
                f"{where}: Telegram rejected the bot token ({self.clean(exc)}); "
                "check notifiers.telegram.token and api_url",
                permanent=True,
            )
        # Blocked, kicked, chat not found: retrying cannot help. Everything else
        # (TimedOut, NetworkError, 5xx) is transient; BadRequest subclasses NetworkError.
        permanent = isinstance(exc, Forbidden | BadRequest)
        return DeliveryError(f"{where}: {self.clean(exc)}", permanent=permanent)

    # --- lifecycle --------------------------------------------------------------

    async def start(self, listen: bool) -> None:
        """Check the token (getMe); with `listen`, register the commands and poll.

        With `listen`, a Telegram that cannot be reached is retried in the
        background, so commands start working once it is back; alerts wait in
        the outbox meanwhile.
        """
        try:
            await self._connect(listen)
        except InvalidToken:
            raise StartError(
                "Telegram rejected the bot token; check notifiers.telegram.token and api_url"
            ) from None
        except (TimedOut, NetworkError) as exc:
            if not listen or isinstance(exc, BadRequest):
                raise StartError(f"Telegram: {self.clean(exc)}") from None
            self.start_later(self._reconnect(self.clean(exc)), name="telegram.start")
        except TelegramError as exc:
            raise StartError(f"Telegram: {self.clean(exc)}") from None

    async def _connect(self, listen: bool) -> None:
        app = self._app
        await app.initialize()  # getMe: fails here on a bad token
        if not listen:
            return
        await app.bot.set_my_commands(
            [
                BotCommand(c.name, f"{c.help} (/{c.name} {c.args})" if c.args else c.help)
                for c in self.context.commands.table()
            ]
        )
        if not app.running:
            await app.start()
        if app.updater and not app.updater.running:
            await app.updater.start_polling(
                timeout=POLL_TIMEOUT,
                allowed_updates=list(UPDATES),
                error_callback=self._polling_error,
            )
        log_event(
            logger,
            "telegram.listening",
            bot=f"@{app.bot.username}",
            chats=",".join(self.destinations()),
        )

    async def _reconnect(self, first_failure: str) -> None:
        async def attempt() -> None:
            try:
                await self._connect(listen=True)
            except InvalidToken:
                raise
            except TelegramError as exc:
                raise Unreachable(self.clean(exc)) from None

        try:
            await self.keep_trying(
                attempt,
                "commands answer once Telegram is reachable; alerts wait in the outbox",
                first_failure,
            )
        except InvalidToken:
            log_event(
                logger,
                "telegram.start_failed",
                logging.ERROR,
                reason="Telegram rejected the bot token",
                hint="check notifiers.telegram.token and api_url",
            )

    async def stop(self) -> None:
        """Stop polling, let answers under way finish (bounded), close connections.
        Safe whether start() succeeded, failed half-way or never ran."""
        await self.cancel_start()
        app = self._app
        steps: list[tuple[str, Any]] = []
        if app.updater and app.updater.running:
            steps.append(("updater", app.updater.stop))
        if app.running:
            steps.append(("application", lambda: asyncio.wait_for(app.stop(), STOP_WAIT)))
        steps.append(("shutdown", app.shutdown))
        steps.extend(("connections", r.shutdown) for r in self._requests)
        for what, step in steps:
            try:
                await step()
            except Exception as exc:
                log_event(
                    logger,
                    "telegram.stop_failed",
                    logging.WARNING,
                    step=what,
                    reason=f"{type(exc).__name__}: {self.clean(exc)}",
                )

    # --- commands ---------------------------------------------------------------

    def _add_handlers(self) -> None:
        """One CommandHandler per entry of the command table, and one for button
        presses; each checks access itself, so that a stranger is refused."""
        # New messages only: CommandHandler would otherwise also answer edits.
        new = filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST
        handlers: list[Any] = []
        for command in self.context.commands.table():
            names = [command.name, "start"] if command.name == "help" else [command.name]
            handlers.append(CommandHandler(names, self._handler(command), filters=new))
        handlers.append(CallbackQueryHandler(self._pressed))
        handlers.append(ChatMemberHandler(self._membership, ChatMemberHandler.MY_CHAT_MEMBER))
        self._app.add_handlers(handlers)
        self._app.add_error_handler(self._on_error)

    def _handler(self, command: Command) -> Any:
        async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            chat, user = update.effective_chat, update.effective_user
            chat_id, user_id = (chat.id if chat else None), (user.id if user else None)
            if not command.public and not self.allowed(chat_id, user_id):
                self._refused(chat_id, chat.type if chat else None, user_id, _command(update))
                await self._answer(update, self.context.commands.refusal(), log=False)
                return

            async def reply() -> None:
                answer = await self.answer(
                    command.name,
                    _argument(update),
                    str(chat_id or ""),
                    str(user_id or ""),
                    _who(user) if user else "",
                )
                await self._answer(update, answer)

            if command.public:  # /id: always, at once
                await reply()
                return
            await self.one_at_a_time(
                str(chat_id), f"/{command.name}", reply, lambda note: self._answer(update, note)
            )

        return handle

    async def _pressed(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button of an alert message: acted on if the chat and user are
        allowed, answered at once either way (the answer shows as a toast)."""
        query = update.callback_query
        if query is None:
            return
        chat = query.message.chat if query.message else None
        chat_id, user = (chat.id if chat else None), query.from_user
        if not self.allowed(chat_id, user.id):
            self._refused(chat_id, chat.type if chat else None, user.id, "button")
            await query.answer(self.context.commands.refusal().title)
            return
        verb, _, token = (query.data or "").partition(":")
        press = Press(self.name, str(chat_id), verb, token, _who(user))
        try:
            answer = self.context.commands.press(press)
        except Exception as exc:  # answered either way: else the button spins for a while
            logger.error(
                "telegram.press_failed",
                exc_info=exc,
                extra={"fields": {"chat_id": chat_id, "user_id": user.id}},
            )
            answer = "balance-bot could not do that; the reason is in its log."
        await query.answer(answer)
        log_event(logger, "telegram.pressed", verb=verb, chat_id=chat_id, user_id=user.id)

    def _refused(
        self, chat_id: int | None, chat_type: str | None, user_id: int | None, what: str
    ) -> None:
        log_event(
            logger,
            "telegram.refused",
            logging.WARNING,
            chat_id=chat_id,
            chat_type=chat_type,
            user_id=user_id,
            command=what,
            hint="to allow it, add the chat to notifiers.telegram.chat_ids or allowed_chats "
            "(and the user to allowed_users, if set); /id shows both ids",
        )

    async def _membership(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log the id of a chat the bot was added to (or removed from), so the
        operator can copy it into chat_ids before anyone types a command."""
        change = update.my_chat_member
        if change is None:
            return
        chat, status = change.chat, change.new_chat_member.status
        allowed = chat.id in self.config.chat_ids
        fields: dict[str, Any] = {
            "chat_id": chat.id,
            "chat_type": chat.type,
            "status": status,
            "allowed": allowed,
        }
        joined = status in (ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR)
        if joined and not allowed:
            fields["hint"] = "add the chat_id to notifiers.telegram.chat_ids to send alerts there"
        log_event(logger, "telegram.membership", **fields)

    async def _answer(self, update: Update, message: Message, log: bool = True) -> None:
        incoming = update.effective_message
        if incoming is None:
            return
        if log:
            log_event(
                logger, "telegram.command", command=_command(update), chat_id=incoming.chat_id
            )
        for part, _ in render_pieces(message, "/balance"):
            for attempt in range(ANSWER_TRIES):
                try:
                    await incoming.reply_text(
                        part,
                        parse_mode=ParseMode.HTML,
                        link_preview_options=NO_PREVIEW,
                        do_quote=False,
                    )
                    break
                except RetryAfter as exc:  # Telegram said when: a short wait beats no answer
                    wait = retry_after(exc.retry_after)
                    if attempt + 1 == ANSWER_TRIES or wait is None or wait > ANSWER_WAIT_MAX:
                        raise
                    await asyncio.sleep(wait)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A failing handler is logged; polling goes on."""
        error = context.error
        fields: dict[str, Any] = {"reason": f"{type(error).__name__}: {self.clean(error)}"}
        if isinstance(update, Update) and update.effective_chat:
            fields["chat_id"] = update.effective_chat.id
        # Our own bugs get a traceback; Telegram's errors are explained by their text.
        exc_info = None if isinstance(error, TelegramError) else error
        logger.error("telegram.command_failed", exc_info=exc_info, extra={"fields": fields})

    def _polling_error(self, error: TelegramError) -> None:
        if isinstance(error, Conflict):
            log_event(
                logger,
                "telegram.conflict",
                logging.ERROR,
                reason=self.clean(error),
                hint="another process polls updates with this bot token; "
                "run exactly one balance-bot per token",
            )
        else:
            log_event(logger, "telegram.poll_failed", logging.WARNING, reason=self.clean(error))


def _command(update: Update) -> str:
    text = update.effective_message.text if update.effective_message else None
    return " ".join((text or "").split()[:1])


def _argument(update: Update) -> str:
    """Everything after the command, spaces inside kept (account names may have them)."""
    message = update.effective_message
    if not message or not message.text or not message.entities:
        return ""
    return message.text[message.entities[0].length :].strip()


# --- Message -> Telegram HTML ---------------------------------------------------


def render(message: Message) -> list[str]:
    """The message as Telegram HTML, split into parts of at most LIMIT UTF-16 units.

    Parts break between lines; each repeats the title with an (i/n) marker, and
    a part that starts inside a section repeats its heading. Deterministic.
    """
    return [part for part, _ in render_pieces(message)]


def render_pieces(message: Message, answer: str = "") -> list[tuple[str, list[str]]]:
    """render(), each part with the references of its lines; `answer`: the
    command the message answers (an answer is cut to REPLY_LIMIT parts: capped)."""
    title = fit((Span(message.title, bold=True),), TITLE_BUDGET - 16, _span)
    sections = [
        (
            fit((Span(s.heading, bold=True),), HEADING_BUDGET - len(CONTINUED), _span)
            if s.heading
            else "",
            [(fit(line, LINE_BUDGET, _span), s.ref(i)) for i, line in enumerate(s.lines)],
        )
        for s in message.sections
    ]
    reserve = 0
    while True:
        # the title, its blank line and the (i/n) marker aside; sections apart by a blank line
        limits = Limits(room=LIMIT - units(title) - reserve - 2, separator=2)
        pieces = [p for p in pack(sections, limits) if p.blocks] or [Piece()]
        marker = len(f" ({len(pieces)}/{len(pieces)})") if len(pieces) > 1 else 0
        if marker <= reserve:
            break
        reserve = marker
    if answer:
        pieces = capped(pieces, message, _note, answer)
    total = len(pieces)
    parts = []
    for index, piece in enumerate(pieces, 1):
        head = f"{title} ({index}/{total})" if total > 1 else title
        body = "\n\n".join(piece.blocks)
        parts.append((f"{head}\n\n{body}" if body else head, piece.refs))
    return parts


def _note(text: str) -> str:
    return fit((Span(text, bold=True),), LINE_BUDGET, _span)


def _span(text: str, bold: bool) -> str:
    return f"<b>{_esc(text)}</b>" if bold else _esc(text)


def _esc(text: str) -> str:
    # Quotes need no escaping outside attributes; leaving them keeps messages short.
    return html.escape(text, quote=False)


def _keyboard(post: Post) -> InlineKeyboardMarkup | None:
    if not post.buttons:
        return None
    row = [InlineKeyboardButton(label, callback_data=data) for label, data in post.buttons]
    return InlineKeyboardMarkup([row])


def _text(payload: Post | str) -> dict[str, Any]:
    """What sendMessage and editMessageText both take: HTML text, no link
    previews, the buttons (none: the keyboard goes)."""
    post = Post(payload) if isinstance(payload, str) else payload
    return {
        "text": post.text,
        "parse_mode": ParseMode.HTML,
        "link_preview_options": NO_PREVIEW,
        "reply_markup": _keyboard(post),
    }


def _who(user: User) -> str:
    return f"@{user.username}" if user.username else user.full_name


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The verifying context aiohttp made at import (the system's CA store, as
    for CometAPI and Slack): one set of certificates in memory, not two (~1 MB)."""
    shared = getattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", None)
    return shared if isinstance(shared, ssl.SSLContext) else httpx.create_ssl_context()


def _tls() -> dict[str, Any]:
    return {"verify": _tls_context()}
