"""Planning who hears of an account's poll: the engine's steps announced as the
suppression decision allows (bot/notify/suppression.py), the alert states'
`announced` and `held` kept in step with what was said.

`evaluate` is the whole pure path of one cycle, (results, rules, state, context)
-> (new state, events): the engine, then the announcement.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from bot.engine import rules as engine
from bot.engine.model import (
    AccountHealth,
    AlertKey,
    AlertState,
    EngineState,
    Event,
    EventKind,
    Flow,
    PollResult,
    Rule,
    Silence,
)
from bot.engine.rules import AccountOutcome, Step, alert_event, split_alerts, with_forecast
from bot.notify.suppression import Facts, Hush, Say, silenced


@dataclass(frozen=True, slots=True)
class Context:
    """Everything besides results, rules and state that one evaluation needs."""

    now: datetime
    stale_after: int = 3  # consecutive failed polls before "data unavailable"
    flows: Mapping[str, Flow] = field(default_factory=dict)  # by account: rates, spending
    silences: Sequence[Silence] = ()  # snoozes (those that ended are ignored)
    acks: Collection[AlertKey] = frozenset()  # alerts whose reminders are stopped

    @property
    def engine(self) -> engine.Context:
        return engine.Context(self.now, self.stale_after, self.flows)


def evaluate_account(
    result: PollResult,
    rules: Sequence[Rule],
    previous: Mapping[AlertKey, AlertState],
    health: AccountHealth | None,
    context: Context,
) -> AccountOutcome:
    """One account's poll, evaluated and announced; `previous`: its alerts only."""
    outcome = engine.evaluate_account(result, rules, previous, health, context.engine)
    if not outcome.steps:
        return outcome
    facts = Facts.at(context.now, rules, outcome.alerts, context.silences, context.acks)
    told = announce(outcome.steps, outcome.alerts, outcome.flow, facts)
    return outcome._replace(events=[*outcome.events, *told], steps=())


def evaluate(
    results: Mapping[str, PollResult],
    rules: Sequence[Rule],
    previous: EngineState,
    context: Context,
) -> tuple[EngineState, list[Event]]:
    """Apply one poll cycle. Accounts absent from `results` keep their state."""
    grouped, alerts = split_alerts(previous.alerts, results, rules)
    health = dict(previous.health)
    events: list[Event] = []
    for account, result in results.items():
        outcome = evaluate_account(
            result, rules, grouped.get(account, {}), health.get(account), context
        )
        alerts.update(outcome.alerts)
        health[account] = outcome.health
        events.extend(outcome.events)
    return EngineState(alerts, health), events


def announce(
    steps: Sequence[Step], alerts: dict[AlertKey, AlertState], flow: Flow, facts: Facts
) -> list[Event]:
    """The fires and reminders of one account's poll that may be said. A snoozed or
    inhibited alert says nothing and is `held` (a fire held so is not `announced`);
    when that ends, a still-firing alert gets one message: a fire if it was never
    announced, else a reminder. An acknowledged alert says nothing more."""
    now = facts.now
    events: list[Event] = []
    for rule, key, m, event in steps:
        state = alerts.get(key)
        if state is None or not state.firing:
            continue
        fresh = event is not None and event.kind is EventKind.FIRE
        hush = silenced(Say.FIRE if fresh or not state.announced else Say.REMIND, key, facts)
        if hush in (Hush.INHIBITED, Hush.SNOOZED):
            alerts[key] = replace(state, held=True, announced=state.announced and not fresh)
            continue
        if hush is Hush.ACKED:
            event = None  # nothing more, scheduled or after a hold, until it resolves
        elif not state.announced:
            event = alert_event(EventKind.FIRE, rule, key, m, now, state.fired_at)
        elif state.held:
            event = alert_event(EventKind.REMIND, rule, key, m, now, state.fired_at)
        if state.held or not state.announced:
            alerts[key] = replace(state, held=False, announced=True, notified_at=now)
        if event is not None:
            if event.rate is None:
                event = with_forecast(event, flow.burn.of(key.subject, rule.target))
            events.append(event)
    return events
