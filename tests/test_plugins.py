"""Notifiers are plugins: a third party adds one through the entry-point group alone."""

from __future__ import annotations

import asyncio
from importlib.metadata import EntryPoint

from bot import notifiers
from bot.cometapi import RetryPolicy
from bot.notifiers import ENTRY_POINT_GROUP, Notifier, NotifierConfig
from bot.render import Message
from bot.service import App
from fakes.cometapi import reply_balance

FAST = RetryPolicy(attempts=1, deadline=2, wait_initial=0.01, wait_max=0.01, wait_jitter=0)


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
    monkeypatch.setattr(notifiers, "available", lambda: installed)
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
