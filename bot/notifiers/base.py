"""What every chat plugin shares: its secrets masked in the libraries' log
records too, a start-up loop that keeps trying while the platform is down,
and one reading of Retry-After (bot/common/backoff.py)."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import AfterValidator, SecretStr

from bot.common.backoff import Backoff
from bot.common.logs import log_event
from bot.common.secrets import MASK, RedactingFilter, redact, register
from bot.notifiers import Notifier, NotifierContext, Request
from bot.notifiers.message import Message, Piece, keys_in

T = TypeVar("T")

REPLY_LIMIT = 5  # messages in one answer to a command, at most
BUSY = "Still working on your last {command}; ask again once it is answered."


def capped(
    pieces: Sequence[Piece], message: Message, note: Callable[[str], str], command: str
) -> list[Piece]:
    """An answer's pieces, at most REPLY_LIMIT: beyond, the last one says how
    many keys were left out and, if the message says how (Message.narrower), how
    to ask for less. `note` marks up that line; `command` is the chat's command."""
    if len(pieces) <= REPLY_LIMIT:
        return list(pieces)
    dropped = pieces[REPLY_LIMIT - 1 :]
    keys = sum(keys_in(ref) for piece in dropped for ref in piece.refs)
    text = f"… {keys} keys not shown (a reply holds at most {REPLY_LIMIT} messages)"
    if message.narrower:
        text += "; " + message.narrower.replace("{command}", command)
    return [*pieces[: REPLY_LIMIT - 1], Piece([note(text)])]


def shaped(pattern: str, problem: str) -> AfterValidator:
    """A check for a SecretStr field: the value must match the regex `pattern`
    (a platform's token shape), else `problem`; the value itself is never shown."""

    def check(value: SecretStr) -> SecretStr:
        if not re.match(pattern, value.get_secret_value()):
            raise ValueError(problem)
        return value

    return AfterValidator(check)


class StartError(RuntimeError):
    """A chat plugin could not start; the message never contains a token."""


class Unreachable(Exception):
    """An attempt in `keep_trying` failed in a way worth retrying; the reason is safe to log."""


class ChatNotifier(Notifier):
    # loggers of the platform's library whose records may carry a token
    library_loggers: ClassVar[Sequence[str]] = ()
    # how long to wait between attempts when the platform is unreachable at start-up
    start_backoff: ClassVar[Backoff] = Backoff(initial=5.0, maximum=300.0)

    def __init__(
        self, name: str, config: Any, context: NotifierContext, secrets: Sequence[str]
    ) -> None:
        super().__init__(name, config, context)
        self._secrets = tuple(secrets)
        self._starting: asyncio.Task[None] | None = None  # start-up going on in the background
        # answers under way, by (chat, command): whether a repeat was told BUSY yet
        self._under_way: dict[tuple[str, str], bool] = {}
        self.logger = logging.getLogger(type(self).__module__)
        for secret in self._secrets:
            register(secret)
        # Redact at the source, whatever handlers the process has (logs.py also
        # quiets the libraries; this covers embedders and DEBUG runs).
        for name_ in self.library_loggers:
            carrier = logging.getLogger(name_)
            if not any(isinstance(f, RedactingFilter) for f in carrier.filters):
                carrier.addFilter(RedactingFilter())

    def clean(self, text: object) -> str:
        """A text fit for logs and messages: the libraries put tokens into some of theirs."""
        out = str(text)
        for secret in self._secrets:
            out = out.replace(secret, MASK)
        return redact(out)

    def usage(self) -> tuple[tuple[str, str], ...]:
        """How each command is written on this platform, and what it does (for /help)."""
        return tuple(
            (f"/{c.name} {c.args}".rstrip(), c.help) for c in self.context.commands.table()
        )

    async def answer(
        self, name: str, args: str = "", chat: str = "", user: str = "", who: str = ""
    ) -> Message:
        """The answer to the command `name` typed in a chat (allowed: access control
        is the plugin's, before this); an unknown name gets the help."""
        table = self.context.commands.table()
        command = next((c for c in table if c.name == name), None)
        command = command or next(c for c in table if c.name == "help")
        return await command.run(Request(args, chat, user, self.usage(), who))

    async def one_at_a_time(
        self,
        chat: str,
        command: str,
        answer: Callable[[], Awaitable[None]],
        busy: Callable[[Message], Awaitable[None]],
    ) -> None:
        """Run `answer` (a reply to `command` in `chat`) unless one is under way:
        a storm of a command makes one answer at a time, while other commands
        go on. The first repeat meanwhile is told BUSY through `busy`, later
        ones nothing (a note each would be a storm of its own, and the chat's
        flood limit would then hold up alerts to it)."""
        key = (chat, command)
        if key in self._under_way:
            if not self._under_way[key]:
                self._under_way[key] = True
                await busy(Message(BUSY.format(command=command), ()))
            return
        self._under_way[key] = False
        try:
            await answer()
        finally:
            del self._under_way[key]

    def start_later(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Go on with start-up in the background (see keep_trying); stop() cancels it."""
        self._starting = asyncio.create_task(work, name=name)
        return self._starting

    async def cancel_start(self) -> None:
        task, self._starting = self._starting, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def keep_trying(
        self,
        attempt: Callable[[], Awaitable[T]],
        hint: str,
        first_failure: str | None = None,
    ) -> T:
        """Run `attempt` until it returns; each `Unreachable` it raises is logged
        as `<name>.unreachable` with the wait before the next try. Other
        exceptions end the loop. With `first_failure`, the first try already
        failed and the loop starts by waiting."""
        failures = 0
        reason = first_failure
        while True:
            if reason is not None:
                failures += 1
                delay = self.start_backoff.delay(failures, None, random.random)
                log_event(
                    self.logger,
                    f"{self.name}.unreachable",
                    logging.WARNING,
                    reason=reason,
                    retry_in=round(delay, 1),
                    hint=hint,
                )
                await asyncio.sleep(delay)
            try:
                return await attempt()
            except Unreachable as exc:
                reason = str(exc)
