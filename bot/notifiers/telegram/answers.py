"""The commands of the one table and the button presses: access checked, one
answer under way per chat, answers that survive a brief rate limit."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import (
    Update,
    User,
)
from telegram.constants import ChatMemberStatus, ParseMode
from telegram.error import (
    Conflict,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    TypeHandler,
    filters,
)

from bot.common.backoff import retry_after
from bot.common.logs import log_event
from bot.notifiers import (
    Command,
    Press,
)
from bot.notifiers.message import Message
from bot.notifiers.telegram.base import (
    ANSWER_TRIES,
    ANSWER_WAIT_MAX,
    NO_PREVIEW,
    TelegramBase,
)
from bot.notifiers.telegram.pieces import photo, render_pieces

logger = logging.getLogger(__name__)


class TelegramAnswers(TelegramBase):
    """The half of the Telegram notifier that answers people."""

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
        # after the answer (group 1 runs once group 0 is done): how far updates are read
        self._app.add_handler(TypeHandler(Update, self._read), group=1)
        self._app.add_error_handler(self._on_error)

    async def _read(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Remember the update offset in the state: a process that takes over (a
        replica, or this one restarted) skips what was answered already."""
        memory = self.context.memory
        if memory is None or update.update_id < self._offset:
            return
        self._offset = update.update_id + 1
        try:
            await memory.set_meta(self.offset_key, str(self._offset))
        except Exception as exc:  # the state is down: Telegram's own offset still holds
            log_event(logger, "telegram.offset_not_saved", logging.WARNING, reason=str(exc))

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
            answer = await self.context.commands.press(press)
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
        for picture in message.pictures:  # a chart: a photo, its numbers in the caption
            sent = photo(picture)
            reply_photo = functools.partial(
                incoming.reply_photo,
                sent.png,
                filename=sent.name,
                caption=sent.caption,
                parse_mode=ParseMode.HTML,
                do_quote=False,
            )
            await _patiently(reply_photo)
        if message.pictures and not message.sections:
            return  # the pictures said it all
        for part, _ in render_pieces(message, "/balance"):
            reply_text = functools.partial(
                incoming.reply_text,
                part,
                parse_mode=ParseMode.HTML,
                link_preview_options=NO_PREVIEW,
                do_quote=False,
            )
            await _patiently(reply_text)

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


async def _patiently(send: Callable[[], Awaitable[object]]) -> None:
    """One message of an answer; Telegram saying when to try again, a short
    wait beats no answer."""
    for attempt in range(ANSWER_TRIES):
        try:
            await send()
            return
        except RetryAfter as exc:
            wait = retry_after(exc.retry_after)
            if attempt + 1 == ANSWER_TRIES or wait is None or wait > ANSWER_WAIT_MAX:
                raise
            await asyncio.sleep(wait)


def _command(update: Update) -> str:
    text = update.effective_message.text if update.effective_message else None
    return " ".join((text or "").split()[:1])


def _argument(update: Update) -> str:
    """Everything after the command, spaces inside kept (account names may have them)."""
    message = update.effective_message
    if not message or not message.text or not message.entities:
        return ""
    return message.text[message.entities[0].length :].strip()


def _who(user: User) -> str:
    return f"@{user.username}" if user.username else user.full_name
