"""May this alert speak? The one decision of who hears what, and when (SPEC 5).

For an alert (or an account's data outage), something it would say and one
destination, at a time: it speaks now, it waits for the end of quiet hours, or it
stays silent, and why. The live cycle (fires, reminders, the message after a hold),
the start-up and reload catch-up, the quiet-hours release and the edits of sent
messages all ask `decide`; inhibition (`inhibited`) and the quiet-hours split
(`QuietHours`, `waits`) are written here and nowhere else. Pure: plain values in,
a Verdict out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.engine.model import AlertKey, AlertState, EngineState, Rule, Severity, Silence


class Say(StrEnum):
    """What a message would tell a destination of an alert."""

    FIRE = "fire"  # it fires (or fires again after a hold it was never told of)
    REMIND = "remind"  # it still fires: `repeat`, or the end of a snooze or inhibition
    CATCH_UP = "catch_up"  # a destination that never heard of a firing alert hears now
    RESOLVE = "resolve"
    UNAVAILABLE = "unavailable"  # an account's data is unavailable
    AVAILABLE = "available"  # its data is back
    EDIT = "edit"  # a sent message, edited to follow its alerts (never a notification)


class Hush(StrEnum):
    """Why something is not said at all."""

    INHIBITED = "a critical alert fires on the same subject"
    SNOOZED = "snoozed"
    ACKED = "acknowledged: nothing more until it resolves"
    PENDING = "held by a snooze or inhibition: the next poll announces it"
    NOT_FIRING = "no longer firing"
    FIRING = "firing again"
    DATA_GONE = "its data is unavailable again"
    NOT_ROUTED = "its rule does not notify this destination"
    NOT_TOLD = "this destination never heard of the alert"
    TOLD = "this destination heard of it already"


@dataclass(frozen=True, slots=True)
class Verdict:
    hush: Hush | None = None  # silent, and why
    until: datetime | None = None  # held for quiet hours until then

    @property
    def speaks(self) -> bool:
        return self.hush is None and self.until is None


SPEAK = Verdict()


@dataclass(frozen=True, slots=True)
class QuietHours:
    """[start, end) in local time, wrapping past midnight when start > end."""

    start: time
    end: time
    zone: ZoneInfo

    def window(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The quiet hours `now` falls in, as (start, end) in UTC, or None."""
        local = now.astimezone(self.zone)
        for day in (local.date() - timedelta(days=1), local.date()):
            start = datetime.combine(day, self.start, self.zone)
            end_day = day if self.end > self.start else day + timedelta(days=1)
            end = datetime.combine(end_day, self.end, self.zone)
            if start <= local < end:
                return start.astimezone(UTC), end.astimezone(UTC)
        return None


Subject = tuple[str, str, str]  # (account, target, subject): a key named "total" is no total


def critical_subjects(
    alerts: Iterable[AlertState], rules: Mapping[str, Rule]
) -> frozenset[Subject]:
    """The subjects a critical alert of any rule kind fires on."""
    return frozenset(
        (s.key.account, rule.target, s.key.subject)
        for s in alerts
        if s.firing and (rule := rules.get(s.key.rule)) and rule.severity is Severity.CRITICAL
    )


@dataclass(frozen=True, slots=True)
class Facts:
    """What the decision reads, as things stand at `now`."""

    now: datetime
    rules: Mapping[str, Rule]  # by name
    alerts: Mapping[AlertKey, AlertState]  # the alert states (firing or on their way)
    silences: Sequence[Silence] = ()
    acks: Collection[AlertKey] = ()
    quiet: tuple[datetime, datetime] | None = None  # the quiet hours `now` falls in
    unavailable: Collection[str] = ()  # accounts whose data is unavailable
    critical: frozenset[Subject] = field(default=frozenset())

    @classmethod
    def at(
        cls,
        now: datetime,
        rules: Iterable[Rule],
        alerts: Mapping[AlertKey, AlertState],
        silences: Sequence[Silence] = (),
        acks: Collection[AlertKey] = (),
        hours: QuietHours | None = None,
        unavailable: Collection[str] = (),
    ) -> Facts:
        by_name = {r.name: r for r in rules}
        return cls(
            now,
            by_name,
            alerts,
            silences,
            acks,
            hours.window(now) if hours else None,
            unavailable,
            critical_subjects(alerts.values(), by_name),
        )

    @classmethod
    def of(
        cls,
        now: datetime,
        rules: Iterable[Rule],
        state: EngineState,
        silences: Sequence[Silence] = (),
        acks: Collection[AlertKey] = (),
        hours: QuietHours | None = None,
    ) -> Facts:
        """Facts.at for an engine state: its alerts and the accounts without data."""
        unavailable = [a for a, h in state.health.items() if h.unavailable]
        return cls.at(now, rules, state.alerts, silences, acks, hours, unavailable)


