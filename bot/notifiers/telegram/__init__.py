"""Telegram notifier: alerts to chat_ids (and groups), with Snooze/Ack buttons
that edit the message; the commands of the one table.

python-telegram-bot runs on the application's own event loop: `start()` does
what `Application.run_polling()` would do minus taking over the loop, and
`stop()` undoes it. Alerts are sent as HTML; `format()` escapes every span and
splits at line boundaries so that no message exceeds Telegram's 4096 limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from telegram import (
    BotCommand,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.common.backoff import retry_after
from bot.common.logs import log_event
from bot.notifiers import (
    DeliveryError,
)
from bot.notifiers.base import StartError, Unreachable
from bot.notifiers.message import Message, Picture, buttons
from bot.notifiers.telegram.answers import TelegramAnswers
from bot.notifiers.telegram.base import (
    LIMIT,
    POLL_TIMEOUT,
    STOP_WAIT,
    UPDATES,
    Photo,
    Post,
    TelegramConfig,
)
from bot.notifiers.telegram.pieces import _text, photo, render, render_pieces

logger = logging.getLogger(__name__)

__all__ = ["LIMIT", "TelegramConfig", "TelegramNotifier", "render", "render_pieces"]


class TelegramNotifier(TelegramAnswers):
    """Alerts and edits, and the listener's lifecycle."""

    def format(self, message: Message) -> list[Post]:
        return [post for post, _ in self.pieces(message)]

    def pieces(self, message: Message) -> list[tuple[Any, Sequence[str]]]:
        return [
            (Post(text, tuple(buttons(message, i, refs))), refs)
            for i, (text, refs) in enumerate(render_pieces(message))
        ]

    def picture(self, picture: Picture) -> Photo:
        return photo(picture)

    async def send(self, destination: str, payload: Post | Photo | str) -> str:
        try:
            if isinstance(payload, Photo):
                sent = await self._app.bot.send_photo(
                    chat_id=int(destination),
                    photo=payload.png,
                    filename=payload.name,
                    caption=payload.caption,
                    parse_mode=ParseMode.HTML,
                )
            else:
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
            await self._skip_read()
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

    async def _skip_read(self) -> None:
        """Confirm to Telegram the updates the state says were answered already
        (by this process before a restart, or by the replica it took over from),
        which a process that died could not confirm: none is answered twice."""
        memory = self.context.memory
        try:
            stored = await memory.meta(self.offset_key) if memory is not None else None
        except Exception as exc:  # the state is down: Telegram's own offset still holds
            log_event(logger, "telegram.offset_unread", logging.WARNING, reason=str(exc))
            return
        if stored and stored.isdigit() and int(stored) > self._offset:
            self._offset = int(stored)
            await self._app.bot.get_updates(offset=self._offset, limit=1, timeout=0)

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
