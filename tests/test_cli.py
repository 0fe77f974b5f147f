"""The program as a user runs it: `python -m bot run|check` as a real process
against the loopback fake CometAPI."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime

import pytest

from bot.app.check import build
from bot.cli import main as cli_main
from bot.engine.model import EngineState, Snapshot
from fakes.cometapi import reply_balance, reply_raw, reply_stall, reply_status
from tests.conftest import PROCESS_RULES as RULES
from tests.conftest import QUERY_KEY
from tests.process import BotProcess, run_bot

ENV = {"TEST_QUERY_KEY": QUERY_KEY}


def assert_no_secret(*texts: str | bytes) -> None:
    for text in texts:
        blob = text.encode() if isinstance(text, str) else text
        assert QUERY_KEY.encode() not in blob


async def test_run_hysteresis_sigterm_and_restart(write_config, comet, tmp_path):
    path = write_config()
    sequence = [30, 15, 18, 16, 19, 26, 24, 10]
    comet.push(*[reply_balance(v) for v in sequence])
    comet.default = reply_balance(10)
    bot = await BotProcess("run", "-c", path, env=ENV).start()
    await comet.wait_requests(len(sequence) + 1)
    await bot.wait_for(lambda lines: sum("delivery.sent" in line for line in lines) >= 3)
    assert await bot.stop() == 0
    fires = [line for line in bot.lines if "notify" in line and "WARNING · main / total" in line]
    resolves = [
        line for line in bot.lines if "notify" in line and "RESOLVED · main / total" in line
    ]
    assert len(fires) == 2, bot.stderr
    assert len(resolves) == 1
    assert "$15.00 left (below $20.00; resolves at $25.00)" in fires[0]
    assert "$26.00 (at or above $25.00)" in resolves[0]
    assert "bot.stopped" in bot.stderr

    # a restart with the balance still low sends nothing new
    before = len(comet.requests)
    again = await BotProcess("run", "-c", path, env=ENV).start()
    await comet.wait_requests(before + 3)
    assert await again.stop() == 0
    assert again.count("alert.") == 0 and again.count("notify") == 0, again.stderr
    assert_no_secret(bot.stderr, bot.stdout, again.stderr, again.stdout)
    for f in tmp_path.glob("state.db*"):
        assert_no_secret(f.read_bytes())


async def test_outage_gives_one_unavailable_alert_and_one_notice(write_config, comet, tmp_path):
    path = write_config(bot="stale_after = 3")
    comet.push(reply_balance(100))
    html = reply_raw(b"<html>maintenance</html>", content_type="text/html")
    failures = [reply_status(500)] * 4 + [html] * 2 + [reply_stall(5)] * 2
    comet.push(*failures)
    comet.default = reply_balance(100)
    bot = await BotProcess("run", "-c", path, env=ENV).start()
    await comet.wait_requests(len(failures) + 3)
    await bot.wait_for(lambda lines: any("DATA BACK" in line for line in lines))
    assert await bot.stop() == 0
    assert bot.count("DATA UNAVAILABLE") == 1, bot.stderr
    assert bot.count("DATA BACK") == 1
    assert bot.count("alert.fire") == 0  # an outage is never read as a low balance
    assert bot.count("poll.failed") >= 3
    assert_no_secret(bot.stderr, bot.stdout)
    for f in tmp_path.glob("state.db*"):
        assert_no_secret(f.read_bytes())


async def test_second_signal_exits_at_once(write_config, comet):
    comet.default = reply_stall(30)
    bot = await BotProcess("run", "-c", write_config(), env=ENV).start()
    await comet.wait_requests(1)
    assert bot.proc is not None
    bot.proc.send_signal(signal.SIGTERM)
    await bot.wait_for(lambda lines: any("bot.stopping" in line for line in lines))
    code = await bot.stop(signal.SIGINT, within=5)
    assert code == 128 + signal.SIGINT


async def test_a_second_process_on_the_same_state_is_refused(write_config, comet):
    path = write_config()
    first = await BotProcess("run", "-c", path, env=ENV).start()
    await comet.wait_requests(1)
    second = await run_bot("run", "-c", path, env=ENV)
    assert second.proc.returncode == 1
    assert "in use by another balance-bot process" in second.stderr
    assert await first.stop() == 0


@pytest.mark.parametrize(
    ("total", "code", "status"),
    [(100, 0, "OK"), (15, 1, "WARNING"), (3, 2, "CRITICAL")],
)
async def test_check_exit_codes_and_first_line(write_config, comet, total, code, status):
    comet.default = reply_balance(total)
    bot = await run_bot("check", "-c", write_config(), env=ENV)
    assert bot.proc.returncode == code, bot.stderr
    first = bot.stdout.splitlines()[0]
    assert first.startswith(f"BALANCE {status} - ")
    assert first.endswith(f"| 'main_total'={total:.2f};20:;5:")
    assert_no_secret(bot.stdout, bot.stderr)


async def test_check_unknown_when_the_account_cannot_be_fetched(write_config, comet):
    comet.default = reply_status(503)
    bot = await run_bot("check", "-c", write_config(), env=ENV)
    assert bot.proc.returncode == 3
    host = comet.url.split("//")[1].split("?")[0]  # 127.0.0.1:port/user/quota
    assert bot.stdout.startswith(f"BALANCE UNKNOWN - main: HTTP 503 from {host}")
    assert_no_secret(bot.stdout, bot.stderr)


async def test_check_unknown_on_a_config_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[bot]\nintervl = 3\n")
    bot = await run_bot("check", "-c", str(bad))
    assert bot.proc.returncode == 3
    assert bot.stdout.startswith("BALANCE UNKNOWN - config error")
    assert "bot.intervl: unknown key" in bot.stdout


async def test_check_json_matches_the_spec(write_config, comet):
    keys = [
        {"name": "prod-api", "remain_quota": "1.5", "used_quota": 8.5},
        {"name": "unlimited", "remain_quota": 999999999, "used_quota": -1},
    ]
    comet.default = reply_balance(15, keys)
    rules = (
        RULES
        + """
