"""Burn rates, spending and days left (README, "Forecasts and digest"): the pure
functions by property and by example, the history that feeds them, the rules
that use them."""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app.history import History, advance
from bot.engine.forecast import (
    DAY,
    DailyUse,
    Point,
    accumulate,
    burn_rate,
    counter_at,
    seeded_rates,
    spent_between,
    spent_within,
)
from bot.engine.model import EngineState, EventKind, Figures, Flow, KeyBalance, Snapshot, days_left
from bot.notify.plan import Context, evaluate
from bot.state.sqlite import samples as samples_mod
from bot.state.sqlite.store import Store
from bot.state.types import Commit
from bot.upstream.cometapi import parse_daily
from bot.upstream.transport import FetchError
from tests.helpers import T0, rule

STEP = 300.0  # five minutes between polls
WINDOW = DAY


def used_series(amounts: list[float], start: float = 0.0) -> list[tuple[float, float]]:
    """(time, used) every STEP seconds, the used figure growing by each amount."""
    used, out = 0.0, []
    for i, amount in enumerate(amounts):
        used += amount
        out.append((start + i * STEP, used))
    return out


# --- properties ---------------------------------------------------------------------------

amounts = st.lists(st.floats(0, 50, allow_nan=False), min_size=2, max_size=400)


@settings(max_examples=200, deadline=None)
@given(amounts, st.lists(st.floats(0, 1e6, allow_nan=False), min_size=400, max_size=400))
async def test_a_top_up_never_changes_a_rate(spend, top_ups):
    """Balances with top-ups between the polls, or without: the same history
    and the same rates (top-ups raise the balance, never the used figures)."""
    series = used_series(spend)
    balance, topped = 1000.0, 1000.0
    window = 2 * DAY  # the whole series falls inside it: every rate comes from the ledgers
    plain_history = History(_NoReader(), window, [3600.0], STEP)  # type: ignore[arg-type]
    topped_history = History(_NoReader(), window, [3600.0], STEP)  # type: ignore[arg-type]
    for i, (at, used) in enumerate(series):
        balance -= spend[i]
        topped += top_ups[i] - spend[i]
        key = [KeyBalance("k", 5, used)]
        a = plain_history.record(snap(at, used, key, total=balance))
        b = topped_history.record(snap(at, used, key, total=topped))
        assert (a.spent, list(a.keys)) == (b.spent, list(b.keys))
    now = snap(series[-1][0], 0, []).fetched_at
    for history in (plain_history, topped_history):
        await history.advance(now)
    one, two = await plain_history.flow("main", now), await topped_history.flow("main", now)
    if len(series) * STEP >= window / 4:
        assert one.burn.total is not None
    assert one.burn.total == two.burn.total and one.burn.keys["k"] == two.burn.keys["k"]
    assert one.spent[3600.0].total == two.spent[3600.0].total


class _NoReader:
    """History with nothing stored yet: every sample is in the ledgers."""

    async def newest_before(self, at, accounts=None):
        return {}

    async def first_time_after(self, at):
        return None

    async def first_after(self, account, at):
        return None

    async def between(self, after, upto):
        return []


@settings(max_examples=300, deadline=None)
@given(amounts, st.integers(1, 399))
def test_a_counter_reset_never_makes_a_rate_negative(spend, reset_at):
    series = used_series(spend)
    reset_at = min(reset_at, len(series) - 1)
    dropped = [
        (t, u if i < reset_at else u - series[reset_at][1]) for i, (t, u) in enumerate(series)
    ]
    points = accumulate(dropped)
    assert all(b.spent >= a.spent for a, b in itertools.pairwise(points))
    now = series[-1][0]
    for window in (STEP, 6 * STEP, WINDOW):
        rate = burn_rate(points, now, window)
        assert rate is None or rate >= 0


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 100, allow_nan=False), st.integers(2, 400), st.floats(0, 1e9, allow_nan=False))
def test_constant_spending_gives_the_exact_rate(per_poll, polls, start):
    points = accumulate(used_series([per_poll] * polls, start))
    now = start + (polls - 1) * STEP
    window = min(WINDOW, (polls - 1) * STEP)
    rate = burn_rate(points, now, window)
    assert rate == pytest.approx(per_poll / STEP * DAY, rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e6, 1e12, allow_nan=False))
