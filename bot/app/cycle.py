"""One poll cycle, as a pipeline: poll every account -> evaluate and announce
(bot/notify/plan.py) -> plan who hears what (routing, follow-ups) -> commit ->
hand to delivery. What it leaves is in the read model (bot/app/readmodel.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.app.history import History
from bot.app.readmodel import ReadModel
from bot.app.views import PollRecord
from bot.common.logs import log_event
from bot.config import Config
from bot.engine.model import (
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
)
from bot.engine.rules import AccountOutcome, split_alerts
from bot.notify.followup import follow_up
from bot.notify.plan import Context, evaluate_account
from bot.notify.routing import Router
from bot.notify.suppression import Facts
from bot.ops.metrics import Metrics
from bot.state.protocol import StateStore
from bot.state.types import (
    Commit,
    FencedError,
    OutboxItem,
    Sample,
    StoreError,
    StoreReplacedError,
)
from bot.upstream.client import Client, poll_each

logger = logging.getLogger(__name__)

FIRST_SEND_WAIT = 1.0  # seconds the polls wait for a cycle's first alert to go out, at most

Clock = Callable[[], datetime]
# outbox rows were added: wake delivery; what to await for its first send, if anything
Queued = Callable[[], Awaitable[object] | None]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class CycleResult:
    results: dict[str, PollResult]
    events: list[Event]
    committed: bool
    finished_at: datetime
    queued: bool = False  # outbox rows were added (messages or edits)


def new_history(config: Config, store: StateStore) -> History:
    """The cycle's memory of spending, with the windows the config's rules look over."""
    spend_windows = {w for r in config.rules if (w := r.kind.spend_window()) is not None}
    return History(store.history, config.bot.burn_window, spend_windows, config.bot.interval)


async def load_model(config: Config, store: StateStore, client: Client, clock: Clock) -> ReadModel:
    """The read model as the state left it: the configured accounts' alert states
    and latest data, and their history's ledgers restored."""
    accounts = [a.name for a in config.accounts]
    stored = await store.load_snapshots()
    snapshots = {a: s for a, s in stored.items() if a in accounts}
    history = new_history(config, store)
    await history.restore(snapshots, clock())
    state = await store.load_state(accounts)
    return ReadModel(config, store, client, clock, state, snapshots, history)


def facts(
    model: ReadModel,
    router: Router,
    now: datetime,
    state: EngineState,
    silences: Sequence[Silence],
    acks: Mapping[AlertKey, Ack],
    quiet: bool = True,
) -> Facts:
    """What the suppression decision reads at `now`; `quiet`: whether quiet hours
    apply (their release is past them)."""
    hours = router.quiet if quiet else None
    return Facts.of(now, model.rules, state, silences, acks, hours)