[[rules]]
name = "key-low"
target = "key"
below = 2
severity = "critical"
"""
    )
    bot = await run_bot("check", "--json", "--no-notify", "-c", write_config(rules), env=ENV)
    assert bot.proc.returncode == 2
    data = json.loads(bot.stdout)
    assert data["status"] == "CRITICAL"
    (account,) = data["accounts"]
    assert account == {
        "name": "main",
        "provider": "cometapi",  # SPEC 2b: check --json adds provider and currency
        "currency": "USD",
        "username": "example_user",
        "total_quota": 15.0,
        "total_used_quota": 21.5,
        "request_count": 1221,
        "burn_usd_per_day": None,  # gathering data: this is the first poll
        "days_left": None,
        "error": None,
        "keys": [
            {"name": "prod-api", "remain_quota": 1.5, "used_quota": 8.5, "unlimited": False},
            {
                "name": "unlimited",
                "remain_quota": 999999999.0,
                "used_quota": -1.0,
                "unlimited": True,
            },
        ],
    }
    assert sorted(data["alerts"], key=lambda a: a["rule"]) == [
        {
            "rule": "account-low",
            "account": "main",
            "subject": "total",
            "severity": "warning",
            "state": "firing",
            "value": 15.0,
            "threshold": 20.0,
            "unit": "usd",
        },
        {
            "rule": "key-low",
            "account": "main",
            "subject": "prod-api",
            "severity": "critical",
            "state": "firing",
            "value": 1.5,
            "threshold": 2.0,
            "unit": "usd",
        },
    ]
    assert "notify" not in bot.stderr  # --no-notify sends nothing


async def test_check_notifies_once_and_keeps_state(write_config, comet):
    comet.default = reply_balance(15)
    path = write_config()
    first = await run_bot("check", "-c", path, env=ENV)
    second = await run_bot("check", "-c", path, env=ENV)
    assert first.proc.returncode == second.proc.returncode == 1
    assert first.count("WARNING · main / total: $15.00 left") == 1
    assert second.count("notify") == 0


async def test_json_logs(write_config, comet):
    comet.default = reply_status(500)
    bot = await run_bot("check", "--log-format", "json", "-c", write_config(), env=ENV)
    events = bot.json_lines()
    assert events, bot.stderr
    assert all({"ts", "level", "event"} <= e.keys() for e in events)
    failed = [e for e in events if e["event"] == "poll.failed"]
    assert failed and failed[0]["account"] == "main" and failed[0]["kind"] == "unreachable"
    assert_no_secret(bot.stderr)


async def test_corrupt_state_file_stops_run_and_check_with_a_remedy(write_config, comet, tmp_path):
    (tmp_path / "state.db").write_bytes(b"garbage" * 1000)
    path = write_config()
    run = await run_bot("run", "-c", path, env=ENV)
    assert run.proc.returncode == 1
    assert "state.db" in run.stderr and "restore it from a backup" in run.stderr
    check = await run_bot("check", "-c", path, env=ENV)
    assert check.proc.returncode == 3
    assert check.stdout.startswith("BALANCE UNKNOWN - state file")
    assert (tmp_path / "state.db").read_bytes().startswith(b"garbage")
    assert not comet.requests


# --- what a newcomer reads (issue 20) -----------------------------------------------------


def test_check_json_days_left_is_not_rounded():
    """SPEC 3: JSON numbers are not rounded (0.0116 rounded to 0.01 is 14 % off)."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    snap = Snapshot("main", "u", 0.29, 10.0, 1, (), at)
    report = build({"main": snap}, (), EngineState(), lambda _: snap, at, {"main": 25.0})
    (account,) = report.data["accounts"]
    assert account["days_left"] == 0.29 / 25.0
    assert json.loads(report.output(as_json=True))["accounts"][0]["days_left"] == 0.0116