def test_days_left_of_a_zero_rate_is_never_finite(remaining):
    left = days_left(remaining, 0.0)
    assert left is not None and math.isinf(left)
    assert days_left(min(remaining, 0.0), 1.0) == 0.0  # spending, nothing left: none


# --- examples --------------------------------------------------------------------------


def test_gathering_data_until_a_quarter_of_the_window():
    points = accumulate(used_series([1.0] * 10))  # 45 minutes
    assert spent_within(points, 45 * 60, 4 * 3600) is None  # < 1 h of a 4 h window
    assert spent_within(points, 45 * 60, 3 * 3600) is not None  # >= 45 min of 3 h


def test_one_sample_only_is_gathering_data():
    assert spent_within([Point(0.0, 0.0)], 0.0, WINDOW) is None
    assert spent_within([], 0.0, WINDOW) is None


def test_zero_spending_is_a_zero_rate_and_not_depleting():
    points = accumulate(used_series([0.0] * 300))
    rate = burn_rate(points, 299 * STEP, WINDOW)
    assert rate == 0.0 and math.isinf(days_left(50, rate))  # type: ignore[arg-type]


def test_a_day_of_downtime_does_not_look_like_a_spike():
    """Polls stop for a day, the used figure rose by $24 meanwhile: the pair that
    straddles the window start counts only its share inside the window."""
    before = [(t * STEP, t * 0.1) for t in range(100)]  # $0.10 per poll
    gap_end = before[-1][0] + DAY
    after = [(gap_end + t * STEP, before[-1][1] + 24 + t * 0.1) for t in range(3)]
    points = accumulate(before + after)
    now = after[-1][0]
    spend = spent_within(points, now, 3600.0)
    # the straddling pair spans a day and 10 min: its $24 spread evenly over it
    share = 24 * (3600 - 2 * STEP) / (DAY)
    assert spend is not None and spend.amount == pytest.approx(share + 0.2, rel=1e-6)


def test_counter_between_samples_and_spending_between_times():
    points = [Point(0, 0), Point(100, 10), Point(200, 30)]
    assert counter_at(points, 50) == 5 and counter_at(points, 150) == 20
    assert counter_at(points, -1) is None and counter_at(points, 999) == 30
    assert spent_between(points, 50, 150) == 15
    assert spent_between(points, -100, 50) == 5  # covered only from the first sample


def test_seeded_rates_per_day_with_missing_and_duplicated_names():
    days = [
        DailyUse(date(2026, 1, 1), 10.0, {"a": 6.0, "b": 4.0}),
        DailyUse(date(2026, 1, 2), 20.0, {"a": 20.0}, frozenset({"c"})),
    ]
    seeded = seeded_rates(days)
    assert seeded.total == 15.0 and seeded.keys == {"a": 13.0, "b": 2.0}
    assert seeded_rates([]) == Figures()


def daily_body(daily: object) -> bytes:
    return json.dumps({"total_quota": 10, "daily_quota": daily}).encode()


def test_daily_quota_is_read_for_the_days_asked_and_nothing_else():
    body = daily_body(
        {
            "2026-01-01": [{"token_name": "a", "quota_used": 1.5, "request_count": 3}],
            "2026-01-03": [{"token_name": "a", "quota_used": 2}],  # in the future: not asked
        }
    )
    days = parse_daily(body, date(2025, 12, 31), date(2026, 1, 2))
    assert [(d.day.day, d.total) for d in days] == [(31, 0.0), (1, 1.5), (2, 0.0)]
    # only days not asked for (today, the future), or none: no seed, not a seed of $0
    for daily in ({"2026-01-03": [{"token_name": "a", "quota_used": 2}]}, {}):
        with pytest.raises(FetchError, match="lists no day from 2025-12-31 to 2026-01-02"):
            parse_daily(daily_body(daily), date(2025, 12, 31), date(2026, 1, 2))


