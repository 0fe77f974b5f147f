"""The wiring: scheduler job = fetch -> evaluate -> store -> dispatch.

`App` owns every resource of one process (state file, HTTP session,
notifiers, outbox loop, scheduler, web server); `Monitor` is the poll cycle
and the data behind chat commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot import notifiers as registry
from bot.cometapi import CometClient, RetryPolicy, poll_all
from bot.commands import ChatCommands
from bot.config import Config, Rule, split_listen
from bot.delivery import Backoff, Delivery
from bot.logs import log_event
from bot.metrics import Metrics
from bot.model import (
    AlertState,
    EngineState,
    Event,
    EventKind,
    PollFailure,
    PollResult,
    Snapshot,
)
from bot.notifiers import Notifier, NotifierContext
from bot.rules import TOTAL, evaluate
from bot.store import OutboxItem, Store, StoreError
from bot.web import WebServer, iso, make_app

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 10.0
PRUNE_EVERY = timedelta(days=1)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class CycleResult:
    results: dict[str, PollResult]
    events: list[Event]
    committed: bool
    finished_at: datetime


@dataclass(slots=True)
class PollRecord:
    at: datetime
    outcome: str  # "ok" or a FailureKind value
    error: str = ""


def active_notifier_names(config: Config) -> list[str]:
    """Configured notifiers; `log` joins when nothing else is configured or a rule names it."""
    names = list(config.notifiers)
    wanted_log = any(rule.notify and "log" in rule.notify for rule in config.rules)
    if "log" not in names and (not names or wanted_log):
        names.append("log")
    return names


class Monitor:
    """One poll cycle at a time, plus what /balance and /status read."""

    def __init__(
        self,
        config: Config,
        store: Store,
        client: CometClient,
        metrics: Metrics,
        destinations: Mapping[str, list[str]],
        clock: Clock = utcnow,
    ) -> None:
        self.config = config
        self.store = store
        self.client = client
        self.metrics = metrics
        self.destinations = destinations
        self.clock = clock
        self.timezone = config.bot.zone
        self.accounts = {a.name: a for a in config.accounts}
        self.rules: dict[str, Rule] = {r.name: r for r in config.rules}
        self.state: EngineState = store.load_state(self.accounts)
        self.snapshots = {a: s for a, s in store.load_snapshots().items() if a in self.accounts}
        self.polls: dict[str, PollRecord] = {}
        self.started_at = clock()
        self.last_cycle_at: datetime | None = None
        self._adhoc: dict[str, Snapshot] = {}
        self._cycle_lock = asyncio.Lock()
        self._fetch_locks: dict[str, asyncio.Lock] = {}
        self._pruned_at: datetime | None = None
        self.cycles_done = 0
        self._cycle_done = asyncio.Condition()
        self.metrics.observe_alerts(self.state.alerts.values(), self._severities())

    # --- the cycle ------------------------------------------------------------

    async def run_cycle(self, notify: bool = True) -> CycleResult:
        async with self._cycle_lock:
            results = await poll_all(
                self.client, list(self.accounts.values()), self.config.bot.max_concurrency
            )
            result = self._apply(results, notify)
        async with self._cycle_done:
            self.cycles_done += 1
            self._cycle_done.notify_all()
        return result

    async def wait_cycles(self, count: int) -> None:
        """Return once `count` cycles have completed since start (tests, the benchmark)."""
        async with self._cycle_done:
            await self._cycle_done.wait_for(lambda: self.cycles_done >= count)

    def _apply(self, results: dict[str, PollResult], notify: bool) -> CycleResult:
        now = self.clock()
        new, events = evaluate(
            results, self.config.rules, self.state, now, self.config.bot.stale_after
        )
        snapshots = [r for r in results.values() if isinstance(r, Snapshot)]
        outbox = self.route(events) if notify else []
        try:
            self.store.commit_cycle(self.state, new, snapshots, self.snapshots, outbox, now)
        except StoreError as exc:
            # Nothing is lost: the state did not advance, so the next cycle
            # evaluates the same transitions again.
            log_event(logger, "cycle.not_saved", logging.ERROR, reason=str(exc))
            return CycleResult(results, events, False, now)
        self.state = new
        self.snapshots.update((s.account, s) for s in snapshots)
        self.last_cycle_at = now
        for account, result in results.items():
            self._log_poll(account, result, now)
        for event in events:
            _log_alert(event)
        self.metrics.observe_polls(results)
        self.metrics.observe_alerts(new.alerts.values(), self._severities())
        self._maybe_prune(now)
        return CycleResult(results, events, True, now)

    def _log_poll(self, account: str, result: PollResult, now: datetime) -> None:
        if isinstance(result, PollFailure):
            self.polls[account] = PollRecord(now, result.kind.value, result.reason)
            log_event(
                logger,
                "poll.failed",
                logging.WARNING,
                account=account,
                kind=result.kind.value,
                reason=result.reason,
            )
        else:
            self.polls[account] = PollRecord(now, "ok")
            log_event(
                logger,
                "poll.ok",
                logging.DEBUG,
                account=account,
                total=result.total_quota,
                keys=len(result.keys),
            )

    def route(self, events: list[Event]) -> list[OutboxItem]:
        """One outbox entry per (notifier, destination) holding the cycle's events."""
        grouped: dict[tuple[str, str], list[Event]] = {}
        for event in events:
            for name in event.notify or self.destinations:
                for destination in self.destinations.get(name, ()):
                    grouped.setdefault((name, destination), []).append(event)
        return [OutboxItem(n, d, tuple(evs)) for (n, d), evs in grouped.items()]

    def _maybe_prune(self, now: datetime) -> None:
        if self._pruned_at and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            self.store.prune(now)
        except StoreError as exc:
            log_event(logger, "store.prune_failed", logging.WARNING, reason=str(exc))

    async def idle(self, within: float) -> bool:
        """Wait for a cycle under way to finish; False if it did not in time."""
        try:
            async with asyncio.timeout(within), self._cycle_lock:
                return True
        except TimeoutError:
            return False

    def _severities(self) -> dict[str, str]:
        return {name: rule.severity.value for name, rule in self.rules.items()}

    # --- what chat commands and /healthz read (commands.BalanceSource) ----------

    def now(self) -> datetime:
        return self.clock()

    def account_names(self) -> list[str]:
        return list(self.accounts)

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
            self._adhoc[account] = result
            return result, ""

    def firing_subjects(self, account: str) -> tuple[bool, frozenset[str]]:
        total, keys = False, set()
        for state in self.state.alerts.values():
            rule = self.rules.get(state.key.rule)
            if state.firing and rule and state.key.account == account:
                if rule.target == TOTAL:
                    total = True
                else:
                    keys.add(state.key.subject)
        return total, frozenset(keys)

    def firing_events(self) -> tuple[list[Event], list[Event]]:
        now = self.clock()
        firing = [
            self._current(state, self.rules[state.key.rule], now)
            for state in self.state.alerts.values()
            if state.firing and state.key.rule in self.rules
        ]
        unavailable = [
            Event(
                EventKind.UNAVAILABLE,
                h.account,
                now,
                reason=h.last_error,
                since=h.failing_since,
                value=h.failures,
            )
            for h in self.state.health.values()
            if h.unavailable
        ]
        return firing, unavailable

    def _current(self, state: AlertState, rule: Rule, now: datetime) -> Event:
        snap = self.latest(state.key.account)
        usd: float | None = state.value
        if rule.percent:
            usd = None
            if snap and rule.target == TOTAL:
                usd = snap.total_quota
            elif snap:
                usd = next((k.remain_quota for k in snap.keys if k.name == state.key.subject), None)
        return Event(
            EventKind.FIRE,
            state.key.account,
            now,
            rule.severity,
            rule.name,
            rule.target,
            state.key.subject,
            "percent" if rule.percent else "usd",
            state.value,
            usd,
            rule.threshold,
            rule.recover_level,
            state.fired_at,
        )

    def health(self, scheduler_running: bool) -> tuple[bool, dict[str, Any]]:
        now = self.clock()
        limit = timedelta(seconds=3 * self.config.bot.interval)
        grace = now - self.started_at < limit
        accounts: dict[str, Any] = {}
        failing: list[str] = []
        for name in self.accounts:
            poll = self.polls.get(name)
            health = self.state.health.get(name)
            last_ok = health.last_success if health else None
            ok = (last_ok is not None and now - last_ok <= limit) or (last_ok is None and grace)
            entry: dict[str, Any] = {
                "ok": ok,
                "last_poll": iso(poll.at) if poll else None,
                "outcome": poll.outcome if poll else None,
                "last_success": iso(last_ok),
            }
            if health and health.failures:
                entry["failing_since"] = iso(health.failing_since)
                entry["error"] = health.last_error
            if not ok:
                failing.append(name)
            accounts[name] = entry
        cycle_ok = (self.last_cycle_at is not None and now - self.last_cycle_at <= limit) or grace
        healthy = scheduler_running and cycle_ok and not failing
        body: dict[str, Any] = {
            "status": "ok" if healthy else "failing",
            "scheduler": "running" if scheduler_running else "stopped",
            "last_cycle": iso(self.last_cycle_at),
            "accounts": accounts,
        }
        if failing:
            body["failing"] = failing
        return healthy, body


