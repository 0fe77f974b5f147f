"""`balance-bot run` on a shared PostgreSQL state (SPEC 7b): a standby until it
takes the active lock (tried every 2 s), then a whole `App` started as a fresh
start would be, from the database; when the lock is lost (or another process
fenced this one out), the App stops and the process stands by again. The
health and metrics server stays up throughout and says which role it has."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from bot.app.chart import WINDOWS
from bot.app.cycle import Clock, utcnow
from bot.app.reload import settle
from bot.app.service import App
from bot.app.views import iso
from bot.app.webserver import open_web
from bot.common.logs import log_event
from bot.config import Config
from bot.ops.metrics import Metrics
from bot.ops.status import StatusView
from bot.ops.web import StatusSite, WebServer, make_app
from bot.state.protocol import Leadership
from bot.state.types import SchemaTooNewError, StoreError

logger = logging.getLogger(__name__)

TRY_EVERY = 2.0  # seconds between two tries of a standby to take the active lock
STEP_ASIDE = 2 * TRY_EVERY  # after stepping down, before its own first try


class Replica:
    def __init__(self, config: Config, lease: Leadership, clock: Clock = utcnow) -> None:
        self.config, self.lease, self.clock = config, lease, clock
        self.app: App | None = None  # while active
        self.standby = Metrics()  # what /metrics says meanwhile: balance_bot_active 0
        self.since = clock()  # in the role it has now
        self.unreachable = ""  # why the database cannot be reached, while it cannot
        self.web: WebServer | None = None
        self.fatal = ""
        self._reloading = asyncio.Lock()

    def health(self) -> tuple[bool, dict[str, Any]]:
        app = self.app
        if app is not None:
            return app.health()
        body: dict[str, Any] = {
            "status": "failing" if self.unreachable else "ok",
            "role": "standby",
            "since": iso(self.since),
            "database": self.lease.where,
        }
        if self.unreachable:
            body["error"] = self.unreachable
        return not self.unreachable, body

    def _metrics(self) -> Metrics:
        return self.app.metrics if self.app is not None else self.standby

    async def serve(
        self, stop: asyncio.Event, ready: Callable[[Replica], None] | None = None
    ) -> None:
        """Until `stop`: stand by, be active while the lock is held, stand by again."""
        await self._listen()
        try:
            # a database that cannot be reached at start is a setup problem: one
            # line and exit 1; once running, an outage is waited out (503 meanwhile)
            taken = await self.lease.acquire()
            log_event(logger, "replica.standby", database=self.lease.where)
            if ready:
                ready(self)
            while not stop.is_set():
                if taken or await self._take():
                    taken = False
                    await self._active(stop)
                    if self.fatal:
                        return
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TRY_EVERY)
        finally:
            await self.lease.release()
            if self.web is not None:
                await self.web.stop()

    async def _listen(self) -> None:
        listen = self.config.bot.http_listen
        if not listen:
            return
        status = self._status_site() if self.config.web.status_page else None
        self.web = await open_web(listen, make_app(self.health, self._metrics, status))

    def _status_site(self) -> StatusSite:
        """The active App's status page; a standby answers 503 (its charts 404)."""

        async def page() -> StatusView:
            if self.app is None or self.app.status_page is None:
                raise web.HTTPServiceUnavailable(
                    text="503: a standby replica; the active one serves this page"
                )
            return await self.app.status_page.view()

        async def chart(account: str, window: str, theme: str) -> bytes | None:
            if self.app is None or self.app.status_page is None:
                return None
            return await self.app.status_page.chart(account, window, theme)

        return StatusSite(page, chart, tuple(WINDOWS), lambda: self.config.web.token)

    async def _take(self) -> bool:
        """Try to take the active lock; a database that cannot be reached is
        reported (in /healthz and once in the log) and tried again."""
        try:
            taken = await self.lease.acquire()
        except SchemaTooNewError:  # an upgrade under way elsewhere: this version must stop
            raise
        except StoreError as exc:
            if not self.unreachable:
                log_event(logger, "replica.database_down", logging.ERROR, reason=str(exc))
            self.unreachable = str(exc)
            return False
        if self.unreachable:
            log_event(logger, "replica.database_back", database=self.lease.where)
        self.unreachable = ""
        return taken

    async def _active(self, stop: asyncio.Event) -> None:
        """One term as the active process: a fresh App on the database, until
        `stop` or until it steps down."""
        log_event(logger, "replica.active", database=self.lease.where, epoch=self.lease.epoch)
        # the web server is the replica's: the App serves none of its own
        config = replace(self.config, bot=replace(self.config.bot, http_listen=""))
        self.since = self.clock()
        try:
            async with App(config, lease=self.lease) as app:
                self.app = app
                try:
                    await app.serve(stop)
                finally:
                    self.app = None
        except StoreError as exc:  # the database went away while starting
            log_event(logger, "replica.start_failed", logging.ERROR, reason=str(exc))
            app = None
        self.since = self.clock()
        if app is not None and app.fatal and not app.stepped_down:
            self.fatal = app.fatal
            return
        await self.lease.release()
        if not stop.is_set():
            log_event(logger, "replica.standby", database=self.lease.where)
            # the next term goes to another replica first (they try every TRY_EVERY):
            # one that just lost its lock may have lost its way to the database too
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STEP_ASIDE)

    async def reload(self, config: Config) -> None:
        """SIGHUP: the next term starts from the new config; the App running applies it."""
        async with self._reloading:
            self.config = settle(self.config, config, log=False)  # the App logs
            if self.app is not None:
                await self.app.reload(config)
