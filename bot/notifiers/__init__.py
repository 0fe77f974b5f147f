"""The notifier interface.

A notifier is a class registered in the ``balance_bot.notifiers`` entry-point
group (bot/common/plugins.py) under the name users write in ``[notifiers.<name>]``.
The core knows no notifier by name; a third-party package adds one by
declaring, in its own pyproject.toml::

    [project.entry-points."balance_bot.notifiers"]
    teams = "my_package.teams:TeamsNotifier"

Contract (``log.py`` is the smallest complete example, README "Writing a
notifier" a chat-like one):

- ``Config``: a pydantic model for the section; unknown keys should be
  forbidden (subclass ``NotifierConfig``).
- ``destinations()``: the chats/channels an alert batch goes to. Delivery is
  tracked per destination, so one failing chat does not hold up the others.
- ``format(message)``: turn a neutral ``message.Message`` into one or more
  platform payloads (escaping, size limits: see ``message.pack``). Must be
  deterministic: after a restart, delivery resumes at the first payload not
  yet sent.
- ``picture(picture)``: optional; the payload that shows an image (a chart)
  a message carries, or None (the default) to leave it out.
- ``send(destination, payload)``: deliver one payload or raise
  ``DeliveryError`` (``permanent=True`` for errors that retrying cannot fix,
  ``retry_after`` when the platform said how long to wait).
- ``start(listen)`` / ``stop()``: optional; credential checks and, with
  ``listen``, chat listeners that answer ``context.commands`` on the
  application's event loop. ``base.ChatNotifier`` has what chat plugins share.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, StringConstraints

from bot.common import plugins
from bot.common.plugins import ENTRY_POINT_GROUP, FALLBACK, UnknownNotifierError, available
from bot.notifiers.message import Message, Picture

__all__ = [
    "ENTRY_POINT_GROUP",
    "FALLBACK",
    "Command",
    "Commands",
    "DeliveryError",
    "GroupName",
    "Notifier",
    "NotifierConfig",
    "NotifierContext",
    "Press",
    "Request",
    "UnknownNotifierError",
    "available",
    "load",
]

logger = logging.getLogger(__name__)


class NotifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# `[notifiers.<name>.groups]` names: what a rule writes after "<name>:"
GroupName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$")]


class DeliveryError(Exception):
    """A payload was not delivered. `reason` must not contain secrets."""

    def __init__(
        self, reason: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Request:
    """One command as a chat platform received it."""

    args: str = ""  # the text after the command
    chat: str = ""  # the chat or channel id
    user: str = ""  # the sender's id; "" when there is none (a channel post)
    # the platform's own list of commands (how to write each, what it does), for /help
    usage: tuple[tuple[str, str], ...] = ()
    who: str = ""  # the sender as people know them (@name), for "snoozed by"


@dataclass(frozen=True, slots=True)
class Press:
    """A button pressed on an alert message (message.buttons made its data)."""

    notifier: str
    destination: str  # where the message was sent, as destinations() names it
    verb: str
    token: str  # message.piece_ref of the piece pressed on
    who: str  # the presser as people know them, for "snoozed by"


@dataclass(frozen=True, slots=True)
class Command:
    """One chat command, as every platform offers it (bot/app/commands.py builds the table)."""

    name: str
    args: str  # how to write its arguments, e.g. "[account]"; "" for none
    help: str
    run: Callable[[Request], Awaitable[Message]]
    public: bool = False  # answers anyone, allowed or not (/id: nothing about balances)


class Commands(Protocol):
    """The chat commands a notifier offers, and what strangers are told."""

    def table(self) -> Sequence[Command]: ...

    def refusal(self) -> Message: ...

    async def press(self, press: Press) -> str:
        """Act on a pressed button (access already checked); the short answer."""
        ...


class Memory(Protocol):
    """Small facts a notifier keeps in the bot's state (shared by replicas), such
    as how far it has read a platform's updates."""

    async def meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...


@dataclass(frozen=True, slots=True)
class NotifierContext:
    """What the core offers a notifier: chat commands, display settings, and
    (in a running bot) a memory that outlives the process."""

    commands: Commands
    timezone: ZoneInfo
    memory: Memory | None = None


class Notifier(ABC):
    Config: ClassVar[type[NotifierConfig]] = NotifierConfig

    def __init__(self, name: str, config: Any, context: NotifierContext) -> None:
        self.name = name
        self.config = config
        self.context = context

    def destinations(self) -> Sequence[str]:
        """Where alerts go unless a rule names a group."""
        return ("default",)

    def groups(self) -> Mapping[str, Sequence[str]]:
        """Named sets of destinations: a rule's `notify = ["<name>:<group>"]`."""
        return {}

    def reaches(self, destination: str) -> bool:
        """Whether `destination` is still configured (by default or in a group)."""
        return destination in self.destinations() or any(
            destination in members for members in self.groups().values()
        )

    def label(self, destination: str) -> str:
        """How a destination is named in logs, /healthz and metrics: never a URL or token."""
        return destination

    def remedy(self, error: DeliveryError) -> str:
        """What to do about a send that failed (`balance-bot test-notify` says it)."""
        if error.retry_after is not None:
            return "the platform asks to wait; try again in a minute"
        return f"check [notifiers.{self.name}] and the destination"

    @abstractmethod
    def format(self, message: Message) -> list[Any]:
        """Platform payloads for one message; JSON-serialisable is not required."""

    def pieces(self, message: Message) -> list[tuple[Any, Sequence[str]]]:
        """format(), each payload with the references of the lines it holds (so
        that buttons act on the alerts of their own piece). A plugin that splits
        messages says which lines went where; by default each payload has all."""
        refs = [r for s in message.sections for r in s.refs if r]
        return [(payload, refs) for payload in self.format(message)]

    def picture(self, picture: Picture) -> Any | None:
        """The payload that shows `picture` (a photo, a file, an attachment), for
        send(); None where this notifier shows no pictures (they are left out)."""
        return None

    @abstractmethod
    async def send(self, destination: str, payload: Any) -> str | None:
        """Deliver one payload; the platform's id for the message if it can be
        edited later (edits follow the alerts it announced), else None."""

    async def edit(self, destination: str, message_id: str, payload: Any) -> None:
        """Replace a message sent before (only where send() returned its id); an
        unchanged message counts as edited."""
        raise DeliveryError(f"{self.name} cannot edit messages", permanent=True)

    async def start(self, listen: bool) -> None:  # noqa: B027 - optional hook
        """Check credentials; with `listen`, also start answering chat commands."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop listening and release connections."""


def load(name: str) -> type[Notifier]:
    cls = plugins.load(name)
    if not (isinstance(cls, type) and issubclass(cls, Notifier)):
        raise UnknownNotifierError(f"entry point {name!r} is not a Notifier subclass")
    return cls
