"""Telegram notifier: alerts to chat_ids, and /balance, /status, /help.

python-telegram-bot runs on the application's own event loop: `start()` does
what `Application.run_polling()` would do minus taking over the loop, and
`stop()` undoes it. Alerts are sent as HTML; `format()` escapes every span and
splits at line boundaries so that no message exceeds Telegram's 4096 limit.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator
from telegram import BotCommand, LinkPreviewOptions, Update
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
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    filters,
)
from telegram.request import HTTPXRequest

from bot.delivery import Backoff
from bot.logs import log_event
from bot.notifiers import DeliveryError, Notifier, NotifierConfig, NotifierContext
from bot.render import Message, Span, fit, units
from bot.secrets import MASK, RedactingFilter, redact, register

# Time periods as timedelta, as PTB 23 will do by default; without this opt-in
# PTB 22 warns that the int form is deprecated each time it builds a RetryAfter.
os.environ.setdefault("PTB_TIMEDELTA", "1")

logger = logging.getLogger(__name__)

LIMIT = MessageLimit.MAX_TEXT_LENGTH  # 4096
# Escaping can grow a 200-character name fivefold (& -> &amp;), so every piece
# of a message has a budget; together they always fit in LIMIT.
TITLE_BUDGET = 1000
HEADING_BUDGET = 1000
LINE_BUDGET = LIMIT - TITLE_BUDGET - HEADING_BUDGET - 16
CONTINUED = " (continued)"

POLL_TIMEOUT = 30  # seconds a getUpdates long poll stays open
STOP_WAIT = 5.0  # seconds to let command answers under way finish on stop
# Edited messages are not even fetched; my_chat_member tells when the bot joins a chat.
UPDATES = ("message", "channel_post", "my_chat_member")

# (command, arguments, what it does): /help, setMyCommands and the handlers.
COMMANDS = (
    ("balance", "[account]", "balance, usage and keys per account"),
    ("status", "", "alerts firing now and accounts without data"),
    ("help", "", "these commands"),
)
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
# Loggers whose records carry the token: httpx logs each URL at INFO
# (.../bot<token>/sendMessage) and PTB's bot logs its base URL at DEBUG.
TOKEN_CARRIERS = ("httpx", "telegram.Bot", "telegram.ext.ExtBot")


class TelegramConfig(NotifierConfig):
    token: SecretStr
    chat_ids: list[int] = Field(min_length=1)
    api_url: str = "https://api.telegram.org"

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr) -> SecretStr:
        if ":" not in v.get_secret_value():
            raise ValueError("does not look like a bot token from @BotFather (123456:ABC...)")
        return v


class TelegramStartError(RuntimeError):
    """The bot could not start; the message never contains the token."""


class TelegramNotifier(Notifier):
    Config = TelegramConfig
    config: TelegramConfig
    # how long to wait between attempts when Telegram is unreachable at start-up
    start_backoff: ClassVar[Backoff] = Backoff(initial=5.0, maximum=300.0)

    def __init__(self, name: str, config: TelegramConfig, context: NotifierContext) -> None:
        super().__init__(name, config, context)
        self._token = config.token.get_secret_value()
        _guard_logs(self._token)
        api = config.api_url.rstrip("/")
        # Our own request objects, so stop() can close them even if start() never ran.
        self._requests = (
            HTTPXRequest(connection_pool_size=8, read_timeout=10.0),
            HTTPXRequest(connection_pool_size=1, read_timeout=10.0),
        )
        self._app = (
            ApplicationBuilder()
            .token(self._token)
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            .request(self._requests[0])
            .get_updates_request(self._requests[1])
            .job_queue(None)  # the service has its own scheduler
            .build()
        )
        self._add_handlers()
        self._retry: asyncio.Task[None] | None = None

    def destinations(self) -> list[str]:
        return [str(c) for c in self.config.chat_ids]

    # --- alerts -----------------------------------------------------------------

    def format(self, message: Message) -> list[str]:
        return render(message)

    async def send(self, destination: str, payload: str) -> None:
        try:
            await self._app.bot.send_message(
                chat_id=int(destination),
                text=payload,
                parse_mode=ParseMode.HTML,
                link_preview_options=NO_PREVIEW,
            )
        except TelegramError as exc:
            raise self._delivery_error(destination, exc) from None

    def _delivery_error(self, chat_id: str, exc: TelegramError) -> DeliveryError:
        where = f"Telegram chat {chat_id}"
        if isinstance(exc, RetryAfter):
            return DeliveryError(f"{where}: rate limited", retry_after=_retry_after(exc))
        if isinstance(exc, ChatMigrated):
            return DeliveryError(
                f"{where} is now a supergroup with id {exc.new_chat_id}; "
                "put that id in notifiers.telegram.chat_ids",
                permanent=True,
            )
        if isinstance(exc, InvalidToken | EndPointNotFound):
            return DeliveryError(
                f"{where}: Telegram rejected the bot token ({self._clean(exc)}); "
                "check notifiers.telegram.token and api_url",
                permanent=True,
            )
        # Blocked, kicked, chat not found: retrying cannot help. Everything else
        # (TimedOut, NetworkError, 5xx) is transient; BadRequest subclasses NetworkError.
        permanent = isinstance(exc, Forbidden | BadRequest)
        return DeliveryError(f"{where}: {self._clean(exc)}", permanent=permanent)

    def _clean(self, exc: object) -> str:
        """An error text fit for logs: PTB puts the token into some of them."""
        return redact(str(exc)).replace(self._token, MASK)

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
            raise TelegramStartError(
                "Telegram rejected the bot token; check notifiers.telegram.token and api_url"
            ) from None
        except (TimedOut, NetworkError) as exc:
            if not listen or isinstance(exc, BadRequest):
                raise TelegramStartError(f"Telegram: {self._clean(exc)}") from None
            self._retry = asyncio.create_task(self._keep_trying(exc), name="telegram.start")
        except TelegramError as exc:
            raise TelegramStartError(f"Telegram: {self._clean(exc)}") from None

    async def _connect(self, listen: bool) -> None:
        app = self._app
        await app.initialize()  # getMe: fails here on a bad token
        if not listen:
            return
        await app.bot.set_my_commands(
            [
                BotCommand(cmd, f"{text} (/{cmd} {args})" if args else text)
                for cmd, args, text in COMMANDS
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

    async def _keep_trying(self, first: TelegramError) -> None:
        error: TelegramError = first
        attempt = 0
        while True:
            attempt += 1
            delay = self.start_backoff.delay(attempt, None, random.random)
            log_event(
                logger,
                "telegram.unreachable",
                logging.WARNING,
                reason=self._clean(error),
                retry_in=round(delay, 1),
                hint="commands answer once Telegram is reachable; alerts wait in the outbox",
            )
            await asyncio.sleep(delay)
            try:
                await self._connect(listen=True)
                return
            except InvalidToken:
                log_event(
                    logger,
                    "telegram.start_failed",
                    logging.ERROR,
                    reason="Telegram rejected the bot token",
                    hint="check notifiers.telegram.token and api_url",
                )
                return
            except TelegramError as exc:
                error = exc

    async def stop(self) -> None:
        """Stop polling, let answers under way finish (bounded), close connections.
        Safe whether start() succeeded, failed half-way or never ran."""
        if self._retry:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
            self._retry = None
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
                    reason=f"{type(exc).__name__}: {self._clean(exc)}",
                )

    # --- commands ---------------------------------------------------------------

    def _add_handlers(self) -> None:
        allowed = filters.Chat(chat_id=self.config.chat_ids)
        # New messages only: CommandHandler would otherwise also answer edits.
        new = filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST
        names = [cmd for cmd, _, _ in COMMANDS]
        self._app.add_handlers(
            [
                CommandHandler("balance", self._balance, filters=new & allowed),
                CommandHandler("status", self._status, filters=new & allowed),
                CommandHandler(["help", "start"], self._help, filters=new & allowed),
                CommandHandler([*names, "start"], self._refuse, filters=new & ~allowed),
                ChatMemberHandler(self._membership, ChatMemberHandler.MY_CHAT_MEMBER),
            ]
        )
        self._app.add_error_handler(self._on_error)

    async def _balance(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._answer(update, await self.context.commands.balance(_argument(update)))

    async def _status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._answer(update, self.context.commands.status())

    async def _help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._answer(update, self.context.commands.help(help_lines()))

    async def _refuse(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, user = update.effective_chat, update.effective_user
        log_event(
            logger,
            "telegram.refused",
            logging.WARNING,
            chat_id=chat.id if chat else None,
            chat_type=chat.type if chat else None,
            user_id=user.id if user else None,
            command=_command(update),
            hint="add the chat_id to notifiers.telegram.chat_ids to allow this chat",
        )
        await self._answer(update, self.context.commands.refusal(), log=False)

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
        for part in self.format(message):
            await incoming.reply_text(
                part, parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW, do_quote=False
            )

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A failing handler is logged; polling goes on."""
        error = context.error
        fields: dict[str, Any] = {"reason": f"{type(error).__name__}: {self._clean(error)}"}
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
                reason=self._clean(error),
                hint="another process polls updates with this bot token; "
                "run exactly one balance-bot per token",
            )
        else:
            log_event(logger, "telegram.poll_failed", logging.WARNING, reason=self._clean(error))


