"""The outbox's side of one process: the delivery loop as a task, the one way
to wake it (something was queued or changed), what its outcomes update (the
destinations' states, the backlog gauge), and its stop at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.app.fleet import Fleet
from bot.app.tasks import Tasks
from bot.common.backoff import Backoff
from bot.common.logs import log_event
from bot.config import Config
from bot.notifiers import Notifier
from bot.notify.delivery import Delivery, Outcome
from bot.ops.metrics import Metrics
from bot.state.protocol import StateStore
from bot.state.types import StoreError

logger = logging.getLogger(__name__)


class Sending:
    def __init__(
        self,
        config: Config,
        store: StateStore,
        fleet: Fleet,
        metrics: Metrics,
        tasks: Tasks,
        backoff: Backoff,
        clock: Callable[[], datetime],
        may_send: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.store, self.fleet, self.metrics, self.tasks = store, fleet, metrics, tasks
        self.delivery = Delivery(
            store,
            fleet.notifiers,
            backoff,
            clock,
            on_outcome=self._outcome,
            fresh_for=config.bot.interval,
            zone=config.bot.zone,
            may_send=may_send,
        )
        self.task: asyncio.Task[None] | None = None  # the delivery loop, once started
        self._counting = False  # a backlog count is on its way

    def start(self) -> None:
        self.task = self.tasks.spawn("delivery", self.delivery.run())

    def follow(self, config: Config) -> None:
        """After a reload: how fresh data must be, and the timezone messages use."""
        self.delivery.fresh_for, self.delivery.zone = config.bot.interval, config.bot.zone

    def queued(self) -> Awaitable[bool] | None:
        """The first alert of a cycle is queued: delivery starts on it, and the
        cycle may wait for its send (when the delivery loop runs)."""
        running = self.task is not None and not self.task.done()
        attempted = self.delivery.expect_send() if running else None
        self.wake()
        return attempted.wait() if attempted else None

    def wake(self) -> None:
        """Something was queued or changed in the outbox: delivery looks now."""
        self.refresh_backlog()
        self.delivery.wake()

    def shows_pictures(self, notifier: str) -> bool:
        """Whether a notifier shows pictures (a webhook does not: it is sent none)."""
        plugin = self.fleet.notifiers.get(notifier)
        return plugin is not None and type(plugin).picture is not Notifier.picture

    def _outcome(self, outcome: Outcome) -> None:
        self.fleet.record(outcome)
        if outcome.outcome != "retry":  # the gauge follows at once; the count confirms it
            self.metrics.left_backlog(outcome.notifier)
        self.refresh_backlog()

    def refresh_backlog(self) -> None:
        """The backlog gauge is counted again soon: once, however many ask meanwhile."""
        if not self._counting and not self.tasks.closing:
            self._counting = True
            self.tasks.spawn("backlog", self.count_backlog(), once=True)

    async def count_backlog(self) -> None:
        self._counting = False
        try:
            self.metrics.observe_backlog(await self.store.backlog(), self.fleet.notifiers)
        except StoreError as exc:
            log_event(logger, "store.read_failed", logging.WARNING, reason=str(exc))

    def halt(self) -> None:
        """No new send starts from here on."""
        self.delivery.stop()

    async def drain(self, within: float) -> None:
        """Sends under way get `within` seconds to finish (what is not sent
        stays in the outbox)."""
        if self.task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.task), within)
        except TimeoutError:
            log_event(
                logger,
                "delivery.abandoned",
                logging.WARNING,
                reason="sends under way did not finish in time; they stay in the outbox",
            )
