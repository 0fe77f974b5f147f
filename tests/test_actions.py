"""Acting on alerts, below the chat: snoozes, acks and inhibition in the engine
(SPEC 5), routing by group and to those told, quiet hours and their release,
the edits that follow an alert, and the store that keeps all of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ConfigError, build_rule, parse
from bot.engine.model import (
    Ack,
    AlertKey,
    AlertState,
    EngineState,
    Event,
    EventKind,
    Figures,
    Flow,
    KeyBalance,
    MessageKind,
    Severity,
    Silence,
    Snapshot,
)
from bot.notifiers.message import Message, Section, Span, alert_ref, buttons, trimmed
from bot.notifiers.telegram import render_pieces
from bot.notify.followup import follow_up
from bot.notify.plan import Context, evaluate
from bot.notify.render import events_message
from bot.notify.routing import QuietHours, Router, may_release, release
from bot.notify.suppression import Facts, Say, waits
from bot.state.sqlite.store import Store
from bot.state.types import OutboxRow, SentMessage
from tests.helpers import T0, rule

STEP = timedelta(minutes=5)
WARN = rule(name="warn", below=20, recover_above=25, repeat="10m")
CRIT = rule(name="crit", below=5, recover_above=10, severity="critical", repeat="10m")
WARN_KEY = AlertKey("warn", "main", "total")
CRIT_KEY = AlertKey("crit", "main", "total")


def snap(total: float, at: datetime) -> Snapshot:
    return Snapshot("main", "user", total, 10.0, 5, (), at)


def run(values, rules, silences=(), acks=(), state=None, start=T0):
    """Polls every 5 minutes from `start`; per poll, (kind, rule) of each event."""
    state, out = state or EngineState(), []
    for i, value in enumerate(values):
        now = start + i * STEP
        context = Context(now, 3, {}, silences, frozenset(acks))
        state, events = evaluate({"main": snap(value, now)}, rules, state, context)
        out.append([(e.kind.value, e.rule) for e in events])
    return out, state


# --- snooze ------------------------------------------------------------------------


def test_a_snooze_holds_fire_and_reminders_then_one_fire_when_it_ends():
    silence = Silence(T0 + 12 * 60 * timedelta(seconds=1), "ann", "main")  # ends at T0+12m
    kinds, state = run([10] * 6, [WARN], [silence])
    # polls at 0, 5, 10 are snoozed; at 15 the alert was never announced: a fire
    assert kinds == [[], [], [], [("fire", "warn")], [], [("remind", "warn")]]
    assert state.alerts[WARN_KEY].announced


def test_a_snooze_on_an_announced_alert_gives_one_reminder_when_it_ends_whatever_repeat():
    no_repeat = rule(name="warn", below=20, recover_above=25)
    fired, state = run([10], [no_repeat])
    assert fired == [[("fire", "warn")]]
    silence = Silence(T0 + timedelta(minutes=12), "ann", "warn")  # by rule name
    kinds, _ = run([10] * 5, [no_repeat], [silence], state=state, start=T0 + STEP)
    assert kinds == [[], [], [("remind", "warn")], [], []]


def test_a_resolve_is_never_snoozed():
    fired, state = run([10], [WARN])
    assert fired == [[("fire", "warn")]]
    silence = Silence(T0 + timedelta(days=1), "ann", "main/total")
    kinds, _ = run([30], [WARN], [silence], state=state, start=T0 + STEP)
    assert kinds == [[("resolve", "warn")]]


def test_a_button_snooze_covers_exactly_its_alerts():
    other = rule(name="other", below=20, recover_above=25, repeat="10m")
    silence = Silence(T0 + timedelta(days=1), "ann", alerts=frozenset({WARN_KEY}))
    kinds, _ = run([10, 10, 10], [WARN, other], [silence])
    assert kinds == [[("fire", "other")], [], [("remind", "other")]]


@pytest.mark.parametrize(
    ("pattern", "covered"),
    [("main", True), ("main/total", True), ("warn", True), ("ma*", True), ("*/tot*", True)],
)
def test_a_pattern_matches_account_subject_or_rule(pattern, covered):
    assert Silence(T0 + STEP, "ann", pattern).covers(WARN_KEY, T0) is covered
    assert not Silence(T0 + STEP, "ann", "other").covers(WARN_KEY, T0)
    assert not Silence(T0, "ann", pattern).covers(WARN_KEY, T0)  # ended


# --- acknowledge -------------------------------------------------------------------


def test_ack_stops_reminders_until_resolved_and_a_new_fire_is_announced():
    fired, state = run([10], [WARN])
    assert fired == [[("fire", "warn")]]
    kinds, state = run([10] * 4 + [30], [WARN], acks={WARN_KEY}, state=state, start=T0 + STEP)
    assert kinds == [[], [], [], [], [("resolve", "warn")]]
    # the store drops the ack with the resolve; a new fire is announced as usual
    kinds, _ = run([10], [WARN], state=state, start=T0 + 6 * STEP)
    assert kinds == [[("fire", "warn")]]


def test_an_ack_also_stops_the_reminder_after_a_snooze_or_an_inhibition_ends():
    _, state = run([10], [WARN])
    snoozed = [Silence(T0 + 3 * STEP, "ann", "main")]
    kinds, _ = run([10] * 4, [WARN], snoozed, acks={WARN_KEY}, state=state, start=T0 + STEP)
    assert kinds == [[], [], [], []]
    _, state = run([15], [WARN, CRIT])
    kinds, _ = run([3, 3, 15, 15], [WARN, CRIT], acks={WARN_KEY}, state=state, start=T0 + STEP)
    assert kinds == [[("fire", "crit")], [], [("resolve", "crit")], []]


def test_a_held_reminder_after_a_held_fire_is_released_as_the_fire():
    fire, remind = event(), replace(event(EventKind.REMIND), value=12.0)
    rows = [held_row(1, fire), held_row(2, remind), held_row(3, remind, destination="2")]
    (first, second) = release(rows, facts())
    assert [e.kind for e in first.events] == [EventKind.FIRE]
    assert first.events[0].value == 12.0  # with the latest figures
    assert [e.kind for e in second.events] == [EventKind.REMIND]  # it heard the fire


def test_an_alert_its_rule_no_longer_makes_is_not_listed_as_firing():
    from bot.app.views import firing_events
    from bot.engine.model import AlertState
    from bot.engine.rules import shape

    key = AlertKey("warn", "main", "k1")
    was = rule(name="warn", target="key", below=20, recover_above=25)
    state = EngineState({key: AlertState(key, True, 1, 5.0, T0, T0, shape(was))})
    latest = {"main": snap(100, T0)}.get
    assert [e.subject for e in firing_events(state, [was], latest, T0)[0]] == ["k1"]
    # now a total rule under the same name: no "still firing" ghost, no /status line
    assert firing_events(state, [WARN], latest, T0)[0] == []
    elsewhere = rule(name="warn", target="key", below=20, recover_above=25, accounts=["other*"])
    assert firing_events(state, [elsewhere], latest, T0)[0] == []


# --- critical inhibits warning -------------------------------------------------------


def test_warning_and_critical_crossing_in_one_poll_announce_only_the_critical():
    kinds, state = run([3, 3, 3], [WARN, CRIT])
    assert kinds == [[("fire", "crit")], [], [("remind", "crit")]]
    assert state.alerts[WARN_KEY].firing and state.alerts[WARN_KEY].held


def test_when_the_critical_resolves_a_never_announced_warning_fires_once():
    kinds, _ = run([3, 3, 12, 12, 12], [WARN, CRIT])
    assert kinds == [
        [("fire", "crit")],
        [],
        [("resolve", "crit"), ("fire", "warn")],
        [],
        [("remind", "warn")],
    ]


def test_an_announced_warning_goes_quiet_under_a_critical_and_gets_a_reminder_after():
    kinds, _ = run([15, 3, 3, 3, 12], [WARN, CRIT])
    assert kinds == [
        [("fire", "warn")],
        [("fire", "crit")],
        [],
        [("remind", "crit")],
        [("resolve", "crit"), ("remind", "warn")],
    ]


def test_a_key_named_total_does_not_inhibit_the_total():
    key = rule(name="key", target="key", below=2, recover_above=3, severity="critical")
    named_total = Snapshot("main", "user", 15, 10.0, 5, (KeyBalance("total", 1.0, 1.0),), T0)
    _, events = evaluate({"main": named_total}, [WARN, key], EngineState(), Context(T0, 3, {}))
    assert sorted((e.kind.value, e.rule, e.target) for e in events) == [
        ("fire", "key", "key"),
        ("fire", "warn", "total"),
    ]


def test_inhibition_works_across_rule_kinds_and_only_on_the_same_subject():
    runway = build_rule({"name": "runway", "target": "total", "days_left_below": 3})
    key = rule(name="key", target="key", below=2, recover_above=3, severity="critical")
    burning = Context(T0, 3, {"main": Flow(Figures(10.0, {}))})  # $10/day: 0.3 days left
    rules = [runway, key, CRIT]
    one_key = Snapshot("main", "user", 3, 10.0, 5, (KeyBalance("k", 1.0, 1.0),), T0)
    _, events = evaluate({"main": one_key}, rules, EngineState(), burning)
    # the critical on the total silences the forecast warning on the total, not the key's
    assert sorted((e.kind.value, e.rule) for e in events) == [("fire", "crit"), ("fire", "key")]
    _, events = evaluate({"main": one_key}, [runway, key], EngineState(), burning)
    assert sorted(e.rule for e in events) == ["key", "runway"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 40, allow_nan=False), min_size=1, max_size=30))
def test_a_snooze_over_everything_sends_no_fire_or_reminder_and_resolves_still_go(values):
    silence = Silence(T0 + timedelta(days=365), "ann", "*")
    kinds, _ = run(values, [WARN, CRIT], [silence])
    plain, _ = run(values, [WARN, CRIT])
    sent = [k for poll in kinds for k, _ in poll]
    assert "fire" not in sent and "remind" not in sent
    # resolves go out exactly where they would without the snooze
    resolves = [[e for e in poll if e[0] == "resolve"] for poll in kinds]
    assert resolves == [[e for e in poll if e[0] == "resolve"] for poll in plain]


# --- routing -------------------------------------------------------------------------


def event(kind=EventKind.FIRE, severity=Severity.WARNING, rule_name="warn", notify=()):
    return Event(
        kind,
        "main",
        T0,
        severity,
        rule_name,
        "total",
        "total",
        value=10.0,
        usd=10.0,
        threshold=20.0,
        recover_at=25.0,
        notify=tuple(notify),
    )


ROUTER = Router(
    {"telegram": ["1", "2"], "slack": ["C1"]},
    {"telegram": {"oncall": ["9"]}, "slack": {"oncall": ["C9"]}},
)


def facts(now=T0, firing=(WARN_KEY,), hours=None, unavailable=(), silences=()):
    """What the suppression decision reads: `firing` alerts, nothing snoozed."""
    alerts = {k: AlertState(k, True, 1, 10.0, now, now) for k in firing}
    window = hours.window(now) if hours else None
    return Facts(now, {}, alerts, silences, (), window, unavailable)


EVERYTHING = (Silence(T0 + timedelta(days=365), "ann", "*"),)


def urgent(event, told_at, quiet_since):
    """Whether `event` goes at once in quiet hours that began at `quiet_since`."""
    at = replace(facts(), quiet=(quiet_since, quiet_since + timedelta(hours=9)))
    return waits(Say(event.kind), event.alert, event.severity, told_at, at) is None


def queues(items):
    return sorted((i.notifier, i.destination, i.hold_until is not None) for i in items)


def test_a_group_reaches_only_its_chats():
    fire = event(notify=["telegram:oncall"])
    assert queues(ROUTER.route([fire], {}, facts())) == [("telegram", "9", False)]
    both = event(notify=["telegram", "slack:oncall"])
    assert queues(ROUTER.route([both], {}, facts())) == [
        ("slack", "C9", False),
        ("telegram", "1", False),
        ("telegram", "2", False),
    ]


def test_a_resolve_goes_only_where_its_fire_or_a_reminder_went():
    told = {(WARN_KEY, "telegram", "2"): T0, (WARN_KEY, "slack", "C9"): T0}
    resolve = event(EventKind.RESOLVE)
    assert queues(ROUTER.route([resolve], told, facts(firing=()))) == [
        ("slack", "C9", False),
        ("telegram", "2", False),
    ]
    assert ROUTER.route([resolve], {}, facts(firing=())) == []


# --- quiet hours ---------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = QuietHours(time(22), time(7), BERLIN)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=BERLIN)


def test_quiet_hours_wrap_past_midnight_in_the_timezone():
    start, end = NIGHT.window(local(10, 23)) or (None, None)
    assert (start, end) == (local(10, 22), local(11, 7))
    assert NIGHT.window(local(11, 3)) == (local(10, 22), local(11, 7))
    assert NIGHT.window(local(11, 7)) is None  # [start, end)
    assert NIGHT.window(local(11, 21, 59)) is None
    day = QuietHours(time(12), time(13, 30), ZoneInfo("UTC"))
    assert day.window(datetime(2026, 1, 1, 12, 30, tzinfo=UTC)) is not None
    assert day.window(datetime(2026, 1, 1, 13, 30, tzinfo=UTC)) is None


def test_quiet_hours_across_a_dst_change_end_at_local_seven():
    # Europe/Berlin springs forward on 2026-03-29 at 02:00
    start, end = NIGHT.window(local(29, 1)) or (None, None)
    assert end == local(29, 7) and (end - start) == timedelta(hours=8)


def test_in_quiet_hours_warnings_wait_critical_and_unavailable_go_at_once():
    quiet = Router({"telegram": ["1"]}, quiet=NIGHT)
    now = local(10, 23)
    warning, critical = event(), event(severity=Severity.CRITICAL, rule_name="crit")
    outage = Event(EventKind.UNAVAILABLE, "main", now, reason="HTTP 500")
    crit_key = AlertKey("crit", "main", "total")
    at = facts(now, (WARN_KEY, crit_key), NIGHT, unavailable=("main",))
    items = quiet.route([warning, critical, outage], {}, at)
    at_once = next(i for i in items if i.hold_until is None)
    held = next(i for i in items if i.hold_until is not None)
    assert [e.kind for e in at_once.events] == [EventKind.FIRE, EventKind.UNAVAILABLE]
    assert at_once.events[0].severity is Severity.CRITICAL
    assert held.events == (warning,) and held.hold_until == local(11, 7)


def test_a_resolve_goes_at_once_only_if_its_fire_went_out_in_these_quiet_hours():
    assert urgent(event(EventKind.RESOLVE), local(10, 22, 30), local(10, 22))
    assert not urgent(event(EventKind.RESOLVE), local(10, 21), local(10, 22))
    assert not urgent(event(EventKind.RESOLVE), None, local(10, 22))
    assert not urgent(event(EventKind.REMIND), None, local(10, 22))
    assert urgent(event(EventKind.REMIND, Severity.CRITICAL), None, local(10, 22))


def held_row(row_id: int, *events: Event, destination: str = "1") -> OutboxRow:
    return OutboxRow(row_id, T0, "telegram", destination, tuple(events), 0, 0, T0)


def test_release_sends_the_latest_held_event_per_alert_leaving_out_what_no_longer_holds():
    fire, remind = event(), event(EventKind.REMIND)
    other = event(rule_name="other")
    rows = [held_row(1, fire, other), held_row(2, remind), held_row(3, event(), destination="2")]
    firing = {WARN_KEY}  # "other" resolved meanwhile: its fire vanishes with its resolve
    (first, second) = release(rows, facts(firing=firing))
    # the latest held event, as a fire: that destination never heard the fire itself
    assert (first.destination, first.events) == ("1", (replace(remind, kind=EventKind.FIRE),))
    assert second.destination == "2" and not second.hold_until
    snoozed = release(rows, facts(firing=firing, silences=EVERYTHING))
    assert snoozed == []


def test_a_held_resolve_and_data_back_still_hold_unless_things_changed():
    resolve = event(EventKind.RESOLVE)
    back = Event(EventKind.AVAILABLE, "main", T0)
    assert may_release(resolve, facts(firing=()))
    assert not may_release(resolve, facts(firing={WARN_KEY}))  # fires again
    assert may_release(back, facts(firing=()))
    assert not may_release(back, facts(firing=(), unavailable={"main"}))


# --- config ----------------------------------------------------------------------------

BASE = """
[[accounts]]
name = "main"
key = "k"
[[rules]]
name = "low"
target = "total"
below = 5
notify = ["telegram:oncall"]
[notifiers.telegram]
token = "1:x"
chat_ids = [1]
"""


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("", "rules[0].notify[0]", "has no group 'oncall' (groups: none)"),
        ("[notifiers.telegram.groups]\nops = [2]", "rules[0].notify[0]", "(groups: ops)"),
        ('[notifiers.telegram.groups]\n"on call" = [2]', "groups", "pattern"),
        ("[notifiers.telegram.groups]\noncall = []", "oncall", "at least 1"),
    ],
)
def test_an_unknown_or_bad_group_is_an_error_at_its_path(text, where, problem):
    with pytest.raises(ConfigError) as caught:
        parse(BASE + text)
    assert where in str(caught.value) and problem in str(caught.value)


def test_a_known_group_is_accepted():
    cfg = parse(BASE + "[notifiers.telegram.groups]\noncall = [-100]")
    assert cfg.rules[0].notify == ("telegram:oncall",)


@pytest.mark.parametrize(
    ("value", "problem"),
    [("22:00", "HH:MM-HH:MM"), ("22:00-22:00", "the same"), ("25:00-07:00", "25:00")],
)
def test_bad_quiet_hours_are_an_error_naming_the_field(value, problem):
    with pytest.raises(ConfigError) as caught:
        parse(f'[bot]\nquiet_hours = "{value}"\n' + BASE.replace(':oncall"', '"'))
    assert "bot.quiet_hours" in str(caught.value) and problem in str(caught.value)


def test_quiet_hours_parse_with_seconds():
    cfg = parse('[bot]\nquiet_hours = "22:00-07:00:30"\n' + BASE.replace(':oncall"', '"'))
    assert cfg.bot.quiet == (time(22), time(7, 0, 30))


# --- messages that follow their alerts ------------------------------------------------


def sent_message(alerts, events, resolved=None) -> SentMessage:
    return SentMessage(
        "telegram", "1", 7, 0, "42", MessageKind.ALERTS, tuple(events), tuple(alerts),
        resolved or {}, 3,
    )  # fmt: skip


def test_the_edit_says_who_snoozed_until_when_and_keeps_the_buttons():
    fire = event()
    sent = sent_message([WARN_KEY], [fire])
    silence = Silence(T0 + timedelta(hours=1), "@ann", alerts=frozenset({WARN_KEY}))
    edit = follow_up(sent, [silence], {}, T0, ZoneInfo("UTC"))
    assert edit.edit_of == 3 and edit.message is not None
    lines = edit.message.plain_lines()
    assert "🔕 Snoozed by @ann until 2026-01-01 01:00 UTC" in lines
    assert edit.message.actions and edit.message.ref == "7.0"


def test_the_edit_after_resolution_drops_the_buttons_only_when_all_resolved():
    other = AlertKey("other", "main", "total")
    events = [event(), event(rule_name="other")]
    sent = sent_message([WARN_KEY, other], events)
    acks = {other: Ack(other, "@bob", T0)}
    partly = follow_up(sent, [], acks, T0, ZoneInfo("UTC"), resolving={WARN_KEY})
    assert partly.message is not None and partly.message.actions
    assert "✅ Resolved: main / total" in partly.message.plain_lines()
    assert "☑️ Acknowledged by @bob" in partly.message.plain_lines()  # all that is open
    done = follow_up(sent, [], {}, T0, ZoneInfo("UTC"), resolving={WARN_KEY, other})
    assert done.message is not None and not done.message.actions
    assert "✅ Resolved (2026-01-01 00:00 UTC)" in done.message.plain_lines()


def test_buttons_carry_short_data_only_on_pieces_that_announce():
    message = Message("t", (), actions=events_message([event()]).actions, ref="123456789")
    pressable = buttons(message, 3, [alert_ref(WARN_KEY)])
    assert [d for _, d in pressable] == ["s1h:123456789.3", "s1d:123456789.3", "ack:123456789.3"]
    assert all(len(d.encode()) <= 64 for _, d in pressable)
    assert buttons(message, 0, ["event:resolve:x"]) == []
    assert buttons(Message("t", (), actions=message.actions), 0, [alert_ref(WARN_KEY)]) == []


def test_an_edit_that_grew_past_the_limit_is_trimmed_to_one_piece():
    lines = tuple((Span("x" * 120),) for _ in range(60))
    notes = Section("", ((Span("🔕 Snoozed by @ann until later"),),))
    message = Message("title", (Section("heading", lines), notes))
    assert len(render_pieces(message)) > 1
    keep = 60
    while len(render_pieces(trimmed(message, keep))) > 1:
        keep -= 1
    shown = render_pieces(trimmed(message, keep))[0][0]
    assert f"… {60 - keep} more lines not shown" in shown and "Snoozed by @ann" in shown


# --- the store ------------------------------------------------------------------------


async def test_silences_acks_and_messages_survive_reopening(tmp_path):
    path = tmp_path / "state.db"
    store = Store.open(path)
    silence_id = await store.add_silence(Silence(T0 + STEP, "@ann", "main/*"), T0)
    await store.add_silence(Silence(T0 + STEP, "@bob", alerts=frozenset({WARN_KEY})), T0)
    await store.add_acks([Ack(CRIT_KEY, "@cy", T0)])
    sent = sent_message([WARN_KEY], [event()])
    message_id = await store.record_message(sent, T0)
    await store.close()

    store = Store.open(path)
    silences = await store.silences(T0)
    assert [(s.who, s.pattern, s.alerts) for s in silences] == [
        ("@ann", "main/*", frozenset()),
        ("@bob", "", frozenset({WARN_KEY})),
    ]
    assert await store.silences(T0 + STEP) == []  # ended
    assert await store.acks() == {CRIT_KEY: Ack(CRIT_KEY, "@cy", T0)}
    found = await store.sent_message("telegram", 7, 0)
    assert found is not None and found.id == message_id and found.alerts == (WARN_KEY,)
    assert found.events == sent.events and found.platform_id == "42"
    assert [m.id for m in await store.messages_of([WARN_KEY])] == [message_id]
    await store.end_silences([silence_id], T0)
    assert [s.who for s in await store.silences(T0)] == ["@bob"]
    await store.close()