async def test_check_writes_only_news_to_stderr_at_the_default_level(write_config, comet):
    """cron mails what check writes: an alert message, a warning; not a seed line per run."""
    comet.default = reply_balance(15)  # the fake offers no daily_quota: no seed
    path = write_config()
    first = await run_bot("check", "-c", path, env=ENV)
    assert first.proc.returncode == 1, first.stderr
    assert "seed.unavailable" not in first.stderr
    assert "notify" in first.stderr and "WARNING · main / total" in first.stderr  # news
    again = await run_bot("check", "-c", path, env=ENV)
    assert again.proc.returncode == 1 and again.stderr == ""  # nothing new, nothing said
    verbose = await run_bot("check", "--log-level", "INFO", "-c", path, env=ENV)
    assert "seed.unavailable" in verbose.stderr  # asked for
    comet.default = reply_status(503)
    failed = await run_bot("check", "-c", path, env=ENV)
    assert failed.proc.returncode == 3 and "poll.failed" in failed.stderr  # warnings still show


def test_check_names_a_missing_config_once_and_says_to_run_init(tmp_path, capsys):
    missing = tmp_path / "rules.toml"
    assert cli_main(["check", "-c", str(missing)]) == 3
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"BALANCE UNKNOWN - config error in {missing}: file not found; ")
    assert line.count(str(missing)) == 1 and "`balance-bot init`" in line


def sub_help(capsys, *args: str) -> str:
    with pytest.raises(SystemExit):
        cli_main([*args, "--help"])
    return capsys.readouterr().out


def test_each_command_help_says_what_it_does_and_demo_offers_no_config(capsys):
    for command, words in (
        ("run", "Runs until SIGTERM"),
        ("check", "exits 0 OK, 1 WARNING, 2 CRITICAL or 3 UNKNOWN"),
        ("validate", "Prints every problem"),
        ("test-notify", "one line per destination"),
        ("init", "never overwrites"),
        ("demo", "reads no config"),
    ):
        text = " ".join(sub_help(capsys, command).split())
        assert words in text, (command, text)
    assert "--config" not in sub_help(capsys, "demo")
    assert "--config" in sub_help(capsys, "check")
