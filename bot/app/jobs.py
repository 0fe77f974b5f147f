"""What runs beside the poll cycle, each on its own schedule: the release of what
quiet hours held (at their end, and at start and reload), the catch-up of
destinations that never heard of alerts still firing (at start and reload),
history pruning (after cycles, once an hour), and seeding burn rates from
the past days a provider offers (CometAPI's daily_quota, at start). The digest is bot/app/digest.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.app.cycle import Cycle, facts
from bot.app.views import firing_events
from bot.common.logs import log_event
from bot.engine.forecast import seeded_rates
from bot.engine.model import Account, EventKind
from bot.notify.routing import release
from bot.state.types import Commit, OutboxItem, StoreError
from bot.upstream.transport import FetchError, NotOffered

logger = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)  # a day's full-resolution rows would grow the file by half
PRUNE_BUDGET = 2.0  # seconds of pruning per cycle at most


class Jobs:
    """The jobs of one running bot, on the cycle's store, read model and router;
    those that change alert states hold the cycle's lock."""

    def __init__(self, cycle: Cycle) -> None:
        self.cycle = cycle
        self._pruned_at: datetime | None = None

    async def release_held(self) -> int:
        """At the end of quiet hours (and at start or reload, for those that ended
        while the bot was down or are no longer configured): what was held goes
        out, one message per destination with the latest held event of each
        alert, leaving out what may no longer be said. An alert whose held fire is
        left out while it still fires counts as never announced, so that it gets a
        fire, not a reminder, once it may be told. The number of messages queued."""
        cycle = self.cycle
        store, model = cycle.store, cycle.model
        async with cycle.lock:
            now = cycle.clock()
            hours = cycle.router.quiet
            rows = await store.held(now if hours and hours.window(now) else None)
            if not rows:
                return 0
            silences, acks = await store.silences(now), await store.acks()
            at = facts(model, cycle.router, now, model.state, silences, acks, False)
            items = release(rows, at)
            alerts = model.state.alerts
            told = {e.alert for item in items for e in item.events if e.kind is EventKind.FIRE}
            told |= {alert for alert, _, _ in await store.told()}  # announced elsewhere
            untold = {
                e.alert
                for r in rows
                for e in r.events
                if e.kind is EventKind.FIRE
                and (s := alerts.get(e.alert)) is not None
                and s.firing
                and e.alert not in told
            }
            if untold:
                new = replace(
                    model.state,
                    alerts={
                        k: replace(s, announced=False, held=True) if k in untold else s
                        for k, s in alerts.items()
                    },
                )
                await store.commit_cycle(Commit(model.state, new, (), (), now))
                model.state = new
            await store.release([r.id for r in rows], items, now)
            log_event(logger, "quiet.released", held=len(rows), messages=len(items))
            return len(items)

    async def missed(self) -> list[OutboxItem]:
        """For each destination that was never told of alerts still firing (it was
        added since, its sends failed for good, or `check --no-notify` recorded
        the fire): one message listing them, as the suppression decision allows
        (nothing of what is snoozed, acknowledged or inhibited, nor of an alert the
        next poll announces). What quiet hours hold is not missed."""
        cycle = self.cycle
        store, model = cycle.store, cycle.model
        now = cycle.clock()
        told = await store.told_at()
        told.update(dict.fromkeys(await store.holding(), now))
        firing, unavailable = firing_events(model.state, model.rules, model.latest, now)
        silences, acks = await store.silences(now), await store.acks()
        at = facts(model, cycle.router, now, model.state, silences, acks)
        return cycle.router.catch_up([*unavailable, *firing], told, at)

    async def tell_missed(self) -> int:
        """Queue what `missed()` finds; the number of messages queued."""
        async with self.cycle.lock:
            items = await self.missed()
            if items:
                await self.cycle.store.enqueue(items, self.cycle.clock())
                log_event(logger, "alert.still_firing", destinations=len(items))
        return len(items)

    async def prune(self, budget: float = PRUNE_BUDGET) -> None:
        """Delete expired history and outbox rows, a batch at a time off the event
        loop, for at most `budget` seconds; what is left waits for the next call.
        Once an hour."""
        cycle = self.cycle
        now = cycle.clock()
        if self._pruned_at and now - self._pruned_at < PRUNE_EVERY:
            return
        loop = asyncio.get_running_loop()
        ends = loop.time() + budget
        try:
            while loop.time() < ends:
                pruned = await cycle.store.prune(now, cycle.config.bot.history_days)
                if not pruned:
                    self._pruned_at = now
                    return
        except StoreError as exc:
            log_event(logger, "store.prune_failed", logging.WARNING, reason=str(exc))

    async def seed(self) -> None:
        """At start: accounts still gathering data get burn rates from CometAPI's
        optional daily_quota, the complete past days of one burn window. A body
        without it, or with garbage in it, is one log line and no seed."""
        cycle = self.cycle
        history, config = cycle.model.history, cycle.config
        now = cycle.clock()
        today = now.astimezone(UTC).date()
        days = math.ceil(config.bot.burn_window / 86400)
        first, last = today - timedelta(days=days), today - timedelta(days=1)
        gate = asyncio.Semaphore(config.bot.max_concurrency)
        await history.advance(now)

        async def one(account: Account) -> None:
            if not cycle.client.seeds(account):
                return  # its provider offers no past days
            if (await history.flow(account.name, now)).burn.total is not None:
                return  # enough live history already
            async with gate:
                try:
                    used = await cycle.client.daily(account, first, last)
                except FetchError as exc:
                    # absent is usual (INFO, quiet in `check`); garbage or a failure is news
                    level = logging.INFO if isinstance(exc, NotOffered) else logging.WARNING
                    log_event(
                        logger, "seed.unavailable", level, account=account.name, reason=exc.reason
                    )
                    return
            history.seeds[account.name] = seeded_rates(used)
            log_event(logger, "seed.ok", account=account.name, days=len(used))

        await asyncio.gather(*(one(a) for a in cycle.model.accounts.values()))