class Cycle:
    """One poll cycle at a time; `lock` also keeps the jobs that change alert
    states (bot/app/jobs.py) from running beside it."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        client: Client,
        model: ReadModel,
        router: Router,
        metrics: Metrics,
        queued: Queued,
        clock: Clock = utcnow,
    ) -> None:
        self.store, self.model, self.metrics, self.clock = store, model, metrics, clock
        self.queued = queued
        self.lock = asyncio.Lock()
        self.cycles_done = 0
        self._done = asyncio.Condition()
        self.configure(config, client, router)
        metrics.observe_alerts(model.state.alerts.values(), model.severities())

    def configure(self, config: Config, client: Client, router: Router) -> None:
        self.config, self.client, self.router = config, client, router  # router: who hears what

    async def reconfigure(self, config: Config, client: Client, router: Router) -> None:
        """A reloaded config, between two cycles: accounts, rules, thresholds,
        windows and routes from the next poll on; state and history kept. What a
        removed rule or account leaves is dropped quietly by the next cycle."""
        async with self.lock:
            model = self.model
            self.configure(config, client, router)
            model.configure(config, client)
            old, model.history = model.history, new_history(config, self.store)
            model.history.take_over(old)
            self.metrics.observe_alerts(model.state.alerts.values(), model.severities())

    async def run(
        self, notify: bool = True, after: Callable[[], Awaitable[None]] | None = None
    ) -> CycleResult:
        """One cycle; `after` (pruning) runs before the lock is let go."""
        async with self.lock:
            result = await self._stream(notify)
            if after is not None:
                await after()
        async with self._done:
            self.cycles_done += 1
            self._done.notify_all()
        return result

    async def wait_cycles(self, count: int) -> None:
        """Return once `count` cycles have completed since start (tests, the benchmark)."""
        async with self._done:
            await self._done.wait_for(lambda: self.cycles_done >= count)

    async def idle(self, within: float) -> bool:
        """Wait for a cycle under way to finish; False if it did not in time."""
        try:
            async with asyncio.timeout(within), self.lock:
                return True
        except TimeoutError:
            return False

    async def _stream(self, notify: bool) -> CycleResult:
        """Each account is evaluated as its result comes in. The first account
        with something to say is committed at once, its outbox rows with it, and
        delivery is woken: its alert leaves within milliseconds of its data.
        Everything else of the cycle is committed, and leaves grouped, at its
        end: at most two messages per destination per cycle (SPEC 5, "Grouping")."""
        model, now = self.model, self.clock()
        run = _Run(now, await self.store.silences(now), await self.store.acks())
        grouped, kept = split_alerts(model.state.alerts, model.accounts, model.rules)
        # an account removed from the config: its alerts are dropped quietly
        run.kept = {k: v for k, v in kept.items() if k.account in model.accounts}
        try:
            await model.history.advance(run.started)
        except StoreError as exc:  # rates may lag; thresholds and the rest go on
            log_event(logger, "history.unreadable", logging.ERROR, reason=str(exc))
        gate = asyncio.Event()
        gate.set()
        accounts = list(model.accounts.values())
        async for account, result in poll_each(
            self.client, accounts, self.config.bot.max_concurrency, gate
        ):
            previous, old = grouped.get(account, {}), model.state.health.get(account)
            result, outcome = await self._evaluate(account, result, previous, old, run)
            if isinstance(result, Snapshot):  # the old one goes now, not at the cycle's end
                model.snapshots[account] = result
            if notify and outcome.events and run.first is None:
                batch = run.single(account, result, outcome, previous, old)
                if await self._commit(batch, run, notify, whole=False):
                    run.first = batch
                    await self._let_it_out(gate, run)
                    continue
                # the cycle's end tries again, with everything else
            run.add(account, result, outcome)
        return await self._finish(run, notify)

    async def _evaluate(
        self,
        account: str,
        result: PollResult,
        previous: dict[AlertKey, AlertState],
        old: AccountHealth | None,
        run: _Run,
    ) -> tuple[PollResult, AccountOutcome]:
        """Evaluation with what the account's history says: whatever goes wrong
        with one account's data makes its poll a failed one, nothing more."""
        model, now = self.model, self.clock()
        stale_after = self.config.bot.stale_after
        try:
            flows = {}
            if isinstance(result, Snapshot):
                result = model.history.derive_used(result)
                sample = model.history.record(result)
                flows[account] = flow = await model.history.flow(account, now)
            context = Context(now, stale_after, flows, run.silences, run.acks)
            outcome = evaluate_account(result, model.rules, previous, old, context)
            if isinstance(result, Snapshot):
                run.samples[account] = sample
                run.flows[account] = flow
        except Exception as exc:
            logger.error(
                "cycle.account_failed",
                exc_info=exc,
                extra={"fields": {"account": account, "reason": type(exc).__name__}},
            )
            reason = f"could not process the data ({type(exc).__name__}); see the log"
            result = PollFailure(account, FailureKind.BAD_RESPONSE, reason, now)
            context = Context(now, stale_after, {}, run.silences, run.acks)
            outcome = evaluate_account(result, model.rules, previous, old, context)
        return result, outcome

    async def _let_it_out(self, gate: asyncio.Event, run: _Run) -> None:
        """No new poll starts until the first alert's send is over (at most
        FIRST_SEND_WAIT): the event loop is the sender's, not the polls'."""
        if run.sending is None:
            return
        gate.clear()
        try:
            await asyncio.wait_for(run.sending, FIRST_SEND_WAIT)
        except TimeoutError:
            pass  # a slow platform: the polls go on, the send too
        finally:
            gate.set()

    async def _finish(self, run: _Run, notify: bool) -> CycleResult:
        """The cycle's end: every account but the one committed first, in one
        transaction, its events grouped per destination."""
        model = self.model
        alerts = {**run.kept, **run.batch.new.alerts}
        if run.first is not None:  # already in the read model: unchanged here
            alerts.update(run.first.new.alerts)
        health = {
            a: h
            for a, h in {**model.state.health, **run.batch.new.health}.items()
            if a in model.accounts
        }
        rest = _Batch(model.state, EngineState(alerts, health), run.batch.results, run.batch.events)
        rest.samples, rest.flows = run.batch.samples, run.batch.flows
        committed = await self._commit(rest, run, notify, whole=True)
        results, events = dict(rest.results), list(rest.events)
        if run.first is not None:
            results.update(run.first.results)
            events = [*run.first.events, *events]
        if committed:
            model.last_cycle_at = run.finished
            self.metrics.observe_polls(results)
            self.metrics.observe_alerts(model.state.alerts.values(), model.severities())
            self.metrics.silences_active.set(len(run.silences))
        queued = rest.queued or run.first is not None
        return CycleResult(results, events, committed, run.finished, queued)

    async def _commit(self, batch: _Batch, run: _Run, notify: bool, whole: bool) -> bool:
        """The one commit path: a batch's state, data, history and outbox rows in one
        transaction, then the same made true in memory; False if it cannot be saved
        (the state did not advance: the next try evaluates the same transitions).
        `whole`: the batch is the cycle's complete new state, not one account's."""
        now = run.finished = self.clock()
        outbox: list[OutboxItem] = []
        if notify and batch.events:
            outbox = await self._route(batch.events, batch.new, run, now)
            outbox += await self._follow_ups(batch.events, run.silences, run.acks, now)
        snapshots = [r for r in batch.results.values() if isinstance(r, Snapshot)]
        try:
            await self.store.check_file()
            await self.store.commit_cycle(
                Commit(batch.old, batch.new, snapshots, outbox, now, list(batch.samples.values()))
            )
        except (StoreReplacedError, FencedError):  # the App stops, or steps down
            raise
        except StoreError as exc:
            event, level = (
                ("cycle.not_saved", logging.ERROR)
                if whole
                else (
                    "cycle.first_not_saved",
                    logging.WARNING,
                )
            )
            fields = {} if whole else {"account": next(iter(batch.results), "")}
            log_event(logger, event, level, reason=str(exc), **fields)
            return False
        self._remember(batch, snapshots, whole, now)
        batch.queued = bool(outbox)
        if not whole and outbox:
            waiting = self.queued()
            run.sending = asyncio.ensure_future(waiting) if waiting is not None else None
        return True

    def _remember(
        self, batch: _Batch, snapshots: Iterable[Snapshot], whole: bool, now: datetime
    ) -> None:
        """What a commit makes true in memory too."""
        model = self.model
        if whole:
            model.state = batch.new
        else:
            done = set(batch.results)
            alerts = {k: v for k, v in model.state.alerts.items() if k.account not in done}
            alerts.update(batch.new.alerts)
            model.state = EngineState(alerts, {**model.state.health, **batch.new.health})
        model.snapshots.update((s.account, s) for s in snapshots)
        model.history.committed(batch.samples.values(), now)
        model.flows.update(
            (s.account, batch.flows[s.account]) for s in snapshots if s.account in batch.flows
        )
        for account, result in batch.results.items():
            _log_poll(model, account, result, now)
        for event in batch.events:
            _log_alert(event)

    async def _route(
        self, events: list[Event], state: EngineState, run: _Run, now: datetime
    ) -> list[OutboxItem]:
        """A batch's events as one outbox item per destination (and one held
        for the end of quiet hours, if they are on). `state`: as the batch leaves it."""
        needs_told = any(e.kind in (EventKind.RESOLVE, EventKind.AVAILABLE) for e in events)
        told = await self.store.told_at() if needs_told else {}
        at = facts(self.model, self.router, now, state, run.silences, run.acks)
        return self.router.route(events, told, at)

    async def _follow_ups(
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
        zone = self.model.timezone
        return [
            follow_up(sent, silences, acks, now, zone, resolving)
            for sent in await self.store.messages_of(resolving)
            if any(not sent.resolved.get(k) for k in sent.alerts if k in resolving)
        ]


def _log_poll(model: ReadModel, account: str, result: PollResult, now: datetime) -> None:
    if isinstance(result, PollFailure):
        model.polls[account] = PollRecord(now, result.kind.value, result.reason)
        log_event(
            logger,
            "poll.failed",
            logging.WARNING,
            account=account,
            kind=result.kind.value,
            reason=result.reason,
        )
    else:
        model.polls[account] = PollRecord(now, "ok")
        log_event(
            logger,
            "poll.ok",
            logging.DEBUG,
            account=account,
            total=result.total_quota,
            keys=len(result.keys),
        )


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
class _Batch:
    """Accounts' polls to commit together: the state before and after, their
    results and events, history samples and what the history said."""

    old: EngineState
    new: EngineState = field(default_factory=EngineState)
    results: dict[str, PollResult] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    samples: dict[str, Sample] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)
    queued: bool = False  # it added outbox rows