@pytest.mark.parametrize(
    "daily",
    [
        None,
        "yes",
        {"2026-01-01": "x"},
        {"2026-01-01": [{"token_name": "a", "quota_used": -1}]},
        {"2026-01-01": [{"token_name": "a", "quota_used": "lots"}]},
        {"2026-01-01": [3]},
    ],
    ids=["missing", "not a mapping", "day not a list", "negative", "not a number", "not an object"],
)
def test_a_malformed_daily_quota_is_rejected_whole(daily):
    with pytest.raises((FetchError, ValueError)):
        parse_daily(daily_body(daily), date(2026, 1, 1), date(2026, 1, 1))


# --- the history that feeds the rates -----------------------------------------------------


def snap(at: float, used: float, keys: list[KeyBalance], total: float = 100.0) -> Snapshot:
    from datetime import UTC, datetime

    return Snapshot("main", "u", total, used, 1, tuple(keys), datetime.fromtimestamp(at, UTC))


def test_the_ledger_counts_growth_only_and_starts_a_series_for_each_new_key():
    ledger, first = advance(None, snap(0, 10, [KeyBalance("a", 5, 1)]), 0)
    ledger, second = advance(ledger, snap(300, 12, [KeyBalance("a", 5, 3)]), 300)
    ledger, third = advance(ledger, snap(600, 2, [KeyBalance("a", 5, 0.5)]), 600)  # resets
    assert [s.spent for s in (first, second, third)] == [0, 2, 2]
    assert [s.key_spent("a", 0) for s in (first, second, third)] == [0, 2, 2]
    ledger, gone = advance(ledger, snap(900, 3, []), 900)  # the key disappears
    ledger, back = advance(ledger, snap(1200, 4, [KeyBalance("a", 5, 9)]), 1200)  # and returns
    assert gone.layout is None and back.key_spent("a", 0) is None
    assert back.key_spent("a", 1200) == 0  # a series of its own from its return
    _, unlimited = advance(ledger, snap(1500, 5, [KeyBalance("u", 999999999, -1)]), 1500)
    assert unlimited.layout is None  # unlimited keys have no rate


async def test_the_windowed_history_agrees_with_the_whole_series(tmp_path):
    """Rates from the state file, read a slice at a time, equal the reference
    computation over every sample, poll after poll, with keys coming and going,
    a counter reset and a top-up."""
    store = Store.open(tmp_path / "state.db")
    history = History(store.history, 2 * 3600.0, [1800.0], STEP)
    ledger = None
    series: list[Snapshot] = []
    try:
        for i in range(60):
            at = i * STEP
            used = 2.0 * i - (40 if i >= 30 else 0)  # a reset at poll 30
            keys = [KeyBalance("steady", 5, 0.5 * i)]
            if 10 <= i < 40:
                keys.append(KeyBalance("late", 5, 1.5 * (i - 10)))
            s = snap(at, used, keys, total=100 + (50 if i > 20 else 0))
            series.append(s)
            await history.advance(s.fetched_at)
            sample = history.record(s)
            flow = await history.flow("main", s.fetched_at)
            ledger, _ = advance(ledger, s, at)
            await store.commit_cycle(
                Commit(EngineState(), EngineState(), [s], [], s.fetched_at, [sample])
            )
            history.committed([sample], s.fetched_at)
            reference = accumulate([(x.fetched_at.timestamp(), x.total_used_quota) for x in series])
            assert flow.burn.total == burn_rate(reference, at, 2 * 3600.0)
            assert flow.spent[1800.0].total == _amount(reference, at, 1800.0)
            steady = accumulate([(x.fetched_at.timestamp(), x.keys[0].used_quota) for x in series])
            assert flow.burn.keys["steady"] == pytest.approx(burn_rate(steady, at, 7200.0))
            if 10 <= i < 40:
                late = accumulate(
                    [(x.fetched_at.timestamp(), x.keys[1].used_quota) for x in series[10:]]
                )
                assert flow.burn.keys["late"] == pytest.approx(burn_rate(late, at, 7200.0))
    finally:
        await store.close()


