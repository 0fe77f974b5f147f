"""The Provider contract: how one kind of account's balance is read. A provider
is a class registered in the ``balance_bot.providers`` entry-point group under the
name users write in ``accounts[].provider``; the core knows none by name
(docs/providers.md has a complete example).
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Protocol

from bot.engine.forecast import DailyUse
from bot.engine.model import Account, Snapshot
from bot.upstream.transport import Transport


class Provider(Protocol):
    name: ClassVar[str]
    default_url: ClassVar[str]  # "" when every account must give its `url`
    keys: ClassVar[bool]  # it lists keys with their remainders (key rules apply)
    used: ClassVar[bool]  # it reports a used figure (else one is derived from the balance)
    seeds: ClassVar[bool]  # it offers past days of usage to seed burn rates (`daily`)

    async def fetch(self, account: Account, http: Transport, seconds: float) -> Snapshot:
        """One attempt at the account's balance within `seconds`: a Snapshot, or a
        FetchError (bot/upstream/transport.py) whose text never holds the key. The
        client retries transient failures."""
        ...

    async def daily(
        self, account: Account, http: Transport, seconds: float, first: date, last: date
    ) -> list[DailyUse]:
        """The complete past days first..last of usage (only where `seeds`)."""
        ...
