"""The notifier interface and the entry-point registry.

A notifier is a class registered in the ``balance_bot.notifiers`` entry-point
group under the name users write in ``[notifiers.<name>]``. The core knows no
notifier by name; a third-party package adds one by declaring, in its own
pyproject.toml::

    [project.entry-points."balance_bot.notifiers"]
    teams = "my_package.teams:TeamsNotifier"

Contract (see ``log.py`` for the smallest complete example):

- ``Config``: a pydantic model for the section; unknown keys should be
  forbidden (subclass ``NotifierConfig``).
- ``destinations()``: the chats/channels an alert batch goes to. Delivery is
  tracked per destination, so one failing chat does not hold up the others.
- ``format(message)``: turn a neutral ``render.Message`` into one or more
  platform payloads (escaping, size limits). Must be deterministic: after a
  restart, delivery resumes at the first payload not yet sent.
- ``send(destination, payload)``: deliver one payload or raise
  ``DeliveryError`` (``permanent=True`` for errors that retrying cannot fix,
  ``retry_after`` when the platform said how long to wait).
- ``start(listen)`` / ``stop()``: optional; credential checks and, with
  ``listen``, chat listeners for commands, on the application's event loop.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from bot.commands import ChatCommands
    from bot.render import Message

ENTRY_POINT_GROUP = "balance_bot.notifiers"

logger = logging.getLogger(__name__)


class NotifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
class NotifierContext:
    """What the core offers a notifier: chat commands and display settings."""

    commands: ChatCommands
    timezone: ZoneInfo


class Notifier(ABC):
    Config: ClassVar[type[NotifierConfig]] = NotifierConfig

    def __init__(self, name: str, config: Any, context: NotifierContext) -> None:
        self.name = name
        self.config = config
        self.context = context

    def destinations(self) -> Sequence[str]:
        return ("default",)

    @abstractmethod
    def format(self, message: Message) -> list[Any]:
        """Platform payloads for one message; JSON-serialisable is not required."""

    @abstractmethod
    async def send(self, destination: str, payload: Any) -> None: ...

    async def start(self, listen: bool) -> None:  # noqa: B027 - optional hook
        """Check credentials; with `listen`, also start answering chat commands."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop listening and release connections."""


class UnknownNotifierError(LookupError):
    pass


@cache
def available() -> dict[str, Any]:
    """Installed notifier entry points by name (loaded lazily)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load(name: str) -> type[Notifier]:
    points = available()
    if name not in points:
        known = ", ".join(sorted(points)) or "none"
        raise UnknownNotifierError(f"unknown notifier (installed: {known})")
    cls = points[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Notifier)):
        raise UnknownNotifierError(f"entry point {name!r} is not a Notifier subclass")
    return cls