@dataclass(slots=True)
class _Run:
    """What one cycle has gathered so far."""

    started: datetime
    silences: Sequence[Silence]
    acks: Mapping[AlertKey, Ack]
    kept: dict[AlertKey, AlertState] = field(default_factory=dict)  # of accounts not polled
    batch: _Batch = field(default_factory=lambda: _Batch(EngineState()))  # what is not committed
    first: _Batch | None = None  # the account committed on its own, as soon as it was in
    sending: asyncio.Future[object] | None = None  # the first alert's send attempt
    finished: datetime = field(default_factory=utcnow)
    samples: dict[str, Sample] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)

    def add(self, account: str, result: PollResult, outcome: AccountOutcome) -> None:
        """An account's poll, to commit at the cycle's end."""
        batch = self.batch
        batch.results[account] = result
        batch.new.alerts.update(outcome.alerts)
        batch.new.health[account] = outcome.health
        batch.events.extend(outcome.events)
        self._move(account, batch)

    def single(
        self,
        account: str,
        result: PollResult,
        outcome: AccountOutcome,
        previous: dict[AlertKey, AlertState],
        old: AccountHealth | None,
    ) -> _Batch:
        """An account's poll as a batch of its own."""
        batch = _Batch(
            EngineState(previous, {account: old} if old else {}),
            EngineState(outcome.alerts, {account: outcome.health}),
            {account: result},
            list(outcome.events),
        )
        self._move(account, batch)
        return batch

    def _move(self, account: str, batch: _Batch) -> None:
        """The account's history sample and flow go with its batch."""
        if account in self.samples:
            batch.samples[account] = self.samples.pop(account)
        if account in self.flows:
            batch.flows[account] = self.flows.pop(account)
