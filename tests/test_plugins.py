"""Notifiers are plugins: a third party adds one through the entry-point group alone."""

from __future__ import annotations

import asyncio
from importlib.metadata import EntryPoint
from typing import ClassVar

from pydantic import SecretStr

from bot import notifiers
from bot.app.service import App
from bot.common import plugins, secrets
from bot.notifiers import ENTRY_POINT_GROUP, Notifier, NotifierConfig, NotifierContext
from bot.notifiers.base import ChatNotifier
from bot.notifiers.message import Limits, Message, pack, plain
from fakes.cometapi import reply_balance
from tests.helpers import FAST


class MemoryConfig(NotifierConfig):
    rooms: list[str]


class MemoryNotifier(Notifier):
    """What a third-party plugin looks like."""

    Config = MemoryConfig
    inbox: list[tuple[str, str]] = []  # noqa: RUF012 - shared with the test

    def destinations(self):
        return self.config.rooms

    def format(self, message: Message) -> list[str]:
        return ["\n".join(message.plain_lines())]

    async def send(self, destination: str, payload: str) -> None:
        self.inbox.append((destination, payload))


def test_builtin_notifiers_are_registered_as_entry_points():
    assert {"log", "telegram", "slack"} <= set(notifiers.available())
    assert issubclass(notifiers.load("telegram"), Notifier)


async def test_a_third_party_notifier_plugs_in(make_config, comet, monkeypatch):
    point = EntryPoint("memory", f"{__name__}:MemoryNotifier", ENTRY_POINT_GROUP)
    installed = {**notifiers.available(), "memory": point}
    monkeypatch.setattr(plugins, "available", lambda: installed)
    cfg = make_config(
        """
[[rules]]
name = "low"
target = "total"
below = 20

[notifiers.memory]
rooms = ["r1", "r2"]
"""
    )
    comet.default = reply_balance(5)
    async with App(cfg, retry=FAST) as app:
        assert list(app.notifiers) == ["memory"]
        await app.cycle()
        await asyncio.wait_for(app.delivery.deliver_due(), 5)
    assert [room for room, _ in MemoryNotifier.inbox] == ["r1", "r2"]
    assert "WARNING · main / total: $5.00 left" in MemoryNotifier.inbox[0][1]


# --- a chat-like plugin from the toolkit alone (README, "Writing a notifier") ---------------


class RoomsConfig(NotifierConfig):
    token: SecretStr
    rooms: list[str]


class RoomsNotifier(ChatNotifier):
    Config = RoomsConfig
    inbox: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, name: str, config: RoomsConfig, context: NotifierContext) -> None:
        super().__init__(name, config, context, secrets=[config.token.get_secret_value()])

    def destinations(self) -> list[str]:
        return self.config.rooms

    def format(self, message: Message) -> list[str]:
        sections = [
            (s.heading, [(plain(line), s.ref(i)) for i, line in enumerate(s.lines)])
            for s in message.sections
        ]
        pieces = pack(sections, Limits(room=2000, separator=2))
        return [f"{message.title}\n\n" + "\n\n".join(p.blocks) for p in pieces]

    async def send(self, destination: str, payload: str) -> None:
        self.inbox.append((destination, payload))

    async def typed(self, room: str, text: str) -> None:
        """What the platform's listener calls for a message in a room."""
        name, _, args = text.removeprefix("/").partition(" ")
        for payload in self.format(await self.answer(name, args, room)):
            await self.send(room, payload)


async def test_a_chat_like_plugin_needs_only_the_toolkit(make_config, comet, monkeypatch):
    point = EntryPoint("rooms", f"{__name__}:RoomsNotifier", ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "available", lambda: {"rooms": point})
    cfg = make_config(
        """
[[rules]]
name = "low"
target = "total"
below = 20

[notifiers.rooms]
token = "rooms-SECRET-token-0042"
rooms = ["ops"]
"""
    )
    comet.default = reply_balance(5)
    async with App(cfg, retry=FAST) as app:
        await app.cycle()
        await asyncio.wait_for(app.delivery.deliver_due(), 5)
        rooms = app.notifiers["rooms"]
        assert isinstance(rooms, RoomsNotifier)
        await rooms.typed("ops", "/status")
        await rooms.typed("ops", "/help")
    (alert, status, helptext) = [text for _, text in RoomsNotifier.inbox]
    assert "WARNING · main / total: $5.00 left" in alert
    assert status.startswith("CometAPI balance: 1 firing")
    assert "/balance [account] — balance, usage and keys per account" in helptext
    assert secrets.redact("token rooms-SECRET-token-0042") == "token ***"
