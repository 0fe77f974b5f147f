"""One poll cycle: fetch -> evaluate -> commit -> route, and the in-memory
read model (engine state, latest snapshots, poll outcomes) it leaves behind
for chat commands, /healthz and /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.app.history import History
from bot.app.views import PollRecord, firing_events
from bot.common.logs import log_event
from bot.config import Config
from bot.engine.forecast import seeded_rates
from bot.engine.model import (
    Account,
    AccountHealth,
    Ack,
    AlertKey,
    AlertState,
    EngineState,
    Event,
    EventKind,
    FailureKind,
    Flow,
    PollFailure,
    PollResult,
    Silence,
    Snapshot,
    SpendAbove,
)
from bot.engine.rules import AccountOutcome, split_alerts
from bot.notify.followup import follow_up
from bot.notify.plan import Context, evaluate_account
from bot.notify.routing import Queue, Router, release
from bot.notify.suppression import Facts
from bot.ops.metrics import Metrics
from bot.state.sqlite.samples import Sample
from bot.state.sqlite.store import Commit, OutboxItem, StateStore, StoreError, StoreReplacedError
from bot.upstream.cometapi import CometClient, FetchError, poll_each

logger = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)  # a day's full-resolution rows would grow the file by half
PRUNE_BUDGET = 2.0  # seconds of pruning per cycle at most
FIRST_SEND_WAIT = 1.0  # seconds the polls wait for a cycle's first alert to go out, at most

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class CycleResult:
    results: dict[str, PollResult]
    events: list[Event]
    committed: bool
    finished_at: datetime
    queued: bool = False  # outbox rows were added (messages or edits)


class Monitor:
    """One poll cycle at a time, and what the last ones left to read."""

    # outbox rows were added mid-cycle: wake delivery; what to await for its first send
    queued: Callable[[], Awaitable[object] | None] = staticmethod(lambda: None)

    def __init__(
        self,
        config: Config,
        store: StateStore,
        client: CometClient,
        metrics: Metrics,
        router: Router,
        clock: Clock = utcnow,
    ) -> None:
        self.config = config
        self.store = store
        self.client = client
        self.metrics = metrics
        self.router = router  # where each event goes, and when
        self.clock = clock
        self.timezone = config.bot.zone
        self.accounts = {a.name: a for a in config.accounts}
        self.rules = config.rules
        self.state: EngineState = store.load_state(self.accounts)
        self.snapshots = {a: s for a, s in store.load_snapshots().items() if a in self.accounts}
        self.polls: dict[str, PollRecord] = {}
        self.started_at = clock()
        spend_windows = {r.kind.window for r in self.rules if isinstance(r.kind, SpendAbove)}
        self.history = History(
            store.history, config.bot.burn_window, spend_windows, config.bot.interval
        )
        self.history.restore(self.snapshots, self.started_at)
        self.flows: dict[str, Flow] = {}  # what each account's history said at its last poll
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
            result = await self._stream(notify)
            await self.prune()
        async with self._cycle_done:
            self.cycles_done += 1
            self._cycle_done.notify_all()
        return result

    async def wait_cycles(self, count: int) -> None:
        """Return once `count` cycles have completed since start (tests, the benchmark)."""
        async with self._cycle_done:
            await self._cycle_done.wait_for(lambda: self.cycles_done >= count)

    async def _stream(self, notify: bool) -> CycleResult:
        """Each account is evaluated as its result comes in. The first account
        with something to say is committed at once, its outbox rows with it, and
        delivery is woken: its alert leaves within milliseconds of its data.
        Everything else of the cycle is committed, and leaves grouped, at its
        end: at most two messages per destination per cycle (README, "How alerts behave")."""
        cycle = _Cycle(self.clock(), self.store.silences(self.clock()), self.store.acks())
        grouped, kept = split_alerts(self.state.alerts, self.accounts, self.rules)
        # an account removed from the config: its alerts are dropped quietly
        cycle.kept = {k: v for k, v in kept.items() if k.account in self.accounts}
        try:
            self.history.advance(cycle.started)
        except StoreError as exc:  # rates may lag; thresholds and the rest go on
            log_event(logger, "history.unreadable", logging.ERROR, reason=str(exc))
        accounts = list(self.accounts.values())
        gate = asyncio.Event()
        gate.set()
        async for account, result in poll_each(
            self.client, accounts, self.config.bot.max_concurrency, gate
        ):
            now = self.clock()
            previous, old = grouped.get(account, {}), self.state.health.get(account)
            result, outcome = self._evaluate(account, result, previous, old, now, cycle)
            if isinstance(result, Snapshot):  # the old one goes now, not at the cycle's end
                self.snapshots[account] = result
            if notify and outcome.events and not cycle.early:
                cycle.early = self._commit_first(account, result, outcome, previous, old, cycle)
                if cycle.early:
                    await self._let_it_out(gate, cycle)
                    continue
            cycle.add(account, result, outcome)
        return self._commit_rest(cycle, notify)

    def _evaluate(
        self,
        account: str,
        result: PollResult,
        previous: dict[AlertKey, AlertState],
        old: AccountHealth | None,
        now: datetime,
        cycle: _Cycle,
    ) -> tuple[PollResult, AccountOutcome]:
        """rules.evaluate_account with what the account's history says: whatever
        goes wrong with one account's data makes its poll a failed one, nothing more."""
        stale_after = self.config.bot.stale_after
        context = Context(now, stale_after, {}, cycle.silences, cycle.acks)
        try:
            if isinstance(result, Snapshot):
                sample = self.history.record(result)
                flow = self.history.flow(account, now)
                context = Context(now, stale_after, {account: flow}, cycle.silences, cycle.acks)
            outcome = evaluate_account(result, self.rules, previous, old, context)
            if isinstance(result, Snapshot):
                cycle.samples[account] = sample
                cycle.flows[account] = flow
        except Exception as exc:
            logger.error(
                "cycle.account_failed",
                exc_info=exc,
                extra={"fields": {"account": account, "reason": type(exc).__name__}},
            )
            reason = f"could not process the data ({type(exc).__name__}); see the log"
            result = PollFailure(account, FailureKind.BAD_RESPONSE, reason, now)
            outcome = evaluate_account(result, self.rules, previous, old, context)
        return result, outcome

    async def _let_it_out(self, gate: asyncio.Event, cycle: _Cycle) -> None:
        """No new poll starts until the first alert's send is over (at most
        FIRST_SEND_WAIT): the event loop is the sender's, not the polls'."""
        if cycle.sending is None:
            return
        gate.clear()
        try:
            await asyncio.wait_for(cycle.sending, FIRST_SEND_WAIT)
        except TimeoutError:
            pass  # a slow platform: the polls go on, the send too
        finally:
            gate.set()

    def _commit_first(
        self,
        account: str,
        result: PollResult,
        outcome: AccountOutcome,
        previous: dict[AlertKey, AlertState],
        old: AccountHealth | None,
        cycle: _Cycle,
    ) -> bool:
        """Commit one account's poll with its events' outbox rows, and wake
        delivery; False (it then waits for the cycle's end) if it cannot be saved."""
        now = self.clock()
        before = EngineState(previous, {account: old} if old else {})
        after = EngineState(outcome.alerts, {account: outcome.health})
        outbox = self.route(outcome.events, after, cycle, now)
        outbox += self._follow_ups(outcome.events, cycle.silences, cycle.acks, now)
        snapshots = [result] if isinstance(result, Snapshot) else []
        sample = cycle.samples.pop(account, None)
        samples = [sample] if sample else []
        try:
            self.store.check_file()
            self.store.commit_cycle(Commit(before, after, snapshots, outbox, now, samples))
        except StoreReplacedError:
            raise
        except StoreError as exc:
            log_event(  # the cycle's end tries again, with everything else
                logger, "cycle.first_not_saved", logging.WARNING, account=account, reason=str(exc)
            )
            if sample:
                cycle.samples[account] = sample
            return False
        alerts = {k: v for k, v in self.state.alerts.items() if k.account != account}
        alerts.update(outcome.alerts)
        self.state = EngineState(alerts, {**self.state.health, account: outcome.health})
        self._remember(snapshots, samples, cycle.flows, now)
        cycle.first = (account, result, outcome)
        self._log_poll(account, result, now)
        for event in outcome.events:
            _log_alert(event)
        waiting = self.queued()
        cycle.sending = asyncio.ensure_future(waiting) if waiting is not None else None
        return True

    def _commit_rest(self, cycle: _Cycle, notify: bool) -> CycleResult:
        """The cycle's end: every account but the one committed first, in one
        transaction, its events grouped per destination."""
        now = self.clock()
        kept = {**cycle.kept, **cycle.alerts}
        if cycle.first:  # already in self.state: unchanged here
            first = cycle.first[0]
            kept.update((k, v) for k, v in self.state.alerts.items() if k.account == first)
        health = {
            a: h for a, h in {**self.state.health, **cycle.health}.items() if a in self.accounts
        }
        new = EngineState(kept, health)
        snapshots = [r for r in cycle.results.values() if isinstance(r, Snapshot)]
        samples = list(cycle.samples.values())
        events = cycle.events
        outbox = self.route(events, new, cycle, now) if notify else []
        if notify:
            outbox += self._follow_ups(events, cycle.silences, cycle.acks, now)
        results = dict(cycle.results)
        if cycle.first:
            account, result, outcome = cycle.first
            results[account] = result
            events = [*outcome.events, *events]
        try:
            self.store.check_file()
            self.store.commit_cycle(Commit(self.state, new, snapshots, outbox, now, samples))
        except StoreReplacedError:
            raise
        except StoreError as exc:
            # Nothing is lost: the state did not advance, so the next cycle
            # evaluates the same transitions again.
            log_event(logger, "cycle.not_saved", logging.ERROR, reason=str(exc))
            return CycleResult(results, events, False, now, cycle.first is not None)
        self.state = new
        self._remember(snapshots, samples, cycle.flows, now)
        self.last_cycle_at = now
        for account, result in cycle.results.items():
            self._log_poll(account, result, now)
        for event in cycle.events:
            _log_alert(event)
        self.metrics.observe_polls(results)
        self.metrics.observe_alerts(new.alerts.values(), self._severities())
        self.metrics.silences_active.set(len(cycle.silences))
        return CycleResult(results, events, True, now, bool(outbox) or cycle.first is not None)

    def _remember(
        self,
        snapshots: list[Snapshot],
        samples: list[Sample],
        flows: dict[str, Flow],
        now: datetime,
    ) -> None:
        """What a commit makes true in memory too."""
        self.snapshots.update((s.account, s) for s in snapshots)
        self.history.committed(samples, now)
        self.flows.update((s.account, flows[s.account]) for s in snapshots if s.account in flows)

    def _follow_ups(
        self,
        events: Sequence[Event],
        silences: Sequence[Silence],
        acks: Mapping[AlertKey, Ack],
        now: datetime,
    ) -> list[OutboxItem]:
        """Edits of the messages that announced the alerts resolving now."""
        resolving = {e.alert for e in events if e.kind is EventKind.RESOLVE}
        if not resolving:
            return []
        zone = self.timezone
        return [
            follow_up(sent, silences, acks, now, zone, resolving)
            for sent in self.store.messages_of(resolving)
            if any(not sent.resolved.get(k) for k in sent.alerts if k in resolving)
        ]

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

    def route(
        self, events: list[Event], state: EngineState, cycle: _Cycle, now: datetime
    ) -> list[OutboxItem]:
        """The cycle's events as one outbox item per destination (and one held
        for the end of quiet hours, if they are on). `state`: as the cycle left it."""
        needs_told = any(e.kind in (EventKind.RESOLVE, EventKind.AVAILABLE) for e in events)
        facts = self._facts(now, state, cycle.silences, cycle.acks)
        return self.router.route(events, self.store.told_at() if needs_told else {}, facts)

    def _facts(
        self,
        now: datetime,
        state: EngineState,
        silences: Sequence[Silence],
        acks: Mapping[AlertKey, Ack],
        quiet: bool = True,
    ) -> Facts:
        """What the suppression decision reads at `now`; `quiet`: whether quiet
        hours apply (their release is past them)."""
        unavailable = [a for a, h in state.health.items() if h.unavailable]
        hours = self.router.quiet if quiet else None
        return Facts.at(now, self.rules, state.alerts, silences, acks, hours, unavailable)

    def queues_of(self, notify: Sequence[str]) -> list[Queue]:
        """Every (notifier, destination) that `notify` names; () for all."""
        return self.router.queues_of(notify)

    async def release_held(self) -> int:
        """At the end of quiet hours (and at start or reload, for those that ended
        while the bot was down or are no longer configured): what was held goes
        out, one message per destination with the latest held event of each
        alert, leaving out what may no longer be said. An alert whose held fire is
        left out while it still fires counts as never announced, so that it gets a
        fire, not a reminder, once it may be told. The number of messages queued."""
        async with self._cycle_lock:
            now = self.clock()
            hours = self.router.quiet
            rows = self.store.held(now if hours and hours.window(now) else None)
            if not rows:
                return 0
            facts = self._facts(
                now, self.state, self.store.silences(now), self.store.acks(), quiet=False
            )
            items = release(rows, facts)
            alerts = self.state.alerts
            told = {e.alert for item in items for e in item.events if e.kind is EventKind.FIRE}
            told |= {alert for alert, _, _ in self.store.told()}  # announced elsewhere
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
                    self.state,
                    alerts={
                        k: replace(s, announced=False, held=True) if k in untold else s
                        for k, s in alerts.items()
                    },
                )
                self.store.commit_cycle(Commit(self.state, new, (), (), now))
                self.state = new
            self.store.release([r.id for r in rows], items, now)
            log_event(logger, "quiet.released", held=len(rows), messages=len(items))
            return len(items)

    def missed(self) -> list[OutboxItem]:
        """For each destination that was never told of alerts still firing (it was
        added since, its sends failed for good, or `check --no-notify` recorded
        the fire): one message listing them, as the suppression decision allows
        (nothing of what is snoozed, acknowledged or inhibited, nor of an alert the
        next poll announces). What quiet hours hold is not missed."""
        now = self.clock()
        told = self.store.told_at()
        told.update(dict.fromkeys(self.store.holding(), now))
        firing, unavailable = firing_events(self.state, self.rules, self.latest, now)
        facts = self._facts(now, self.state, self.store.silences(now), self.store.acks())
        return self.router.catch_up([*unavailable, *firing], told, facts)

    async def tell_missed(self) -> int:
        """Queue what `missed()` finds; the number of messages queued."""
        async with self._cycle_lock:
            items = self.missed()
            if items:
                self.store.enqueue(items, self.clock())
                log_event(logger, "alert.still_firing", destinations=len(items))
        return len(items)

    async def reconfigure(self, config: Config, client: CometClient, router: Router) -> None:
        """A reloaded config, between two cycles: accounts, rules, thresholds,
        windows and routes from the next poll on; state and history kept. What a
        removed rule or account leaves is dropped quietly by the next cycle."""
        async with self._cycle_lock:
            self.config, self.client, self.router = config, client, router
            self.timezone = config.bot.zone
            self.accounts = {a.name: a for a in config.accounts}
            self.rules = config.rules
            self.snapshots = {a: s for a, s in self.snapshots.items() if a in self.accounts}
            self.flows = {a: f for a, f in self.flows.items() if a in self.accounts}
            self.polls = {a: p for a, p in self.polls.items() if a in self.accounts}
            old = self.history
            spend_windows = {r.kind.window for r in self.rules if isinstance(r.kind, SpendAbove)}
            self.history = History(
                self.store.history, config.bot.burn_window, spend_windows, config.bot.interval
            )
            self.history.ledgers, self.history.seeds = old.ledgers, old.seeds
            self.history.committed_to = old.committed_to
            self.metrics.observe_alerts(self.state.alerts.values(), self._severities())

    async def prune(self, budget: float = PRUNE_BUDGET) -> None:
        """Delete expired history and outbox rows, a batch at a time in a worker
        thread, for at most `budget` seconds; what is left waits for the next call.
        Once a day."""
        now = self.clock()
        if self._pruned_at and now - self._pruned_at < PRUNE_EVERY:
            return
        loop = asyncio.get_running_loop()
        ends = loop.time() + budget
        try:
            while loop.time() < ends:
                pruned = await asyncio.to_thread(
                    self.store.prune, now, self.config.bot.history_days
                )
                if not pruned:
                    self._pruned_at = now
                    return
        except StoreError as exc:
            log_event(logger, "store.prune_failed", logging.WARNING, reason=str(exc))

    async def seed(self) -> None:
        """At start: accounts still gathering data get burn rates from CometAPI's
        optional daily_quota, the complete past days of one burn window. A body
        without it, or with garbage in it, is one log line and no seed."""
        now = self.clock()
        today = now.astimezone(UTC).date()
        days = math.ceil(self.config.bot.burn_window / 86400)
        first, last = today - timedelta(days=days), today - timedelta(days=1)
        gate = asyncio.Semaphore(self.config.bot.max_concurrency)
        self.history.advance(now)

        async def one(account: Account) -> None:
            if self.history.flow(account.name, now).burn.total is not None:
                return  # enough live history already
            async with gate:
                try:
                    used = await self.client.daily(account, first, last)
                except FetchError as exc:
                    log_event(logger, "seed.unavailable", account=account.name, reason=exc.reason)
                    return
            self.history.seeds[account.name] = seeded_rates(used)
            log_event(logger, "seed.ok", account=account.name, days=len(used))

        await asyncio.gather(*(one(a) for a in self.accounts.values()))

    async def idle(self, within: float) -> bool:
        """Wait for a cycle under way to finish; False if it did not in time."""
        try:
            async with asyncio.timeout(within), self._cycle_lock:
                return True
        except TimeoutError:
            return False

    def _severities(self) -> dict[str, str]:
        return {rule.name: rule.severity.value for rule in self.rules}

    # --- what chat commands read (commands.BalanceSource) ------------------------

    def now(self) -> datetime:
        return self.clock()

    @property
    def request_timeout(self) -> float:
        return self.config.bot.request_timeout

    def account_names(self) -> list[str]:
        return list(self.accounts)

    def flow(self, account: str) -> Flow:
        return self.history.flow(account, self.clock())

    def samples(self, account: str, since: float, until: float) -> list[Sample]:
        return self.store.history.of(account, since, until)

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


@dataclass(slots=True)
class _Cycle:
    """What one cycle has gathered so far."""

    started: datetime
    silences: Sequence[Silence]
    acks: Mapping[AlertKey, Ack]
    kept: dict[AlertKey, AlertState] = field(default_factory=dict)  # of accounts not polled
    results: dict[str, PollResult] = field(default_factory=dict)
    alerts: dict[AlertKey, AlertState] = field(default_factory=dict)
    health: dict[str, AccountHealth] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    samples: dict[str, Sample] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)
    early: bool = False  # an account was committed (and its events queued) on its own
    first: tuple[str, PollResult, AccountOutcome] | None = None
    sending: asyncio.Future[object] | None = None  # the first alert's send attempt

    def add(self, account: str, result: PollResult, outcome: AccountOutcome) -> None:
        self.results[account] = result
        self.alerts.update(outcome.alerts)
        self.health[account] = outcome.health
        self.events.extend(outcome.events)