def _guard_logs(token: str) -> None:
    """Redact at the source, whatever handlers the process has (logs.py also
    raises httpx to WARNING; this covers embedders and DEBUG runs)."""
    register(token)
    for name in TOKEN_CARRIERS:
        carrier = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in carrier.filters):
            carrier.addFilter(RedactingFilter())


def _command(update: Update) -> str:
    text = update.effective_message.text if update.effective_message else None
    return " ".join((text or "").split()[:1])


def _argument(update: Update) -> str:
    """Everything after the command, spaces inside kept (account names may have them)."""
    message = update.effective_message
    if not message or not message.text or not message.entities:
        return ""
    return message.text[message.entities[0].length :].strip()


def help_lines() -> Sequence[tuple[str, str]]:
    return [(f"/{cmd} {args}".rstrip(), text) for cmd, args, text in COMMANDS]


def _retry_after(exc: RetryAfter) -> float:
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# --- Message -> Telegram HTML ---------------------------------------------------


def render(message: Message) -> list[str]:
    """The message as Telegram HTML, split into parts of at most LIMIT UTF-16 units.

    Parts break between lines; each repeats the title with an (i/n) marker, and
    a part that starts inside a section repeats its heading. Deterministic.
    """
    title = fit((Span(message.title, bold=True),), TITLE_BUDGET - 16, _span)
    sections = [
        (
            fit((Span(s.heading, bold=True),), HEADING_BUDGET - len(CONTINUED), _span)
            if s.heading
            else "",
            [fit(line, LINE_BUDGET, _span) for line in s.lines],
        )
        for s in message.sections
    ]
    reserve = 0
    while True:
        bodies = _pack(sections, LIMIT - units(title) - reserve)
        marker = len(f" ({len(bodies)}/{len(bodies)})") if len(bodies) > 1 else 0
        if marker <= reserve:
            break
        reserve = marker
    total = len(bodies)
    parts = []
    for index, body in enumerate(bodies, 1):
        head = f"{title} ({index}/{total})" if total > 1 else title
        parts.append(f"{head}\n\n{body}" if body else head)
    return parts