def _log_alert(event: Event) -> None:
    fields: dict[str, Any] = {"account": event.account}
    if event.rule:
        fields.update(
            rule=event.rule,
            subject=event.subject,
            severity=event.severity.value,
            value=event.value,
            threshold=event.threshold,
        )
    if event.reason:
        fields["reason"] = event.reason
    level = (
        logging.WARNING if event.kind in (EventKind.FIRE, EventKind.UNAVAILABLE) else logging.INFO
    )
    log_event(logger, f"alert.{event.kind.value}", level, **fields)


@dataclass
class App:
    """Every resource of one process. Use as `async with App(config) as app:`."""

    config: Config
    clock: Clock = utcnow
    retry: RetryPolicy | None = None  # default: scaled to the interval
    backoff: Backoff = field(default_factory=Backoff)
    store: Store = field(init=False)
    monitor: Monitor = field(init=False)
    delivery: Delivery = field(init=False)
    metrics: Metrics = field(init=False)
    notifiers: dict[str, Notifier] = field(init=False)
    web: WebServer | None = field(init=False, default=None)
    _stack: contextlib.AsyncExitStack = field(init=False)

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
        self.store = Store.open(config.bot.state_path)
        stack.callback(self.store.close)
        session = CometClient.new_session(config.bot.max_concurrency)
        stack.push_async_callback(session.close)
        retry = self.retry or RetryPolicy.for_schedule(
            config.bot.interval, config.bot.request_timeout
        )
        client = CometClient(session, config.bot.request_timeout, retry, self.clock)
        self.metrics = Metrics()
        self.notifiers = {}
        self.monitor = Monitor(config, self.store, client, self.metrics, {}, self.clock)
        self.metrics.snapshots = lambda: list(self.monitor.snapshots.values())
        context = NotifierContext(ChatCommands(self.monitor), config.bot.zone)
        for name in active_notifier_names(config):
            section = config.notifiers.get(name)
            cls = registry.load(name)
            self.notifiers[name] = cls(
                name, section if section is not None else cls.Config(), context
            )
        self.monitor.destinations = {n: list(x.destinations()) for n, x in self.notifiers.items()}
        self.delivery = Delivery(
            self.store, self.notifiers, self.backoff, self.clock, on_outcome=self._delivery_outcome
        )
        self._refresh_backlog()

    def _delivery_outcome(self, notifier: str, outcome: str) -> None:
        self.metrics.notifications.labels(notifier, outcome).inc()
        self._refresh_backlog()

    def _refresh_backlog(self) -> None:
        try:
            self.metrics.observe_backlog(self.store.backlog(), self.notifiers)
        except StoreError as exc:
            log_event(logger, "store.read_failed", logging.WARNING, reason=str(exc))

    async def start_notifiers(self, listen: bool) -> None:
        async def start(name: str, notifier: Notifier) -> None:
            try:
                await notifier.start(listen)
            except Exception as exc:
                log_event(
                    logger,
                    "notifier.start_failed",
                    logging.ERROR,
                    notifier=name,
                    reason=f"{type(exc).__name__}: {exc}",
                )

        await asyncio.gather(*(start(n, x) for n, x in self.notifiers.items()))
        self._stack.push_async_callback(self._stop_notifiers)

    async def _stop_notifiers(self) -> None:
        for name, notifier in self.notifiers.items():
            try:
                await asyncio.wait_for(notifier.stop(), SHUTDOWN_GRACE)
            except Exception as exc:
                log_event(
                    logger,
                    "notifier.stop_failed",
                    logging.WARNING,
                    notifier=name,
                    reason=f"{type(exc).__name__}: {exc}",
                )

    async def cycle(self, notify: bool = True) -> CycleResult:
        started = asyncio.get_running_loop().time()
        result = await self.monitor.run_cycle(notify)
        self.metrics.poll_duration.observe(asyncio.get_running_loop().time() - started)
        if result.events and notify:
            self._refresh_backlog()
            self.delivery.wake()
        return result

    async def _scheduled_cycle(self) -> None:
        try:
            await self.cycle()
        except Exception:
            logger.exception("cycle.crashed")

    async def serve(self, stop: asyncio.Event, ready: Callable[[App], None] | None = None) -> None:
        """`balance-bot run`: poll on schedule, deliver, listen, until `stop` is set."""
        bot = self.config.bot
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._scheduled_cycle,
            IntervalTrigger(seconds=bot.interval, timezone=UTC),
            id="poll",
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(bot.interval)),
        )
        scheduler.start()
        deliveries = asyncio.create_task(self.delivery.run(), name="delivery")
        if bot.http_listen:
            host, port = split_listen(bot.http_listen)
            health_app = make_app(lambda: self.monitor.health(scheduler.running), self.metrics)
            self.web = WebServer(health_app, host, port)
            await self.web.start()
            log_event(
                logger,
                "http.listening",
                host=host,
                port=self.web.port,
                urls=f"http://{host}:{self.web.port}/healthz /metrics",
            )
            self._stack.push_async_callback(self.web.stop)
        await self.start_notifiers(listen=True)
        log_event(
            logger,
            "bot.started",
            accounts=len(self.monitor.accounts),
            rules=len(self.monitor.rules),
            notifiers=",".join(self.notifiers),
            interval=f"{bot.interval:g}s",
        )
        if ready:
            ready(self)
        await stop.wait()
        log_event(logger, "bot.stopping")
        scheduler.pause()
        if not await self.monitor.idle(SHUTDOWN_GRACE):
            log_event(
                logger,
                "bot.cycle_abandoned",
                logging.WARNING,
                reason="a poll cycle did not finish in time; its results were not saved",
            )
        scheduler.shutdown(wait=False)
        self.delivery.stop()
        try:
            await asyncio.wait_for(deliveries, SHUTDOWN_GRACE)
        except TimeoutError:
            log_event(
                logger,
                "delivery.abandoned",
                logging.WARNING,
                reason="sends under way did not finish in time; they stay in the outbox",
            )
        log_event(logger, "bot.stopped")
