"""Chat commands, platform-neutral: /balance, /status, /help -> Message.

Notifiers own access control and formatting; this module owns what the
answers say. Data comes from a BalanceSource (the running service).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.model import Event, Snapshot
from bot.render import AccountView, Message, balance_message, help_message, status_message

FRESH_FOR = 30.0  # seconds: /balance reuses data younger than this

REFUSAL = "Sorry, this chat is not allowed to use balance-bot."


class BalanceSource(Protocol):
    timezone: ZoneInfo

    def now(self) -> datetime: ...

    def account_names(self) -> list[str]: ...

    async def recent_snapshot(self, account: str, max_age: float) -> tuple[Snapshot | None, str]:
        """The newest good data no older than max_age, fetching if needed; on a
        failed fetch, the last good data and the (redacted) reason."""
        ...

    def firing_subjects(self, account: str) -> tuple[bool, frozenset[str]]:
        """(total is firing, key names firing) for the /balance markers."""
        ...

    def firing_events(self) -> tuple[list[Event], list[Event]]:
        """(firing alerts, accounts without data) as events, for /status."""
        ...


class ChatCommands:
    def __init__(self, source: BalanceSource) -> None:
        self.source = source

    async def balance(self, arg: str = "") -> Message:
        names = self.source.account_names()
        arg = arg.strip()
        if arg:
            chosen = [n for n in names if n == arg] or [
                n for n in names if n.lower() == arg.lower()
            ]
            if not chosen:
                return _note(f"Unknown account {arg!r}. Accounts: {', '.join(names)}")
            names = chosen
        views = []
        for account in names:
            snapshot, error = await self.source.recent_snapshot(account, FRESH_FOR)
            total, keys = self.source.firing_subjects(account)
            views.append(AccountView(account, snapshot, total, keys, error))
        return balance_message(views, self.source.now(), self.source.timezone)

    def status(self) -> Message:
        return status_message(*self.source.firing_events())

    @staticmethod
    def help(commands: Sequence[tuple[str, str]]) -> Message:
        return help_message(commands)

    @staticmethod
    def refusal() -> Message:
        return _note(REFUSAL)


def _note(text: str) -> Message:
    return Message(text, ())
