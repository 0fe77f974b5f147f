"""`balance-bot demo`, as the README tells a newcomer to run it."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.app.clock import SimulatedClock, SimulatedTrigger, on_clock
from bot.app.demo import simulated_balance
from tests.process import BotProcess


def test_the_script_covers_fire_critical_resolve_and_outage():
    """`t` in simulated hours (one demo second each, at the default speed)."""
    assert simulated_balance(0)["total_quota"] > 20
    assert 10 < simulated_balance(15)["total_quota"] < 20
    assert simulated_balance(30)["total_quota"] < 10
    assert simulated_balance(50)["total_quota"] >= 25
    assert simulated_balance(65) is None
    assert simulated_balance(100)["total_quota"] == simulated_balance(0)["total_quota"]


async def test_demo_fires_a_real_alert_and_stops_cleanly():
    bot = await BotProcess("demo", env={"TELEGRAM_BOT_TOKEN": "", "SLACK_BOT_TOKEN": ""}).start()
    await bot.wait_for(
        lambda lines: any("WARNING · demo / total" in line for line in lines), within=30
    )
    await bot.wait_for(lambda lines: any("delivery.sent" in line for line in lines), within=10)
    assert await bot.stop() == 0
    assert "demo.started" in bot.stderr and "http.listening" in bot.stderr
    assert "http.status_page" in bot.stderr  # the status page is on, its address said
    assert "Traceback" not in bot.stderr


async def test_demo_with_a_bad_variable_or_option_says_so_in_one_line():
    bad_chat = {"TELEGRAM_BOT_TOKEN": "123456:" + "A" * 35, "TELEGRAM_CHAT_ID": "@mychannel"}
    for args, env, needle in (
        (("demo",), bad_chat, "notifiers.telegram.chat_ids[0]"),
        (("demo", "--interval", "soon"), {"TELEGRAM_BOT_TOKEN": ""}, "bot.interval"),
        (("demo", "--speed", "0"), {"TELEGRAM_BOT_TOKEN": ""}, "--speed"),
    ):
        bot = await BotProcess(*args, env=env).start()
        assert await bot.wait(30) == 3
        (line,) = [x for x in bot.stderr.splitlines() if "demo.invalid" in x]
        assert needle in line
        assert "Traceback" not in bot.stderr


def test_with_telegram_set_the_demo_still_logs_its_messages(monkeypatch, tmp_path):
    """Telegram (or Slack) joins in; the log notifier stays, for every rule and the digest."""
    from bot import config as config_mod
    from bot.app.demo import demo_config_text, with_log
    from bot.app.fleet import active_notifier_names

    chat = {"TELEGRAM_BOT_TOKEN": "123456:" + "A" * 35, "TELEGRAM_CHAT_ID": "-1001234567890"}
    environ = {"BALANCE_BOT_DEMO_KEY": "demo-key-0123456789", **chat}
    for name, value in chat.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    text = demo_config_text("2s", tmp_path / "demo.db", "http://127.0.0.1:9/user/quota", "")
    cfg = with_log(config_mod.parse(text, environ))
    assert active_notifier_names(cfg) == ["telegram", "log"]
    assert all(rule.notify == ("log", "telegram") for rule in cfg.rules)
    assert cfg.digest is not None and cfg.digest.notify is None  # every active notifier
    alone = with_log(config_mod.parse(text.split("[notifiers.telegram]")[0], environ))
    assert active_notifier_names(alone) == ["log"] and alone.rules[0].notify is None


def test_the_script_spends_like_a_real_account():
    """$14.40 a day until the top-up: at one poll per 2 simulated hours the
    forecast reads about a day and a half, not '0.0 days at $51,837/day'."""
    used = [simulated_balance(h)["total_used_quota"] for h in (0, 24)]
    assert round(used[1] - used[0], 2) == 14.40
    assert 1 < simulated_balance(2)["total_quota"] / 14.40 < 2


def test_a_simulated_clock_runs_speed_times_as_fast():
    ticks = iter([100.0, 100.0, 102.5])
    clock = SimulatedClock(datetime(2026, 1, 5, tzinfo=UTC), 3600, real=lambda: next(ticks))
    assert clock() == datetime(2026, 1, 5, tzinfo=UTC)
    assert clock.elapsed() == 2.5 * 3600  # 2.5 real seconds: 2.5 simulated hours
    real = datetime.now(UTC) + timedelta(seconds=30)
    assert clock.simulated(real) - clock.simulated(real - timedelta(seconds=1)) == timedelta(
        hours=1
    )
    assert abs(clock.real(clock.simulated(real)) - real) < timedelta(milliseconds=1)


def fire_times(trigger: SimulatedTrigger, start: datetime, count: int) -> list[datetime]:
    """As APScheduler asks: the next fire time after the previous one, `now`
    being the previous fire time (a late scheduler asks with now >= it)."""
    times = [trigger.get_next_fire_time(None, start)]
    while len(times) < count:
        times.append(trigger.get_next_fire_time(times[-1], times[-1]))
    return times


def test_a_daily_job_on_simulated_time_fires_once_per_simulated_day():
    """Converted back from real microseconds times 3600, a fire time fell just
    before itself and the daily digest fired again and again (APScheduler's
    run-time loop never ended)."""
    clock = SimulatedClock(datetime(2026, 1, 5, tzinfo=UTC), 3600)
    daily = on_clock(CronTrigger(hour=9, timezone=UTC), clock)
    assert isinstance(daily, SimulatedTrigger)
    times = fire_times(daily, clock.real(clock.start), 4)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(abs(gap - 24) < 0.01 for gap in gaps), gaps  # a simulated day: 24 s
    days = [clock.simulated(t) for t in times]
    assert [d.date().day for d in days] == [5, 6, 7, 8]
    assert all(
        abs(d - d.replace(hour=9, minute=0, second=0, microsecond=0)) < timedelta(seconds=1)
        for d in days
    )


def test_a_poll_every_two_simulated_hours_comes_every_two_seconds():
    clock = SimulatedClock(datetime(2026, 1, 5, tzinfo=UTC), 3600)
    polls = on_clock(IntervalTrigger(hours=2, timezone=UTC), clock)
    now = datetime.now(UTC)
    first = polls.get_next_fire_time(now, now)
    second = polls.get_next_fire_time(first, first)
    assert abs((first - now).total_seconds() - 2) < 0.01
    assert abs((second - first).total_seconds() - 2) < 0.01
    real = IntervalTrigger(hours=2, timezone=UTC)
    assert on_clock(real, lambda: now) is real  # on the real clock, nothing changes


async def test_the_demo_says_its_pace_and_reads_like_a_real_account():
    """The first line says how the clock runs; the forecast, the digest and its
    firing list read in days and dollars a day of a real account."""
    bot = await BotProcess("demo", env={"TELEGRAM_BOT_TOKEN": "", "SLACK_BOT_TOKEN": ""}).start()
    await bot.wait_for(lambda lines: any("Closest to empty" in line for line in lines), within=30)
    assert await bot.stop() == 0
    first = bot.lines[0]
    assert "demo.started" in first and "one demo second is one hour of simulated time" in first
    assert sum("one demo second" in line for line in bot.lines) == 1  # said once
    forecast = next(x for x in bot.lines if "WARNING · demo / total: ≈" in x)  # the fire
    days, rate = re.search(r"≈ ([\d.]+) days left at \$([\d.,]+)/day", forecast).groups()
    assert 1 <= float(days) <= 2 and 12 <= float(rate) <= 16, forecast
    digest = bot.stderr[bot.stderr.index("CometAPI daily digest") :]
    assert re.search(r"Spent in the last 24 h: \$[1-9]", digest), digest
    assert "$0.00" not in digest
    (runway,) = [x for x in digest.splitlines() if "(below 2 days" in x]
    assert "gathering data" not in runway and "days left at $" in runway, runway
    assert "Traceback" not in bot.stderr