def _pack(sections: list[tuple[str, list[str]]], room: int) -> list[str]:
    """Lines into bodies of at most `room` units (the title and its blank line aside)."""
    room -= 2  # "\n\n" after the title
    bodies: list[list[str]] = [[]]
    used = 0

    def add(text: str, separator: str) -> bool:
        nonlocal used
        cost = units(text) + (units(separator) if bodies[-1] else 0)
        if bodies[-1] and used + cost > room:
            return False
        bodies[-1].append((separator if bodies[-1] else "") + text)
        used += cost
        return True

    def new_body() -> None:
        nonlocal used
        bodies.append([])
        used = 0

    for heading, lines in sections:
        if not heading and not lines:
            continue
        first = lines[0] if lines else ""
        opening = "\n".join(x for x in (heading, first) if x)
        if not add(opening, "\n\n"):  # keep a heading with its first line
            new_body()
            add(opening, "")
        for line in lines[1:]:
            if not add(line, "\n"):
                new_body()
                add(f"{heading}{CONTINUED}\n{line}" if heading else line, "")
    return ["".join(body) for body in bodies if body] or [""]


def _span(text: str, bold: bool) -> str:
    return f"<b>{_esc(text)}</b>" if bold else _esc(text)


def _esc(text: str) -> str:
    # Quotes need no escaping outside attributes; leaving them keeps messages short.
    return html.escape(text, quote=False)
