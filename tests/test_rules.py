"""The rule engine: pure transitions, checked by example and by property."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine.model import (
    AlertKey,
    EngineState,
    EventKind,
    FailureKind,
    KeyBalance,
    PollFailure,
    Snapshot,
)
from bot.notify.plan import Context, evaluate
from tests.helpers import key_rule, rule

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def snap(
    total: float, keys: list[KeyBalance] | tuple = (), account: str = "main", at=T0
) -> Snapshot:
    return Snapshot(account, "user", total, 10.0, 5, tuple(keys), at)


def run(values, rules, stale_after=3, start=None, step=timedelta(minutes=5)):
    """Feed a sequence of totals (None = failed poll); return per-poll event kinds and final state."""
    state, out = start or EngineState(), []
    for i, v in enumerate(values):
        now = T0 + i * step
        result = (
            PollFailure("main", FailureKind.UNREACHABLE, "HTTP 500", now)
            if v is None
            else snap(v, at=now)
        )
        state, events = evaluate({"main": result}, rules, state, Context(now, stale_after))
        out.append([e.kind for e in events])
    return out, state


def test_issue_sequence():
    kinds, _ = run([30, 15, 18, 16, 19, 26, 24, 10], [rule()])
    assert kinds == [[], ["fire"], [], [], [], ["resolve"], [], ["fire"]]


def test_for_polls_needs_consecutive_polls_below():
    kinds, _ = run([10, 21, 10, 10, 10], [rule(for_polls=3)])
    assert kinds == [[], [], [], [], ["fire"]]


def test_failed_poll_changes_nothing_and_stale_alert_is_single():
    kinds, state = run([10, None, None, None, None, 30], [rule()], stale_after=3)
    assert kinds == [["fire"], [], [], ["unavailable"], [], ["available", "resolve"]]
    assert not state.alerts


def test_rejected_key_alerts_on_first_failure():
    state = EngineState()
    failure = PollFailure("main", FailureKind.REJECTED, "key rejected (HTTP 401)", T0)
    state, events = evaluate({"main": failure}, [rule()], state, Context(T0, 3))
    assert [e.kind for e in events] == [EventKind.UNAVAILABLE]
    assert events[0].reason == "key rejected (HTTP 401)"


def test_repeat_reminds_on_schedule():
    r = rule(repeat="12m")
    kinds, _ = run([10] * 8, [r])  # polls every 5 minutes
    assert kinds == [["fire"], [], [], ["remind"], [], [], ["remind"], []]


def test_fire_event_carries_message_fields():
    _, events = evaluate(
        {"main": snap(1.42)},
        [rule(severity="critical", below=2, recover_above=3)],
        EngineState(),
        Context(T0, 3),
    )
    (e,) = events
    assert (e.kind, e.severity, e.subject, e.value, e.threshold, e.recover_at) == (
        "fire",
        "critical",
        "total",
        1.42,
        2,
        3,
    )


def test_two_rules_on_one_subject_are_independent():
    rules = [rule(), rule(name="crit", below=5, recover_above=10, severity="critical")]
    kinds, _ = run([30, 15, 4, 7, 12, 30], rules)
    # the critical inhibits the warning while it fires; when it resolves, the
    # still-firing warning gets one reminder
    assert kinds == [[], ["fire"], ["fire"], [], ["resolve", "remind"], ["resolve"]]


def test_key_rules_skip_unlimited_and_excluded_keys():
    keys = [
        KeyBalance("prod", 1.0, 9.0),
        KeyBalance("unlimited-a", 999999999, -1),
        KeyBalance("unlimited-b", -1, 5),
        KeyBalance("balance-query", 0, 0),
    ]
    _, events = evaluate({"main": snap(100, keys)}, [key_rule()], EngineState(), Context(T0, 3))
    assert [(e.kind, e.subject) for e in events] == [("fire", "prod")]


def test_percent_rule():
    r = key_rule(below=None, recover_above=None, below_percent=10, recover_above_percent=15)
    state, events = evaluate(
        {"main": snap(100, [KeyBalance("k", 0.9, 9.1)])}, [r], EngineState(), Context(T0, 3)
    )
    assert events[0].unit == "percent" and events[0].value == 9.0 and events[0].usd == 0.9
    state, events = evaluate(
        {"main": snap(100, [KeyBalance("k", 1.2, 8.8)])}, [r], state, Context(T0, 3)
    )
    assert events == []  # 12 % is between the levels
    state, events = evaluate(
        {"main": snap(100, [KeyBalance("k", 1.5, 8.5)])}, [r], state, Context(T0, 3)
    )
    assert [e.kind for e in events] == ["resolve"]


def test_removed_key_resolves_and_unlimited_key_resolves():
    r = key_rule()
    state, _ = evaluate(
        {"main": snap(100, [KeyBalance("a", 1, 1), KeyBalance("b", 1, 1)])},
        [r],
        EngineState(),
        Context(T0, 3),
    )
    state, events = evaluate(
        {"main": snap(100, [KeyBalance("b", 1, -1)])}, [r], state, Context(T0, 3)
    )
    assert sorted((e.subject, e.reason) for e in events) == [
        ("a", "key removed"),
        ("b", "key is now unlimited"),
    ]
    assert not state.alerts


def test_config_edits_drop_state_quietly():
    state, _ = evaluate(
        {"main": snap(10, [KeyBalance("a", 1, 1)])},
        [rule(), key_rule()],
        EngineState(),
        Context(T0, 3),
    )
    assert len(state.alerts) == 2
    narrowed = key_rule(keys=["other-*"])
    state, events = evaluate(
        {"main": snap(10, [KeyBalance("a", 1, 1)])}, [narrowed], state, Context(T0, 3)
    )
    assert events == [] and state.alerts == {}


def test_changed_threshold_applies_from_next_poll():
    state, _ = evaluate({"main": snap(18)}, [rule()], EngineState(), Context(T0, 3))
    assert state.alerts[AlertKey("low", "main", "total")].firing
    state, events = evaluate(
        {"main": snap(18)}, [rule(below=10, recover_above=15)], state, Context(T0, 3)
    )
    assert [e.kind for e in events] == ["resolve"]


def test_other_accounts_untouched_by_globs():
    r = rule(accounts=["prod-*"])
    _, events = evaluate({"main": snap(1)}, [r], EngineState(), Context(T0, 3))
    assert events == []


# --- properties -------------------------------------------------------------

BELOW, RECOVER = 20.0, 25.0
values = st.one_of(
    st.floats(0, 60, allow_nan=False), st.sampled_from([BELOW, RECOVER, 19.99, 24.99])
)
polls = st.lists(st.one_of(values, st.none()), max_size=60)


@settings(max_examples=400, deadline=None)
@given(polls, st.integers(1, 3))
def test_fires_never_exceed_downward_crossings_after_recovery(seq, for_polls):
    kinds, _ = run(seq, [rule(for_polls=for_polls)])
    fires = sum(k.count("fire") for k in kinds)
    # count crossings below BELOW that start from an "armed" state (never fired, or recovered)
    armed, crossings = True, 0
    for v in seq:
        if v is None:
            continue
        if v >= RECOVER:
            armed = True
        elif v < BELOW and armed:
            crossings += 1
            armed = False
    assert fires <= crossings


@settings(max_examples=400, deadline=None)
@given(polls, st.integers(1, 3))
def test_fire_and_resolve_alternate(seq, for_polls):
    kinds, _ = run(seq, [rule(for_polls=for_polls)])
    flat = [k for ks in kinds for k in ks if k in ("fire", "resolve")]
    assert all(a != b for a, b in itertools.pairwise(flat))
    assert not flat or flat[0] == "fire"


@settings(max_examples=400, deadline=None)
@given(polls, st.lists(st.floats(BELOW, RECOVER, exclude_max=True), min_size=1, max_size=10))
def test_values_between_levels_never_change_firing(prefix, middle):
    r = rule()
    _, state = run(prefix, [r])
    key = AlertKey("low", "main", "total")
    firing_before = key in state.alerts and state.alerts[key].firing
    kinds, after = run(middle, [r], start=state)
    assert all(k in ([], ["available"]) for k in kinds)
    assert (key in after.alerts and after.alerts[key].firing) == firing_before


@settings(max_examples=200, deadline=None)
@given(polls)
def test_failed_polls_change_no_alert_state(seq):
    r = rule()
    state = EngineState()
    for i, v in enumerate(seq):
        now = T0 + timedelta(minutes=i)
        if v is None:
            failure = PollFailure("main", FailureKind.BAD_RESPONSE, "not JSON", now)
            new, events = evaluate({"main": failure}, [r], state, Context(now, 3))
            assert new.alerts == state.alerts
            assert all(e.kind == "unavailable" for e in events)
        else:
            new, _ = evaluate({"main": snap(v, at=now)}, [r], state, Context(now, 3))
        state = new
