"""Message wording (README, "How alerts behave"), independent of any platform."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.engine.model import Event, EventKind, KeyBalance, Severity, Snapshot
from bot.notifiers.message import keys_in, plain
from bot.notify.render import (
    MARK,
    AccountView,
    SpendView,
    balance_message,
    event_line,
    events_message,
    spend_message,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def alert(
    kind=EventKind.FIRE,
    severity=Severity.CRITICAL,
    target="key",
    subject="prod-api",
    usd=1.42,
    threshold=2.0,
    recover=3.0,
    since=T0,
    at=T0,
    reason="",
    unit="usd",
    value=None,
):
    return Event(
        kind,
        "main",
        at,
        severity,
        "rule",
        target,
        subject,
        unit,
        usd if value is None else value,
        usd,
        threshold,
        recover,
        since,
        reason,
    )


def test_fire_text_matches_the_spec_example():
    assert plain(event_line(alert())) == (
        "CRITICAL · main / key prod-api: $1.42 left (below $2.00; resolves at $3.00)"
    )


def test_resolved_text_names_value_and_duration():
    e = alert(
        EventKind.RESOLVE,
        Severity.WARNING,
        usd=26.0,
        threshold=20,
        recover=25.0,
        at=T0 + timedelta(hours=2, minutes=14),
    )
    assert plain(event_line(e)).startswith(
        "RESOLVED · main / key prod-api: $26.00 (at or above $25.00) after 2h 14m"
    )


def test_percent_rule_and_total_subject():
    e = alert(
        target="total",
        subject="total",
        unit="percent",
        value=8.5,
        usd=17.0,
        threshold=10,
        recover=15,
    )
    assert plain(event_line(e)) == (
        "CRITICAL · main / total: $17.00 (8.5%) left (below 10.0%; resolves at 15.0%)"
    )


def test_reminder_and_removed_key_and_data_events():
    remind = alert(EventKind.REMIND, at=T0 + timedelta(hours=12))
    assert plain(event_line(remind)).startswith("REMINDER · CRITICAL · main / key prod-api")
    assert plain(event_line(remind)).endswith("firing for 12h 0m")
    gone = alert(EventKind.RESOLVE, reason="key removed", at=T0 + timedelta(minutes=5))
    # SPEC 6: resolved text carries no severity suffix
    assert plain(event_line(gone)) == "RESOLVED · main / key prod-api: key removed after 5m"
    down = Event(
        EventKind.UNAVAILABLE, "main", T0, reason="HTTP 502 from x/user/quota", value=3, since=T0
    )
    assert "DATA UNAVAILABLE · main: HTTP 502 from x/user/quota (3 failed polls in a row)" in plain(
        event_line(down)
    )
    back = Event(EventKind.AVAILABLE, "main", T0 + timedelta(minutes=15), usd=26.0, since=T0)
    assert plain(event_line(back)) == "DATA BACK · main: balance $26.00 after 15m without data"


def test_a_cycle_is_one_message_critical_first():
    events = [
        alert(EventKind.RESOLVE, Severity.WARNING, subject="b"),
        alert(severity=Severity.WARNING, subject="w"),
        alert(subject="c"),
    ]
    msg = events_message(events)
    assert msg.title == "CometAPI balance: 1 critical, 1 warning, 1 resolved"
    # SPEC 6: the severity is said once per line; headings carry none
    assert [s.heading for s in msg.sections] == ["🔔 Firing", "✅ Resolved"]
    lines = msg.plain_lines()
    assert lines.index("CRITICAL · main / key c: $1.42 left (below $2.00; resolves at $3.00)") < (
        lines.index("WARNING · main / key w: $1.42 left (below $2.00; resolves at $3.00)")
    )
    assert msg.severity is Severity.CRITICAL


def test_long_names_are_cut():
    e = alert(subject="k" * 5000)
    assert len(plain(event_line(e))) < 400


def test_balance_view_sorts_keys_marks_firing_and_shows_age():
    snap = Snapshot(
        "main",
        "example_user",
        2105.234088,
        21.065912,
        1221,
        (
            KeyBalance("b", 10, 0),
            KeyBalance("unl", 999999999, -1),
            KeyBalance("a", 8.55, 1.45),
            KeyBalance("c", 8.93872, 2.1),
        ),
        T0,
    )
    msg = balance_message(
        [AccountView("main", snap, False, frozenset({"a"}))],
        T0 + timedelta(seconds=90),
        ZoneInfo("Europe/Berlin"),
    )
    (section,) = msg.sections
    lines = [plain(line) for line in section.lines]
    assert section.heading == "main (example_user)"
    assert lines[0] == "Balance: $2,105.23"
    assert lines[1] == "Used: $21.07 · Requests: 1,221"
    assert lines[2] == "Burn: gathering data"  # the view has no rate yet
    assert lines[4:8] == [
        f"{MARK} a: $8.55 left, $1.45 used",
        "c: $8.94 left, $2.10 used",
        "b: $10.00 left, $0.00 used",
        "unl: unlimited",
    ]
    assert lines[-1] == "Data from 2026-01-01 13:00 CET (1m ago)"


def test_balance_view_after_a_failed_fetch_shows_last_good_data():
    snap = Snapshot("main", "", 5, 1, None, (), T0)
    msg = balance_message(
        [AccountView("main", snap, True, frozenset(), "HTTP 502")],
        T0 + timedelta(hours=3),
        ZoneInfo("UTC"),
    )
    lines = [plain(line) for line in msg.sections[0].lines]
    assert lines[0] == "⚠️ fetch failed: HTTP 502"
    assert lines[1] == f"{MARK} Balance: $5.00"
    assert lines[-1].endswith("(3h 0m ago)")


def _big(account: str, count: int) -> Snapshot:
    keys = tuple(KeyBalance(f"key-{i:05d}-{'x' * 20}", 50 + i % 997, 1) for i in range(count))
    unlimited = (KeyBalance("zz-unlimited", 999999999, -1),)
    return Snapshot(account, "", 100, 1, None, keys + unlimited, T0)


def test_a_balance_answer_is_the_same_size_for_20000_keys_as_for_5000():
    """Issue 20, defect 3: /balance built (and the chat rendered) a line per key,
    then sent five messages of them; it builds only what five can show."""
    sizes = []
    for count in (5_000, 20_000):
        msg = balance_message([AccountView("main", _big("main", count))], T0, ZoneInfo("UTC"))
        (section,) = msg.sections
        lines = [plain(line) for line in section.lines]
        shown = [line for line in lines if line.startswith("key-")]
        assert lines[3] == f"Keys ({count + 1}):"
        assert f"… {count + 1 - len(shown)} more keys not shown" == lines[-2]
        assert shown[0].startswith("key-00000-") and ": $50.00 left" in shown[0]  # lowest first
        assert sum(keys_in(ref) for ref in section.refs) == count + 1  # every key counted
        sizes.append(sum(len(line) for line in lines))
    assert abs(sizes[0] - sizes[1]) < 10 and sizes[1] < 70_000  # the counts have a digit more


def test_a_cut_answer_suggests_one_account_only_when_it_shows_several():
    one = balance_message([AccountView("main", _big("main", 10))], T0, ZoneInfo("UTC"))
    two = balance_message(
        [AccountView(a, _big(a, 10)) for a in ("main", "other")], T0, ZoneInfo("UTC")
    )
    assert one.narrower == ""
    assert two.narrower == "ask for one account: {command} <account>"


# --- wording a newcomer stumbled on (issue 20) ----------------------------------------


def test_a_percent_resolve_has_one_parenthesis():
    e = alert(
        EventKind.RESOLVE,
        target="total",
        subject="total",
        unit="percent",
        value=47.9,
        usd=9.0,
        threshold=20,
        recover=30,
        at=T0 + timedelta(hours=2, minutes=14),
    )
    assert plain(event_line(e)) == (
        "RESOLVED · main / total: $9.00, 47.9% (at or above 30.0%) after 2h 14m"
    )


def test_a_reminder_under_a_minute_says_no_firing_for():
    soon = alert(EventKind.REMIND, since=T0, at=T0 + timedelta(seconds=20))
    assert "firing for" not in plain(event_line(soon))
    assert plain(event_line(soon)).endswith("(below $2.00; resolves at $3.00)")
    later = alert(EventKind.REMIND, since=T0, at=T0 + timedelta(minutes=3))
    assert plain(event_line(later)).endswith(", firing for 3m")


def test_resolves_of_two_rules_on_one_subject_name_their_rules():
    at = T0 + timedelta(minutes=5)
    low = replace(alert(EventKind.RESOLVE, reason="key removed", at=at), rule="key-low")
    empty = replace(low, rule="key-empty", severity=Severity.WARNING)
    other = replace(low, subject="batch")  # alone on its subject: as SPEC 6 writes it
    lines = events_message([low, empty, other]).plain_lines()
    assert "RESOLVED · main / key prod-api (key-low): key removed after 5m" in lines
    assert "RESOLVED · main / key prod-api (key-empty): key removed after 5m" in lines
    assert "RESOLVED · main / key batch: key removed after 5m" in lines
    alone = events_message([low]).plain_lines()
    assert "RESOLVED · main / key prod-api: key removed after 5m" in alone


def spend(covered: float, spent: float | None = 12.0, rate: float | None = None) -> list[str]:
    view = SpendView("main", 7 * 86400, covered, spent, 100.0, rate)
    return spend_message([view], "7d").plain_lines()


def test_spend_says_how_long_the_history_covers_in_hours_under_a_day():
    assert "History covers 2h 10m of it" in spend(2 * 3600 + 600)
    assert "History covers 1.2 days of it" in spend(1.2 * 86400)
    assert "History covers none of it" in spend(0, spent=None)


def test_spend_shows_the_burn_rate_it_is_given_gathering_data_like_balance():
    assert "Burn: gathering data" in spend(600, spent=0.0, rate=None)
    assert "Burn: $24.00/day, ≈ 4.2 days left" in spend(86400, rate=24.0)
