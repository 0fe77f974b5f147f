"""The read model: what the last cycles left in memory (alert states, the latest
good data of each account, poll outcomes, what its history says), for chat
commands, /healthz, /metrics and `check`. The cycle and the jobs write it; the
rest only reads it, through the methods the views ask for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.app.history import History
from bot.app.views import PollRecord
from bot.config import Config
from bot.engine.model import Account, EngineState, Flow, PollFailure, Rule, Snapshot
from bot.notify.render import name_providers
from bot.state.protocol import StateStore
from bot.state.types import Sample
from bot.upstream.client import Client

Clock = Callable[[], datetime]


class ReadModel:
    """The engine state and latest data as committed; `history` is the cycle's."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        client: Client,
        clock: Clock,
        state: EngineState,
        snapshots: Mapping[str, Snapshot],
        history: History,
    ) -> None:
        self.store = store
        self.clock = clock
        self.history = history
        self.state = state
        self.snapshots = dict(snapshots)
        self.polls: dict[str, PollRecord] = {}
        self.flows: dict[str, Flow] = {}  # what each account's history said at its last poll
        self.started_at = clock()
        self.last_cycle_at: datetime | None = None
        self._adhoc: dict[str, Snapshot] = {}  # fetched for /balance between cycles
        self._fetch_locks: dict[str, asyncio.Lock] = {}
        self.configure(config, client)

    def configure(self, config: Config, client: Client) -> None:
        """A (re)loaded config: what is kept of accounts no longer configured goes."""
        self.config, self.client = config, client
        self.accounts: dict[str, Account] = {a.name: a for a in config.accounts}
        name_providers(a.provider for a in config.accounts)
        self.rules: Sequence[Rule] = config.rules
        self.timezone: ZoneInfo = config.bot.zone
        for kept in (self.snapshots, self.flows, self.polls):
            for gone in [a for a in kept if a not in self.accounts]:
                del kept[gone]

    def severities(self) -> dict[str, str]:
        return {rule.name: rule.severity.value for rule in self.rules}

    # --- what chat commands read (commands.BalanceSource) ------------------------

    def now(self) -> datetime:
        return self.clock()

    @property
    def request_timeout(self) -> float:
        return self.config.bot.request_timeout

    def currency(self, account: str) -> str:
        return self.accounts[account].currency

    def account_names(self) -> list[str]:
        return list(self.accounts)

    async def flow(self, account: str) -> Flow:
        return await self.history.flow(account, self.clock())

    async def samples(self, account: str, since: float, until: float) -> list[Sample]:
        return await self.store.history.of(account, since, until)

    def latest(self, account: str) -> Snapshot | None:
        candidates = [s for s in (self.snapshots.get(account), self._adhoc.get(account)) if s]
        return max(candidates, key=lambda s: s.fetched_at, default=None)

    async def recent_snapshot(self, account: str, max_age: float) -> tuple[Snapshot | None, str]:
        lock = self._fetch_locks.setdefault(account, asyncio.Lock())
        async with lock:  # one upstream request however many people ask at once
            latest = self.latest(account)
            if latest and (self.clock() - latest.fetched_at).total_seconds() < max_age:
                return latest, ""
            result = await self.client.poll(self.accounts[account])
            if isinstance(result, PollFailure):
                return latest, result.reason
            result = self.history.derive_used(result)  # not recorded: the cycle's to do
            self._adhoc[account] = result
            return result, ""
