"""The chart renderer (bot/app/chart.py): what a chart shows, worked out purely,
and the picture itself within SPEC 6b's limits; matplotlib is loaded only when a
chart is drawn."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import threading
from datetime import timedelta
from zoneinfo import ZoneInfo

from bot.app.chart import (
    MAX_POINTS,
    Chart,
    chart_of,
    firing_spans,
    money,
    render,
    render_async,
    thinned,
    total_levels,
)
from bot.engine.model import AlertKey, AlertState, EngineState, Severity
from bot.state.types import Sample
from tests.helpers import T0, rule
from tests.pngs import assert_chart, chunks, dimensions

BERLIN = ZoneInfo("Europe/Berlin")
NOW = T0 + timedelta(days=90)


def draining(days: float, step: float, start: float = 100.0, per_day: float = 10.0) -> list[Sample]:
    """A balance spending `per_day` from `start`, a sample every `step` seconds."""
    end = NOW.timestamp()
    out, at = [], end - days * 86400
    while at <= end:
        spent = per_day * (at - (end - days * 86400)) / 86400
        out.append(Sample("main", at, start - spent, spent, None, spent))
        at += step
    return out


def test_a_chart_shows_the_window_the_levels_and_the_numbers():
    rules = [
        rule(name="low", below=20.0, recover_above=25.0),
        rule(name="empty", below=5.0, recover_above=6.0, severity="critical"),
        rule(name="runway", below=None, recover_above=None, days_left_below=3),
        rule(name="elsewhere", accounts=["other"]),
    ]
    chart = chart_of("main", draining(8, 3600), rules, EngineState(), 10.0, NOW, "7d", BERLIN)
    assert chart is not None
    assert chart.start == NOW.timestamp() - 7 * 86400 <= chart.points[0][0]
    labels = [level.label for level in chart.levels]
    assert labels == [
        "low: below $20.00",
        "low: resolves at $25.00",
        "empty: below $5.00",
        "empty: resolves at $6.00",
        "runway: below 3 days ≈ $30.00",  # at the burn rate of $10/day
        "runway: resolves at 4.5 days ≈ $45.00",
    ]
    assert [level.recovery for level in chart.levels] == [False, True] * 3
    assert chart.balance == 20.0 and chart.days_left == 2.0
    assert chart.caption() == ("main · 7d", "balance $20.00 · burn $10.00/day · ≈ 2.0 days left")
    assert "from $90.00 to $20.00" in chart.alt()


def test_the_forecast_is_dashed_to_zero_or_to_the_edge():
    now = NOW.timestamp()
    fast = chart_of("main", draining(2, 600), [], EngineState(), 20.0, NOW, "30d", BERLIN)
    assert fast is not None and fast.balance == 80.0
    (start, balance), (end, reached) = fast.forecast()
    assert (start, balance) == (now, 80.0)
    assert (end, reached) == (now + 4 * 86400, 0.0)  # $80 at $20/day; the edge is 7.5 days on
    slow = chart_of("main", draining(2, 600), [], EngineState(), 1.0, NOW, "24h", BERLIN)
    assert slow is not None
    (_, _), (end, reached) = slow.forecast()
    assert end == slow.edge == now + 6 * 3600 and reached == 80.0 - 0.25  # the edge first
    for rate in (None, 0.0):
        idle = chart_of("main", draining(2, 600), [], EngineState(), rate, NOW, "24h", BERLIN)
        assert idle is not None and idle.forecast() is None


def test_no_history_in_the_window_is_no_chart():
    old = [Sample("main", NOW.timestamp() - 3 * 86400, 10.0, 0.0, None, 0.0)]
    assert chart_of("main", old, [rule()], EngineState(), None, NOW, "24h", BERLIN) is None
    assert chart_of("main", [], [rule()], EngineState(), None, NOW, "90d", BERLIN) is None


def test_captions_say_gathering_data_and_not_depleting():
    samples = draining(1, 600, per_day=0.0)
    gathering = chart_of("main", samples, [], EngineState(), None, NOW, "24h", BERLIN)
    idle = chart_of("main", samples, [], EngineState(), 0.0, NOW, "24h", BERLIN)
    assert gathering and gathering.caption()[1] == "balance $100.00 · burn rate: gathering data"
    assert idle and idle.caption()[1] == "balance $100.00 · burn $0.00/day · not depleting"


def test_money_in_the_accounts_currency():
    assert money(1234.5, "USD") == "$1,234.50"
    assert money(-2, "USD") == "-$2.00"
    assert money(1234.5, "eur") == "1,234.50 EUR"
    assert money(12, "CNY", 0) == "12 CNY"
    chart = chart_of(
        "main", draining(1, 600), [rule()], EngineState(), 10.0, NOW, "24h", BERLIN, "EUR"
    )
    assert chart and chart.caption()[1].startswith("balance 90.00 EUR · burn 10.00 EUR/day")
    assert chart.levels[0].label == "low: below 20.00 EUR"


def test_share_levels_are_of_the_accounts_size():
    share = rule(name="share", below=None, recover_above=None, below_percent=10)
    (low, high) = total_levels([share], "main", 60.0, 40.0, None, "USD")
    assert (low.value, high.value) == (10.0, 11.0)  # recovery: 1.1 x by default
    assert low.label == "share: below 10.0% ≈ $10.00"


def test_firing_spans_replay_the_hysteresis_and_add_what_fires_now():
    low = rule(name="low", below=20.0, recover_above=25.0)
    points = [(0, 30.0), (10, 19.0), (20, 22.0), (30, 26.0), (40, 18.0), (50, 17.0)]
    state = EngineState()
    spans = firing_spans(points, [low], "main", state, 60)
    assert [(s.start, s.end) for s in spans] == [(10, 30), (40, 60)]  # 22 is not recovery
    assert {s.severity for s in spans} == {Severity.WARNING}
    twice = rule(name="low", below=20.0, recover_above=25.0, for_polls=2)
    assert [(s.start, s.end) for s in firing_spans(points, [twice], "main", state, 60)] == [
        (50, 60)
    ]
    runway = rule(name="runway", below=None, recover_above=None, days_left_below=3)
    since = T0 + timedelta(seconds=5)
    key = AlertKey("runway", "main", "total")
    state.alerts[key] = AlertState(key, True, 1, 2.0, fired_at=since)
    (span,) = firing_spans(points, [runway], "main", state, 60)
    assert (span.start, span.end) == (since.timestamp(), 60)


def test_thinning_keeps_every_dip_and_top_up():
    points = [(float(i), 100.0 - i * 0.001) for i in range(86400)]
    points[40000] = (40000.0, 1.0)  # a dip under any threshold
    points[60000] = (60000.0, 500.0)  # a top-up
    thin = thinned(points)
    assert len(thin) <= MAX_POINTS + 2
    assert (40000.0, 1.0) in thin and (60000.0, 500.0) in thin
    assert thin[0] == points[0] and thin[-1] == points[-1]
    assert list(thin) == sorted(thin)


def test_the_picture_is_a_png_within_the_limits_in_both_themes():
    rules = [rule(name="low", below=20.0, recover_above=25.0)]
    samples = draining(90, 3600, start=950.0)  # 90 days of history
    for window in ("24h", "7d", "30d", "90d"):
        chart = chart_of("main", samples, rules, EngineState(), 10.0, NOW, window, BERLIN)
        assert chart is not None
        for theme in ("light", "dark"):
            png = render(chart, theme)
            assert_chart(png)
            assert dimensions(png) == (1200, 600)
    kinds = [kind for kind, _ in chunks(png)]
    assert b"tEXt" not in kinds  # no metadata beyond the picture


def test_themes_differ_and_the_light_one_is_an_opaque_card():
    chart = chart_of("main", draining(1, 600), [], EngineState(), 10.0, NOW, "24h", BERLIN)
    assert chart is not None
    light, dark = render(chart, "light"), render(chart, "dark")
    assert light != dark
    ihdr = dict(chunks(light))[b"IHDR"]
    assert ihdr[9] in (2, 6)  # truecolour (with alpha: matplotlib fills it opaque)


def test_a_chart_with_nothing_to_forecast_still_draws():
    flat = Chart(
        "main",
        ((NOW.timestamp() - 60, 5.0), (NOW.timestamp(), 5.0)),
        NOW.timestamp() - 86400,
        NOW.timestamp(),
        "24h",
        rate=None,
        balance=5.0,
    )
    assert_chart(render(flat))
    empty = Chart(
        "main",
        ((NOW.timestamp(), 0.0),),
        NOW.timestamp() - 86400,
        NOW.timestamp(),
        "24h",
        rate=3.0,
        balance=0.0,
    )
    assert empty.days_left == 0.0
    assert_chart(render(empty))
    overdrawn = Chart(
        "main",
        ((NOW.timestamp(), -4.0),),
        NOW.timestamp() - 86400,
        NOW.timestamp(),
        "24h",
        rate=math.inf,
        balance=-4.0,
    )
    assert_chart(render(overdrawn))


async def test_drawing_runs_in_its_own_thread_while_the_loop_goes_on():
    chart = chart_of("main", draining(1, 600), [], EngineState(), 10.0, NOW, "24h", BERLIN)
    assert chart is not None
    threads: list[str] = []
    import bot.app.chart as module

    original = module._draw

    def spy(*args):
        threads.append(threading.current_thread().name)
        return original(*args)

    module._draw = spy
    try:
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        beat = asyncio.create_task(ticker())
        png = await render_async(chart)
        beat.cancel()
    finally:
        module._draw = original
    assert_chart(png)
    assert threads and threads[0].startswith("chart") and threads[0] != "MainThread"
    assert ticks > 1  # the loop ran while the chart was drawn


def test_the_bot_does_not_load_matplotlib_until_it_draws():
    code = (
        "import sys\n"
        "import bot.cli, bot.app.service, bot.app.chart, bot.app.commands\n"
        "import bot.notifiers.telegram, bot.notifiers.slack, bot.ops.web\n"
        "assert not [m for m in sys.modules if m.startswith('matplotlib')], 'loaded'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