@pytest.mark.parametrize("restart", [False, True], ids=["polls-failing", "bot-restarted"])
async def test_after_a_gap_in_the_samples_the_history_agrees_with_the_whole_series(
    tmp_path, restart
):
    """An account with no samples for 10 hours (its polls failed while another
    account's went on, or the bot was down), then spending $10 a poll: the
    windows find the samples after the gap, so the spending since is not
    spread over the gap (a spike rule would never fire)."""
    from datetime import UTC, datetime

    path = tmp_path / "state.db"
    store = Store.open(path)
    history = History(store.history, 2 * 3600.0, [3600.0], STEP)
    used = {"a": 0.0, "b": 0.0}
    series: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}

    async def poll(at: float, accounts: dict[str, float]) -> dict[str, Flow]:
        now = datetime.fromtimestamp(at, UTC)
        await history.advance(now)
        snaps, samples, flows = [], [], {}
        for account, spend in accounts.items():
            used[account] += spend
            s = Snapshot(
                account, "u", 1e6, used[account], 1, (KeyBalance("k", 5, used[account]),), now
            )
            samples.append(history.record(s))
            snaps.append(s)
            flows[account] = await history.flow(account, now)
            series[account].append((at, used[account]))
        await store.commit_cycle(Commit(EngineState(), EngineState(), snaps, [], now, samples))
        history.committed(samples, now)
        return flows

    try:
        at = 0.0
        for _ in range(24):
            await poll(at, {"a": 0.1, "b": 0.1})
            at += STEP
        if restart:
            await store.close()
            store = Store.open(path)
            history = History(store.history, 2 * 3600.0, [3600.0], STEP)
            await history.restore(
                await store.load_snapshots(), datetime.fromtimestamp(at + 36000 - 1, UTC)
            )
            at += 36000
        else:
            for _ in range(120):  # b's polls fail
                await poll(at, {"a": 0.1})
                at += STEP
        for _ in range(12):
            flow = (await poll(at, {"a": 0.1, "b": 10.0} if not restart else {"b": 10.0}))["b"]
            reference = accumulate(series["b"])
            assert flow.spent[3600.0].total == pytest.approx(_amount(reference, at, 3600.0))
            assert flow.spent[3600.0].keys["k"] == pytest.approx(_amount(reference, at, 3600.0))
            assert flow.burn.total == pytest.approx(burn_rate(reference, at, 7200.0))
            at += STEP
        assert flow.spent[3600.0].total > 100  # 11 polls of $10 inside the hour
    finally:
        await store.close()


def _amount(points: list[Point], now: float, window: float) -> float | None:
    spend = spent_within(points, now, window)
    return spend.amount if spend else None


# --- old state files ------------------------------------------------------------------------


