"""The process: `App` owns every resource and long-running task of one
running bot (state file, HTTP session, notifiers, outbox loop, scheduler, web
server) and nothing else. The cycle is bot/app/cycle.py, the read side bot/app/views.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.app.actions import AlertActions
from bot.app.commands import ChatCommands
from bot.app.cycle import Clock, Cycle, CycleResult, load_model, utcnow
from bot.app.digest import Digests
from bot.app.fleet import Fleet
from bot.app.jobs import Jobs
from bot.app.polling import Polling
from bot.app.readmodel import ReadModel
from bot.app.reload import client_after, settle
from bot.app.schedule import Schedule
from bot.app.sending import Sending
from bot.app.statuspage import StatusPage
from bot.app.tasks import GC_THRESHOLDS as GC_THRESHOLDS  # re-exported: bench/
from bot.app.tasks import Ending, Tasks, tune_gc
from bot.app.views import DestinationState, health
from bot.app.webserver import StartupError as StartupError  # re-exported
from bot.app.webserver import open_web
from bot.common.backoff import Backoff
from bot.common.logs import log_event
from bot.common.secrets import register
from bot.config import Config
from bot.notifiers import Notifier, NotifierContext
from bot.notify.delivery import Delivery
from bot.ops.metrics import Metrics
from bot.ops.web import WebServer, make_app
from bot.state.backends import open_store
from bot.state.protocol import Leadership, StateStore
from bot.state.types import StoreError
from bot.upstream.client import Client
from bot.upstream.transport import RetryPolicy

logger = logging.getLogger(__name__)

CHECK_EVERY = 2.0  # seconds between two checks of a replica's active lock (SPEC 7b)


@dataclass
class App:
    """Every resource of one process. Use as `async with App(config) as app:`."""

    config: Config
    clock: Clock = utcnow  # a bot.app.clock.SimulatedClock (the demo): schedules follow it
    retry: RetryPolicy | None = None  # default: scaled to the interval
    backoff: Backoff = field(default_factory=Backoff)
    lease: Leadership | None = None  # replicas: the active lock this process holds (SPEC 7b)
    store: StateStore = field(init=False)
    model: ReadModel = field(init=False)
    pipeline: Cycle = field(init=False)
    jobs: Jobs = field(init=False)
    digests: Digests = field(init=False)
    sending: Sending = field(init=False)
    metrics: Metrics = field(init=False)
    fleet: Fleet = field(init=False)
    tasks: Tasks = field(init=False)
    web: WebServer | None = field(init=False, default=None)
    _stack: contextlib.AsyncExitStack = field(init=False)
    commands: ChatCommands = field(init=False)
    status_page: StatusPage | None = field(init=False, default=None)  # [web] status_page
    ending: Ending = field(init=False, default_factory=Ending)
    schedule: Schedule | None = field(init=False, default=None)  # once serving
    polling: Polling = field(init=False)
    _reloading: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    async def __aenter__(self) -> App:
        self._stack = contextlib.AsyncExitStack()
        try:
            await self._open()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _open(self) -> None:
        config, stack = self.config, self._stack
        epoch = self.lease.epoch if self.lease else None
        self.store = await open_store(config.bot.state_path, config.bot.state_url, epoch)
        stack.push_async_callback(self.store.close)
        session = Client.new_session(config.bot.max_concurrency)
        stack.push_async_callback(session.close)
        retry = self.retry or RetryPolicy.for_schedule(
            config.bot.interval, config.bot.request_timeout
        )
        clock = self._now  # what tests set as `app.clock`, at any time
        client = Client(session, config.bot.request_timeout, retry, clock)
        self.metrics = Metrics()
        self.metrics.active.set(1)
        self.tasks = Tasks(clock)
        stack.push_async_callback(self.tasks.aclose)
        self.model = await load_model(config, self.store, client, clock)
        self.metrics.snapshots = lambda: list(self.model.snapshots.values())
        self.metrics.burn = lambda: {a: f.burn.total for a, f in self.model.flows.items()}
        self.metrics.providers = lambda: {n: a.provider for n, a in self.model.accounts.items()}
        actions = AlertActions(self.store, self.model, self._acted)
        self.commands = ChatCommands(self.model, actions)
        page = config.web.status_page
        self.status_page = StatusPage(self.model, self.commands) if page else None
        context = NotifierContext(self.commands, config.bot.zone, self.store)
        self.fleet = Fleet(self.metrics, clock)
        self.fleet.build(config, context)
        may_send = self.lease.holding if self.lease else None
        self.sending = Sending(
            config, self.store, self.fleet, self.metrics, self.tasks, self.backoff, clock, may_send
        )
        # the first alert of a cycle leaves at once: `queued` wakes delivery
        self.pipeline = Cycle(
            config,
            self.store,
            client,
            self.model,
            self.fleet.router(config),
            self.metrics,
            self.sending.queued,
            clock,
        )
        self.jobs = Jobs(self.pipeline)
        self.digests = Digests(
            lambda: self.config,
            lambda: self.pipeline.router,
            self.store,
            self.commands,
            clock,
            self.sending.wake,
            self.sending.shows_pictures,
        )
        self.polling = Polling(
            self.pipeline,
            self.jobs,
            self.metrics,
            self.sending,
            self.digests,
            self.tasks,
            lambda: self.config,
            self.step_down,
            self.stop_on_error,
        )
        await self.sending.count_backlog()

    def _now(self) -> datetime:
        return self.clock()

    async def _acted(self) -> None:
        """A snooze, ack or edit from chat: edits go out, the gauge follows."""
        self.metrics.silences_active.set(len(await self.store.silences(self.clock())))
        self.sending.wake()

    @property
    def notifiers(self) -> dict[str, Notifier]:
        return self.fleet.notifiers

    @property
    def destinations(self) -> dict[tuple[str, str], DestinationState]:
        return self.fleet.states

    @property
    def delivery(self) -> Delivery:
        return self.sending.delivery

    @property
    def _scheduler(self) -> AsyncIOScheduler | None:
        return self.schedule.scheduler if self.schedule else None

    @property
    def _deliveries(self) -> asyncio.Task[None] | None:
        return self.sending.task

    async def send_digest(self, day: date) -> bool:
        return await self.digests.send(day)

    async def start_notifiers(self, listen: bool) -> None:
        self._stack.push_async_callback(self._stop_notifiers)
        await self.fleet.start(listen)

    @property
    def fatal(self) -> str:
        """Why the service stopped on its own ("" when it did not)."""
        return self.ending.fatal

    @property
    def stepped_down(self) -> str:
        """Why a replica stopped being the active one ("" when it did not)."""
        return self.ending.stepped_down

    def _left(self) -> float:
        return self.ending.left()

    async def _stop_notifiers(self) -> None:
        await self._stop_background()  # sends under way finish before their notifier stops
        await self.fleet.stop(self._left)

    async def cycle(self, notify: bool = True) -> CycleResult:
        return await self.polling.cycle(notify)

    def step_down(self, reason: str) -> None:
        """A replica that is no longer the active one: no send starts from now on,
        and the service stops as at SIGTERM (the replica stands by again)."""
        if self.ending.step_down(reason):
            self.sending.halt()
            self.metrics.active.set(0)

    async def _hold_lease(self, lease: Leadership) -> None:
        """Check the active lock every CHECK_EVERY seconds; step down once it is lost."""
        while True:
            if not await lease.holding():
                break
            await asyncio.sleep(CHECK_EVERY)  # a period: nothing to wait on but time
        self.step_down(f"lost the active lock on {lease.where} (its connection failed)")

    def stop_on_error(self, reason: str) -> None:
        """Stop the service: something a restart must look at (`fatal` says what)."""
        self.ending.fail(reason)

    async def tell_missed(self) -> None:
        """At start: destinations that missed alerts still firing hear of them."""
        if await self.jobs.tell_missed():
            self.sending.wake()

    async def release_held(self) -> None:
        """What quiet hours held goes out at their end (and at start, if they
        ended while the bot was down)."""
        try:
            released = await self.jobs.release_held()
        except StoreError as exc:
            log_event(logger, "quiet.not_released", logging.ERROR, reason=str(exc))
            return
        if released:
            self.sending.wake()

    def health(self) -> tuple[bool, dict[str, Any]]:
        model = self.model
        ok, body = health(
            model.accounts,
            model.state.health,
            model.polls,
            model.last_cycle_at,
            model.started_at,
            self.config.bot.interval,
            self.schedule is not None and self.schedule.running,
            self.clock(),
            self.tasks.dead,
            self.fleet.destination_states(),
        )
        return ok, {"role": "active", **body}

    async def serve(self, stop: asyncio.Event, ready: Callable[[App], None] | None = None) -> None:
        """`balance-bot run`: poll on schedule, deliver, listen, until `stop` is set.

        Whatever has started is stopped in order when the App closes, also after
        a failure half-way: polling, then sends under way, then chat listeners
        and the web server."""
        bot = self.config.bot
        self._stack.push_async_callback(self._stop_background)
        if bot.http_listen:
            await self._serve_web(bot.http_listen)
        if self.lease is not None:
            self.tasks.spawn("lease", self._hold_lease(self.lease))
        await self.release_held()
        await self.tell_missed()
        self.digests.at_start()
        self.polling.seeding = self.tasks.spawn("seed", self.jobs.seed(), once=True)
        self.schedule = Schedule(self.clock)
        self.schedule.start(
            self.config, self.polling.scheduled, self.digests.scheduled, self.release_held
        )
        self.sending.start()
        await self.start_notifiers(listen=True)
        tune_gc()
        log_event(
            logger,
            "bot.started",
            accounts=len(self.model.accounts),
            rules=len(self.model.rules),
            notifiers=",".join(self.notifiers),
            interval=f"{bot.interval:g}s",
        )
        if ready:
            ready(self)
        await self.ending.wait(stop)
        log_event(logger, "bot.stopping")

    async def _serve_web(self, listen: str) -> None:
        web, page = self.config.web, self.status_page
        site = make_app(self.health, self.metrics, page.site() if page else None)
        self.web = await open_web(listen, site)
        self._stack.push_async_callback(self.web.stop)
        if page is not None:
            log_event(
                logger,
                "http.status_page",
                url=f"http://{self.web.host}:{self.web.port}/",
                token="required" if web.token else "none (anyone who reaches it sees it)",
            )

    # --- SIGHUP -----------------------------------------------------------------

    async def reload(self, config: Config) -> None:
        """Apply a new, valid config without losing state (README, "Operations"): accounts,
        rules, thresholds, digest, quiet hours and notifiers from the next poll;
        a new interval reschedules the poll; a chat listener restarts only if its
        section changed. `state_path`, `http_listen` and `[web] status_page` need a
        restart (the status page's token applies at once)."""
        async with self._reloading:
            old = self.config
            config = settle(old, config)
            for secret in config.secrets():
                register(secret)
            restarted = await self.fleet.swap(
                old, config, NotifierContext(self.commands, config.bot.zone, self.store)
            )
            self.config = config
            client = client_after(
                old, config, self.pipeline.client, self.retry, self._stack, self._now
            )
            await self.pipeline.reconfigure(config, client, self.fleet.router(config))
            self.sending.follow(config)
            if self.schedule is not None:
                self.schedule.follow(old, config)
            log_event(
                logger,
                "config.reloaded",
                accounts=len(config.accounts),
                rules=len(config.rules),
                notifiers=",".join(self.notifiers),
                restarted=",".join(restarted) or "none",
            )
        await self.release_held()  # quiet hours that the new config ends or changed
        await self.tell_missed()  # a destination added hears of what fires

    async def _stop_background(self) -> None:
        """Stop polling (letting a cycle under way finish), then delivery (letting
        sends under way finish); what is not sent stays in the outbox. Once."""
        if self.tasks.closing:
            return
        self.tasks.closing = True
        self.sending.halt()  # no new send starts from here on
        schedule = self.schedule
        if schedule is not None and schedule.running:
            schedule.pause()
            if not await self.pipeline.idle(self._left()):
                log_event(
                    logger,
                    "bot.cycle_abandoned",
                    logging.WARNING,
                    reason="a poll cycle did not finish in time; its results were not saved",
                )
            schedule.stop()
        await self.sending.drain(self._left())
        if schedule is not None:
            log_event(logger, "bot.stopped")