def inhibited(key: AlertKey, rule: Rule | None, critical: Collection[Subject]) -> bool:
    """A warning while a critical alert of any rule fires on its (account, subject)."""
    return (
        rule is not None
        and rule.severity is Severity.WARNING
        and (key.account, rule.target, key.subject) in critical
    )


def silenced(say: Say, key: AlertKey, facts: Facts) -> Hush | None:
    """Why the alert must not say `say` anywhere now (None: it may). Snoozes,
    inhibition and an ack hold back fires, reminders and catch-ups (an acknowledged
    alert says nothing more until it resolves); a resolve, an account's data outage
    and an edit are never held back."""
    if say not in (Say.FIRE, Say.REMIND, Say.CATCH_UP) or not key.rule:
        return None
    if inhibited(key, facts.rules.get(key.rule), facts.critical):
        return Hush.INHIBITED
    if any(s.covers(key, facts.now) for s in facts.silences):
        return Hush.SNOOZED
    if key in facts.acks:
        return Hush.ACKED
    return None


def waits(
    say: Say, key: AlertKey, severity: Severity, told_at: datetime | None, facts: Facts
) -> datetime | None:
    """The end of the quiet hours `say` must wait for, or None to go at once. In
    quiet hours only critical fires and reminders, data unavailable, and the end of
    what the destination first heard of in these quiet hours (`told_at`) go out."""
    if facts.quiet is None or say is Say.EDIT:
        return None
    start, end = facts.quiet
    if say is Say.UNAVAILABLE or (say is Say.CATCH_UP and not key.rule):
        urgent = True
    elif say in (Say.FIRE, Say.REMIND, Say.CATCH_UP):
        urgent = severity is Severity.CRITICAL
    else:  # a resolve, data back
        urgent = told_at is not None and told_at >= start
    return None if urgent else end


def _state_hush(say: Say, key: AlertKey, facts: Facts) -> Hush | None:
    """What the alert's state says against `say`: an alert no longer firing says
    nothing of firing, one firing again says nothing of its end, and a catch-up
    waits for the poll that announces an alert held by a snooze or inhibition."""
    if not key.rule:  # an account's data
        gone = key.account in facts.unavailable
        if say is Say.AVAILABLE:
            return Hush.DATA_GONE if gone else None
        return None if gone or say is not Say.CATCH_UP else Hush.NOT_FIRING
    if say is Say.EDIT:
        return None
    state = facts.alerts.get(key)
    firing = state is not None and state.firing
    if say is Say.RESOLVE:
        return Hush.FIRING if firing else None
    if not firing:
        return Hush.NOT_FIRING
    if say is Say.CATCH_UP and state is not None and (state.held or not state.announced):
        return Hush.PENDING
    return None


def decide(
    say: Say,
    key: AlertKey,
    severity: Severity,
    facts: Facts,
    *,
    routed: bool = True,
    told_at: datetime | None = None,
) -> Verdict:
    """Whether `say`, about the alert `key` (("", account, "") for an account's
    data), may go to one destination now. `routed`: the alert's rule (or the
    account's rules, for its data) notify that destination; `told_at`: when the
    destination was first sent (or queued) a fire, reminder or outage of it, None if
    never. A resolve goes only where its alert was told; a catch-up only where it
    was not."""
    if say is Say.RESOLVE and told_at is None:
        return Verdict(Hush.NOT_TOLD)
    if say not in (Say.RESOLVE, Say.AVAILABLE, Say.EDIT) and not routed:
        return Verdict(Hush.NOT_ROUTED)
    if say is Say.CATCH_UP and told_at is not None:
        return Verdict(Hush.TOLD)
    hush = _state_hush(say, key, facts) or silenced(say, key, facts)
    if hush is not None:
        return Verdict(hush)
    until = waits(say, key, severity, told_at, facts)
    return Verdict(until=until) if until else SPEAK
