"""The process: `App` owns every resource and long-running task of one
running bot (state file, HTTP session, notifiers, outbox loop, scheduler, web
server) and nothing else. The cycle is bot/app/cycle.py, the read side bot/app/views.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.app.actions import AlertActions
from bot.app.clock import on_clock
from bot.app.commands import ChatCommands
from bot.app.cycle import Clock, Cycle, CycleResult, new_history, utcnow
from bot.app.digest import DIGEST_GRACE, Digests
from bot.app.fleet import Fleet
from bot.app.jobs import Jobs
from bot.app.readmodel import ReadModel
from bot.app.statuspage import StatusPage
from bot.app.views import DestinationState, health
from bot.common.backoff import Backoff
from bot.common.logs import log_event
from bot.common.secrets import redact, register
from bot.config import Config, split_listen
from bot.engine.model import Snapshot
from bot.notifiers import Notifier, NotifierContext
from bot.notify.delivery import Delivery, Outcome
from bot.ops.metrics import Metrics
from bot.ops.web import WebServer, make_app
from bot.state.backends import open_store
from bot.state.protocol import Leadership, StateStore
from bot.state.types import FencedError, StoreError, StoreReplacedError
from bot.upstream.client import Client
from bot.upstream.transport import RetryPolicy

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 10.0  # from the signal to the exit, whatever is under way
CHECK_EVERY = 2.0  # seconds between two checks of a replica's active lock (SPEC 7b)


GC_THRESHOLDS = (50_000, 20, 100)  # collections per allocations: gen0, then gen1/gen2 in turn


def tune_gc() -> None:
    """After start-up: the libraries' objects (python-telegram-bot, slack-sdk,
    pydantic, ...) live as long as the process, so they leave the collector's
    view (gc.freeze); a cycle makes many short-lived objects that reference
    counting frees, so the youngest generation is collected less often. The
    benchmark measures both (bench/RESULTS.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    _trim_heap()


def _trim_heap() -> None:
    """Hand the memory start-up freed (imports, config validation) back to the
    system: glibc keeps it otherwise, and idle RSS is what operators see."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        pass


class StartupError(Exception):
    """The service cannot start; the message names the setting and the remedy."""


class Tasks:
    """The long-running tasks of one process. One that ends while the process
    is not stopping is logged and kept in `dead` for /healthz."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        self.dead: dict[str, tuple[datetime, str]] = {}
        self.closing = False

    def spawn(
        self, name: str, work: Coroutine[Any, Any, Any], once: bool = False
    ) -> asyncio.Task[Any]:
        """Run `work` until the process stops; with `once`, until it is done (only
        an exception is then reported)."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._ended(t, once))
        return task

    def _ended(self, task: asyncio.Task[Any], once: bool) -> None:
        self._tasks.discard(task)
        if self.closing or task.cancelled():
            return
        error = task.exception()
        if once and error is None:
            return
        reason = redact(f"{type(error).__name__}: {error}") if error else "returned"
        self.dead[task.get_name()] = (self._clock(), reason)
        log_event(logger, "task.died", logging.ERROR, task=task.get_name(), reason=reason)

    async def aclose(self) -> None:
        self.closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


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
    delivery: Delivery = field(init=False)
    metrics: Metrics = field(init=False)
    fleet: Fleet = field(init=False)
    tasks: Tasks = field(init=False)
    web: WebServer | None = field(init=False, default=None)
    _stack: contextlib.AsyncExitStack = field(init=False)
    commands: ChatCommands = field(init=False)
    fatal: str = field(init=False, default="")  # why the service stopped on its own
    stepped_down: str = field(init=False, default="")  # why a replica stopped being active
    _scheduler: AsyncIOScheduler | None = field(init=False, default=None)
    _deliveries: asyncio.Task[None] | None = field(init=False, default=None)
    _seeding: asyncio.Task[None] | None = field(init=False, default=None)
    _halt: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _deadline: float | None = field(init=False, default=None)  # loop time the exit is due
    _reloading: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    _counting: bool = field(init=False, default=False)  # a backlog count is on its way

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
        accounts = [a.name for a in config.accounts]
        stored = await self.store.load_snapshots()
        snapshots = {a: s for a, s in stored.items() if a in accounts}
        history = new_history(config, self.store)
        await history.restore(snapshots, clock())
        state = await self.store.load_state(accounts)
        self.model = ReadModel(config, self.store, client, clock, state, snapshots, history)
        self.metrics.snapshots = lambda: list(self.model.snapshots.values())
        self.metrics.burn = lambda: {a: f.burn.total for a, f in self.model.flows.items()}
        self.metrics.providers = lambda: {n: a.provider for n, a in self.model.accounts.items()}
        actions = AlertActions(self.store, self.model, self._acted)
        self.commands = ChatCommands(self.model, actions)
        context = NotifierContext(self.commands, config.bot.zone, self.store)
        self.fleet = Fleet(self.metrics, clock)
        self.fleet.build(config, context)
        self.delivery = Delivery(
            self.store,
            self.notifiers,
            self.backoff,
            clock,
            on_outcome=self._delivery_outcome,
            fresh_for=config.bot.interval,
            zone=config.bot.zone,
            may_send=self.lease.holding if self.lease else None,
        )
        # the first alert of a cycle leaves at once: `_queued` wakes delivery
        self.pipeline = Cycle(
            config,
            self.store,
            client,
            self.model,
            self.fleet.router(config),
            self.metrics,
            self._queued,
            clock,
        )
        self.jobs = Jobs(self.pipeline)
        self.digests = Digests(
            lambda: self.config,
            lambda: self.pipeline.router,
            self.store,
            self.commands,
            clock,
            self._wake_delivery,
            self._shows_pictures,
        )
        await self._count_backlog()

    def _now(self) -> datetime:
        return self.clock()

    def _queued(self) -> Awaitable[bool] | None:
        """The first alert of a cycle is queued: delivery starts on it, and the
        cycle may wait for its send (when the delivery loop runs)."""
        running = self._deliveries is not None and not self._deliveries.done()
        attempted = self.delivery.expect_send() if running else None
        self._wake_delivery()
        return attempted.wait() if attempted else None

    async def _acted(self) -> None:
        """A snooze, ack or edit from chat: edits go out, the gauge follows."""
        self.metrics.silences_active.set(len(await self.store.silences(self.clock())))
        self._wake_delivery()

    @property
    def notifiers(self) -> dict[str, Notifier]:
        return self.fleet.notifiers

    @property
    def destinations(self) -> dict[tuple[str, str], DestinationState]:
        return self.fleet.states

    def _delivery_outcome(self, outcome: Outcome) -> None:
        self.fleet.record(outcome)
        self._refresh_backlog()

    def _shows_pictures(self, notifier: str) -> bool:
        """Whether a notifier shows pictures (a webhook does not: it is sent none)."""
        plugin = self.fleet.notifiers.get(notifier)
        return plugin is not None and type(plugin).picture is not Notifier.picture

    def _wake_delivery(self) -> None:
        """Something was queued or changed in the outbox: delivery looks now."""
        self._refresh_backlog()
        self.delivery.wake()

    async def send_digest(self, day: date) -> bool:
        return await self.digests.send(day)

    def _refresh_backlog(self) -> None:
        """The backlog gauge is counted again soon: once, however many ask meanwhile."""
        if not self._counting and not self.tasks.closing:
            self._counting = True
            self.tasks.spawn("backlog", self._count_backlog(), once=True)

    async def _count_backlog(self) -> None:
        self._counting = False
        try:
            self.metrics.observe_backlog(await self.store.backlog(), self.notifiers)
        except StoreError as exc:
            log_event(logger, "store.read_failed", logging.WARNING, reason=str(exc))

    async def start_notifiers(self, listen: bool) -> None:
        self._stack.push_async_callback(self._stop_notifiers)
        await self.fleet.start(listen)

    def _left(self) -> float:
        """Seconds left until the exit is due (SHUTDOWN_GRACE from the signal)."""
        if self._deadline is None:
            return SHUTDOWN_GRACE
        return max(0.1, self._deadline - asyncio.get_running_loop().time())

    async def _stop_notifiers(self) -> None:
        await self._stop_background()  # sends under way finish before their notifier stops
        await self.fleet.stop(self._left)

    async def cycle(self, notify: bool = True) -> CycleResult:
        started = asyncio.get_running_loop().time()
        result = await self.pipeline.run(notify, after=self.jobs.prune)
        self.metrics.poll_duration.observe(asyncio.get_running_loop().time() - started)
        if result.queued:
            self._wake_delivery()
        return result

    async def _scheduled_cycle(self) -> None:
        seeding, self._seeding = self._seeding, None
        if seeding is not None and not seeding.done():
            # the first cycle's forecasts start from the seed, if it comes in time
            await asyncio.wait({seeding}, timeout=self.config.bot.request_timeout)
        try:
            result = await self.cycle()
            if self.pipeline.cycles_done == 1:  # start-up's garbage is gone: give it back
                _trim_heap()
            read = result.committed and any(
                isinstance(r, Snapshot) for r in result.results.values()
            )
            if read and not self.digests.data_read:
                await self.digests.data_arrived()
        except asyncio.CancelledError:
            if not self.tasks.closing:
                raise
            # shutting down: the cycle was abandoned (logged as such), nothing to add
        except FencedError as exc:
            self.step_down(str(exc))
        except StoreReplacedError as exc:
            self.stop_on_error(str(exc))
        except Exception:
            logger.exception("cycle.crashed")

    def step_down(self, reason: str) -> None:
        """A replica that is no longer the active one: no send starts from now on,
        and the service stops as at SIGTERM (the replica stands by again)."""
        if not self.stepped_down:
            self.stepped_down = reason
            self.delivery.stop()
            self.metrics.active.set(0)
            log_event(logger, "replica.stepping_down", logging.WARNING, reason=reason)
        self._halt.set()

    async def _hold_lease(self, lease: Leadership) -> None:
        """Check the active lock every CHECK_EVERY seconds; step down once it is lost."""
        while True:
            if not await lease.holding():
                break
            await asyncio.sleep(CHECK_EVERY)  # a period: nothing to wait on but time
        self.step_down(f"lost the active lock on {lease.where} (its connection failed)")

    def stop_on_error(self, reason: str) -> None:
        """Stop the service: something a restart must look at (`fatal` says what)."""
        self.fatal = reason
        log_event(logger, "bot.fatal", logging.ERROR, reason=reason)
        self._halt.set()

    async def tell_missed(self) -> None:
        """At start: destinations that missed alerts still firing hear of them."""
        if await self.jobs.tell_missed():
            self._wake_delivery()

    async def release_held(self) -> None:
        """What quiet hours held goes out at their end (and at start, if they
        ended while the bot was down)."""
        try:
            released = await self.jobs.release_held()
        except StoreError as exc:
            log_event(logger, "quiet.not_released", logging.ERROR, reason=str(exc))
            return
        if released:
            self._wake_delivery()

    def health(self) -> tuple[bool, dict[str, Any]]:
        model, scheduler = self.model, self._scheduler
        ok, body = health(
            model.accounts,
            model.state.health,
            model.polls,
            model.last_cycle_at,
            model.started_at,
            self.config.bot.interval,
            scheduler is not None and scheduler.running,
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
            host, port = split_listen(bot.http_listen)
            web = self.config.web
            page = StatusPage(self.model, self.commands) if web.status_page else None
            site = page.site() if page else None
            self.web = WebServer(make_app(self.health, self.metrics, site), host, port)
            try:
                await self.web.start()
            except OSError as exc:
                raise StartupError(
                    f"bot.http_listen: cannot listen on {host}:{port}: "
                    f"{exc.strerror or exc}; stop what uses the port, or set http_listen "
                    'to another address ("" turns health and metrics off)'
                ) from None
            self._stack.push_async_callback(self.web.stop)
            log_event(
                logger,
                "http.listening",
                host=host,
                port=self.web.port,
                urls=f"http://{host}:{self.web.port}/healthz /metrics",
            )
            if page is not None:
                log_event(
                    logger,
                    "http.status_page",
                    url=f"http://{host}:{self.web.port}/",
                    token="required" if web.token else "none (anyone who reaches it sees it)",
                )
        if self.lease is not None:
            self.tasks.spawn("lease", self._hold_lease(self.lease))
        await self.release_held()
        await self.tell_missed()
        self.digests.at_start()
        self._seeding = self.tasks.spawn("seed", self.jobs.seed(), once=True)
        scheduler = self._scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._scheduled_cycle,
            on_clock(IntervalTrigger(seconds=bot.interval, timezone=UTC), self.clock),
            id="poll",
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(bot.interval)),
        )
        self._schedule_daily_jobs()
        scheduler.start()
        self._deliveries = self.tasks.spawn("delivery", self.delivery.run())
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
        halted = asyncio.create_task(self._halt.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({halted, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for waiting in (halted, stopped):
            waiting.cancel()
        self._deadline = asyncio.get_running_loop().time() + SHUTDOWN_GRACE
        log_event(logger, "bot.stopping")

    def _schedule_daily_jobs(self) -> None:
        """The digest and the end of quiet hours, as the config has them now."""
        scheduler, config = self._scheduler, self.config
        assert scheduler is not None
        for job in ("digest", "quiet_end"):
            if scheduler.get_job(job):
                scheduler.remove_job(job)
        zone = config.bot.zone
        if config.digest is not None:
            at = config.digest.at
            scheduler.add_job(
                self.digests.scheduled,
                on_clock(
                    CronTrigger(hour=at.hour, minute=at.minute, second=at.second, timezone=zone),
                    self.clock,
                ),
                id="digest",
                coalesce=True,
                misfire_grace_time=int(DIGEST_GRACE.total_seconds()),
            )
        if config.bot.quiet is not None:
            end = config.bot.quiet[1]
            scheduler.add_job(
                self.release_held,
                on_clock(
                    CronTrigger(hour=end.hour, minute=end.minute, second=end.second, timezone=zone),
                    self.clock,
                ),
                id="quiet_end",
                coalesce=True,
                misfire_grace_time=None,
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
            for name in ("state_path", "state_url", "http_listen"):
                if getattr(config.bot, name) != getattr(old.bot, name):
                    log_event(
                        logger,
                        "config.needs_restart",
                        logging.WARNING,
                        setting=f"bot.{name}",
                        hint="kept as it was; restart balance-bot to apply it",
                    )
            if config.web.status_page != old.web.status_page:
                log_event(
                    logger,
                    "config.needs_restart",
                    logging.WARNING,
                    setting="web.status_page",
                    hint="kept as it was; restart balance-bot to apply it (the token applies now)",
                )
            bot = replace(
                config.bot,
                state_path=old.bot.state_path,
                state_url=old.bot.state_url,
                http_listen=old.bot.http_listen,
            )
            web = replace(config.web, status_page=old.web.status_page)
            config = replace(config, bot=bot, web=web)
            for secret in config.secrets():
                register(secret)
            restarted = await self.fleet.swap(
                old, config, NotifierContext(self.commands, config.bot.zone, self.store)
            )
            self.config = config
            client = self.pipeline.client
            polling = ("interval", "request_timeout", "max_concurrency")
            if any(getattr(config.bot, n) != getattr(old.bot, n) for n in polling):
                session = client.session
                if config.bot.max_concurrency != old.bot.max_concurrency:
                    session = Client.new_session(config.bot.max_concurrency)
                    self._stack.push_async_callback(session.close)  # the old one: at exit
                retry = self.retry or RetryPolicy.for_schedule(
                    config.bot.interval, config.bot.request_timeout
                )
                client = Client(session, config.bot.request_timeout, retry, self._now)
            await self.pipeline.reconfigure(config, client, self.fleet.router(config))
            self.delivery.fresh_for, self.delivery.zone = config.bot.interval, config.bot.zone
            scheduler = self._scheduler
            if scheduler is not None and scheduler.running:
                if config.bot.interval != old.bot.interval:
                    every = IntervalTrigger(seconds=config.bot.interval, timezone=UTC)
                    scheduler.reschedule_job("poll", trigger=on_clock(every, self.clock))
                self._schedule_daily_jobs()
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
        self.delivery.stop()  # no new send starts from here on
        scheduler = self._scheduler
        if scheduler is not None and scheduler.running:
            scheduler.pause()
            if not await self.pipeline.idle(self._left()):
                log_event(
                    logger,
                    "bot.cycle_abandoned",
                    logging.WARNING,
                    reason="a poll cycle did not finish in time; its results were not saved",
                )
            scheduler.shutdown(wait=False)
        if self._deliveries is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._deliveries), self._left())
            except TimeoutError:
                log_event(
                    logger,
                    "delivery.abandoned",
                    logging.WARNING,
                    reason="sends under way did not finish in time; they stay in the outbox",
                )
        if self._scheduler is not None:
            log_event(logger, "bot.stopped")
