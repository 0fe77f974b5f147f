"""The daily digest: at most one per local date, through the outbox like an
alert (retried, never lost), and never one with no data — a digest due before
the first poll that read an account waits for it (SPEC 5)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from bot.app.commands import CHART_WINDOW, ChatCommands
from bot.common.logs import log_event
from bot.config import Config
from bot.engine.message import Message
from bot.engine.model import MessageKind
from bot.notify.routing import Router
from bot.state.protocol import StateStore
from bot.state.types import OutboxItem, StoreError

logger = logging.getLogger(__name__)

DIGEST_GRACE = timedelta(hours=12)  # a digest missed while down is sent at start until then
DIGEST_SENT = "digest_date"  # meta key: the local date of the last scheduled digest


@dataclass
class Digests:
    config: Callable[[], Config]  # the config as it is now (a reload changes it)
    router: Callable[[], Router]
    store: StateStore
    commands: ChatCommands
    clock: Callable[[], datetime]
    queued: Callable[[], None]  # wakes delivery
    shows_pictures: Callable[[str], bool] = lambda notifier: True  # by notifier name
    data_read: bool = False  # a cycle since start read an account
    _waiting: date | None = field(default=None, init=False)  # due, waiting for data

    def day(self, when: datetime) -> date | None:
        """The local date whose digest time `when` falls on or after by less than
        DIGEST_GRACE (today's, or yesterday's after midnight); None if neither."""
        config = self.config()
        if config.digest is None:
            return None
        zone = config.bot.zone
        local = when.astimezone(zone)
        for day in (local.date(), local.date() - timedelta(days=1)):
            due = datetime.combine(day, config.digest.at, zone)
            if timedelta(0) <= local - due < DIGEST_GRACE:
                return day
        return None

    def at_start(self) -> None:
        """At start only, not on a reload: a digest missed while down goes out
        right after the first cycle that reads data."""
        self._waiting = self.day(self.clock())

    async def send(self, day: date) -> bool:
        """The digest of `day`, to every destination of [digest].notify; False if
        that date already had one (recorded in the state file)."""
        digest = self.config().digest
        if digest is None or await self.store.meta(DIGEST_SENT) == day.isoformat():
            return False
        message = await self.commands.digest(day)
        charts = await self._charts() if digest.charts else []
        queues = self.router().queues_of(digest.notify or ())
        items = []
        for n, d in queues:  # per destination the text, then each chart: in this order
            items.append(OutboxItem(n, d, (), MessageKind.DIGEST, message))
            if self.shows_pictures(n):  # a webhook gets the text only
                items.extend(OutboxItem(n, d, (), MessageKind.CHART, chart) for chart in charts)
        await self.store.enqueue(items, self.clock(), {DIGEST_SENT: day.isoformat()})
        log_event(logger, "digest.sent", day=day.isoformat(), destinations=len(items))
        self.queued()
        return True

    async def _charts(self) -> list[Message]:
        """Each account's 7-day chart as a message of its own (an account with no
        history yet has none); drawn once, sent to every destination."""
        out = []
        for account in self.commands.source.account_names():
            picture = await self.commands.picture(account, CHART_WINDOW)
            if picture is not None:
                out.append(Message(picture.caption[0], (), kind="chart", pictures=(picture,)))
        return out

    async def scheduled(self) -> None:
        """The digest job, at [digest].at."""
        day = self.day(self.clock())
        if day is None:
            return
        if not self.data_read:  # never a digest with no data: it waits for the first
            self._waiting = day
            log_event(logger, "digest.waiting", day=day.isoformat(), reason="no data read yet")
            return
        await self._send_logged(day)

    async def data_arrived(self) -> None:
        """The first cycle that read data: the digest due meanwhile (missed while
        down, or scheduled), if still within DIGEST_GRACE."""
        self.data_read = True
        day, self._waiting = self._waiting, None
        if day is not None and day == self.day(self.clock()):
            await self._send_logged(day)

    async def _send_logged(self, day: date) -> None:
        try:
            await self.send(day)
        except StoreError as exc:
            log_event(logger, "digest.not_saved", logging.ERROR, reason=str(exc))
