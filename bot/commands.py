"""The one command table: name, arguments, help, handler, for every platform.

Notifiers own access control and formatting; this module owns what the
answers say, reading through `views` from a BalanceSource (the monitor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.model import EngineState, Rule, Snapshot
from bot.notifiers import Command, Request
from bot.notifiers.message import Message
from bot.render import help_message
from bot.views import balance_view, status_view

FRESH_FOR = 30.0  # seconds: /balance reuses data younger than this

REFUSAL = "Sorry, this chat is not allowed to use balance-bot."


class BalanceSource(Protocol):
    @property
    def timezone(self) -> ZoneInfo: ...

    @property
    def rules(self) -> Sequence[Rule]: ...

    @property
    def state(self) -> EngineState: ...

    @property
    def request_timeout(self) -> float: ...

    def now(self) -> datetime: ...

    def account_names(self) -> list[str]: ...

    def latest(self, account: str) -> Snapshot | None: ...

    async def recent_snapshot(self, account: str, max_age: float) -> tuple[Snapshot | None, str]:
        """The newest good data no older than max_age, fetching if needed; on a
        failed fetch, the last good data and the (redacted) reason."""
        ...


class ChatCommands:
    def __init__(self, source: BalanceSource) -> None:
        self.source = source

    def table(self) -> tuple[Command, ...]:
        """Every command, in the order platforms list them."""
        return (
            Command("balance", "[account]", "balance, usage and keys per account", self._balance),
            Command("status", "", "alerts firing now and accounts without data", self._status),
            Command("help", "", "these commands", self._help),
        )

    async def balance(self, arg: str = "") -> Message:
        source = self.source
        names = source.account_names()
        arg = arg.strip()
        if arg:
            chosen = [n for n in names if n == arg] or [
                n for n in names if n.lower() == arg.lower()
            ]
            if not chosen:
                return _note(f"Unknown account {arg!r}. Accounts: {', '.join(names)}")
            names = chosen
        return balance_view(
            await self._fetch(names), source.rules, source.state, source.now(), source.timezone
        )

    async def _fetch(self, names: list[str]) -> dict[str, tuple[Snapshot | None, str]]:
        """Fresh data of every account at once, each within request_timeout; one
        that does not answer in time is shown from its last good data."""
        source = self.source
        timeout = source.request_timeout
        asked = {a: asyncio.ensure_future(source.recent_snapshot(a, FRESH_FOR)) for a in names}
        await asyncio.wait(asked.values(), timeout=timeout)
        fetched = {}
        for account, task in asked.items():
            if task.done():
                fetched[account] = task.result()
            else:
                task.cancel()
                fetched[account] = (source.latest(account), f"no answer within {timeout:g}s")
        await asyncio.gather(*asked.values(), return_exceptions=True)
        return fetched

    def status(self) -> Message:
        source = self.source
        return status_view(source.state, source.rules, source.latest, source.now())

    @staticmethod
    def refusal() -> Message:
        return _note(REFUSAL)

    async def _balance(self, request: Request) -> Message:
        return await self.balance(request.args)

    async def _status(self, request: Request) -> Message:
        return self.status()

    async def _help(self, request: Request) -> Message:
        return help_message(request.usage)


def _note(text: str) -> Message:
    return Message(text, ())