async def test_old_history_rows_become_samples_of_the_total(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    from bot.state.sqlite import schema

    for statement in schema.statements(schema.MIGRATIONS[0]):  # type: ignore[arg-type]
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    for i, used in enumerate([10, 12, 5, 6]):  # a counter reset between 12 and 5
        at = (T0 + timedelta(minutes=5 * i)).isoformat()
        db.execute("INSERT INTO history VALUES ('main', ?, 100, ?, 7)", (at, used))
        db.execute("INSERT INTO key_history VALUES ('main', ?, 'k', 1, ?)", (at, used))
    db.commit()
    db.close()
    store = Store.open(path)
    try:
        rows = store._conn.execute("SELECT spent, total, requests FROM samples ORDER BY at")
        assert rows.fetchall() == [
            (0.0, 100.0, 7),
            (2.0, 100.0, 7),
            (2.0, 100.0, 7),
            (3.0, 100.0, 7),
        ]
        tables = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master")}
        assert "history" not in tables and "key_history" not in tables
    finally:
        await store.close()


async def test_downsampling_keeps_the_last_sample_of_each_hour_and_day(tmp_path):
    store = Store.open(tmp_path / "state.db")
    now = T0.timestamp() + 40 * DAY
    try:
        rows = []
        for i in range(40 * 24 * 12):  # every 5 minutes for 40 days
            at = T0.timestamp() + i * STEP
            rows.append(("main", at, 100.0, float(i), None, float(i)))
        store._conn.executemany(
            "INSERT INTO samples (account, at, total, used, requests, spent) VALUES (?,?,?,?,?,?)",
            rows,
        )
        from datetime import UTC, datetime

        while await store.prune(datetime.fromtimestamp(now, UTC), history_days=30):
            pass
        ats = [r[0] for r in store._conn.execute("SELECT at FROM samples ORDER BY at")]
    finally:
        await store.close()
    full = [a for a in ats if a >= now - DAY]
    hourly = [a for a in ats if now - 14 * DAY <= a < now - DAY]
    daily = [a for a in ats if a < now - 14 * DAY]
    assert len(full) == 24 * 12 and min(ats) >= now - 30 * DAY
    assert len(hourly) == 13 * 24 and all(a % 3600 == 3600 - STEP for a in hourly)
    assert 15 <= len(daily) <= 16 and all(a % DAY == DAY - STEP for a in daily)
    assert [a for a in ats] == sorted(set(ats))
    assert samples_mod.FULL_FOR == DAY


# --- the rules that use them -------------------------------------------------------------


def flow(rate: float | None = None, spent: dict[float, Figures] | None = None) -> Flow:
    return Flow(Figures(rate, {}), spent or {})


def run_rule(r, flows: list[Flow], totals: list[float] | None = None):
    state, out = EngineState(), []
    for i, f in enumerate(flows):
        now = T0 + timedelta(minutes=5 * i)
        total = totals[i] if totals else 100.0
        s = Snapshot("main", "u", total, 1.0, 1, (), now)
        state, events = evaluate({"main": s}, [r], state, Context(now, 3, {"main": f}))
        out.append([(e.kind, e.gathering) for e in events])
    return out, state


def test_a_forecast_rule_fires_and_resolves_with_hysteresis():
    r = rule(below=None, recover_above=None, days_left_below=3)  # resolves at 4.5 days
    rates = [None, 50.0, 40.0, 25.0, 21.0, 0.0]  # $100 lasts 2, 2.5, 4, 4.76 days, forever
    kinds, _ = run_rule(r, [flow(x) for x in rates])
    assert kinds == [[], [(EventKind.FIRE, False)], [], [], [(EventKind.RESOLVE, False)], []]


def test_gathering_data_neither_fires_resolves_nor_counts_toward_for_polls():
    r = rule(below=None, recover_above=None, days_left_below=3, for_polls=2, repeat="5m")
    rates = [50.0, None, 50.0, None, None, 10.0]
    kinds, _ = run_rule(r, [flow(x) for x in rates])
    assert kinds == [
        [],
        [],  # gathering: the count of 1 is kept, not reset
        [(EventKind.FIRE, False)],
        [(EventKind.REMIND, True)],  # firing stays firing; the reminder says gathering data
        [(EventKind.REMIND, True)],
        [(EventKind.RESOLVE, False)],
    ]


def test_a_spend_rule_fires_above_and_resolves_at_or_below():
    r = rule(below=None, recover_above=None, spend_above=50, window="1h")  # resolves at 40
    spent = [None, 49.0, 50.5, 45.0, 40.0]
    flows = [flow(spent={3600.0: Figures(x, {})}) for x in spent]
    kinds, _ = run_rule(r, flows)
    assert kinds == [[], [], [(EventKind.FIRE, False)], [], [(EventKind.RESOLVE, False)]]


def test_a_threshold_alert_carries_the_forecast_where_known():
    _, events = evaluate(
        {"main": Snapshot("main", "u", 10.0, 1.0, 1, (), T0)},
        [rule()],
        EngineState(),
        Context(T0, 3, {"main": flow(4.0)}),
    )
    (fire,) = events
    assert fire.rate == 4.0 and fire.days == 2.5


def test_a_clock_stepping_back_keeps_samples_in_order_and_rates_sane():
    ledger, first = advance(None, snap(1000, 10, [KeyBalance("a", 5, 1)]), 1000)
    ledger, second = advance(ledger, snap(1300, 12, [KeyBalance("a", 5, 2)]), 1300)
    ledger, stepped = advance(ledger, snap(700, 13, [KeyBalance("a", 5, 3)]), 700)  # -10 min
    assert first.at < second.at < stepped.at == pytest.approx(1300.001)
    assert stepped.spent == 3 and stepped.key_spent("a", 1000) == 2
    points = [Point(s.at, s.spent) for s in (first, second, stepped)]
    rate = burn_rate(points, 700.0, 3600.0)  # "now" is behind the samples
    assert rate is None or rate >= 0
