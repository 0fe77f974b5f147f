"""No silent failure, as a user meets it: `python -m bot` as a real process.
Each anticipated problem ends in one clear line and the right exit code,
never a traceback; nothing is left running."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
from pathlib import Path

import pytest

from fakes.cometapi import FakeCometAPI, reply_balance, reply_raw, reply_stall
from fakes.telegram import FakeTelegram
from tests.conftest import QUERY_KEY
from tests.process import BotProcess, run_bot

ENV = {"TEST_QUERY_KEY": QUERY_KEY}
TG_TOKEN = "123456789:AAFakeTokenForProcessTests_abcdefgh"
CHAT = 111111


def no_traceback(bot: BotProcess) -> None:
    assert "Traceback" not in bot.stderr + bot.stdout, bot.stderr


async def test_check_with_a_poisoned_account_exits_3_and_reports_the_good_one(write_config, comet):
    odd = await FakeCometAPI("sk-odd-account-0000000001").start()
    try:
        odd.default = reply_raw(b'{"total_quota": 1' + b"0" * 400 + b"}")
        comet.default = reply_balance(15)
        path = write_config(
            accounts=f"""
[[accounts]]
name = "odd"
key = "sk-odd-account-0000000001"
url = "{odd.url}"
"""
        )
        bot = await run_bot("check", "-c", path, env=ENV)
    finally:
        await odd.stop()
    assert bot.proc.returncode == 3
    first = bot.stdout.splitlines()[0]
    assert first.startswith("BALANCE UNKNOWN - odd: bad response from 127.0.0.1")
    assert "WARNING · main / total: $15.00 left" in first and "'main_total'=15.00;" in first
    no_traceback(bot)


async def test_demo_starts_with_the_telegram_variables_the_readme_names():
    tg = await FakeTelegram(TG_TOKEN).start()
    try:
        env = {"TELEGRAM_BOT_TOKEN": TG_TOKEN, "TELEGRAM_CHAT_ID": str(CHAT)}
        env |= {"TELEGRAM_API_URL": tg.url, "SLACK_BOT_TOKEN": ""}
        bot = await BotProcess("demo", env=env).start()
        await bot.wait_for(lambda lines: any("telegram.listening" in line for line in lines))
        assert await bot.stop() == 0
    finally:
        await tg.stop()
    assert {"balance", "status", "help"} <= {c["command"] for c in tg.commands}
    no_traceback(bot)


async def test_a_bad_environment_override_is_a_validation_problem(write_config, comet):
    env = ENV | {"BALANCE_BOT_HTTP_LISTEN": "garbage"}
    bot = await run_bot("validate", "-c", write_config(), env=env)
    assert bot.proc.returncode == 3
    assert "bot.http_listen: must be 'host:port'" in bot.stderr
    assert "(from $BALANCE_BOT_HTTP_LISTEN)" in bot.stderr
    no_traceback(bot)


async def test_run_with_the_health_port_taken_says_so_in_one_line(write_config, comet):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bot = await run_bot("run", "-c", write_config(listen=f"127.0.0.1:{port}"), env=ENV)
    assert bot.proc.returncode == 1
    (line,) = [line for line in bot.lines if "bot.cannot_start" in line]
    assert f"bot.http_listen: cannot listen on 127.0.0.1:{port}" in line
    assert not comet.requests  # it stopped before polling
    no_traceback(bot)


@pytest.mark.parametrize("where", ["the first tables", "the history"])
async def test_damaged_pages_stop_run_and_check_with_one_line(write_config, comet, tmp_path, where):
    comet.default = reply_balance(
        15,
        [{"name": f"key-{i}-" + "x" * 80, "remain_quota": 50, "used_quota": 1} for i in range(400)],
    )
    path = write_config()
    for _ in range(3):
        assert (await run_bot("check", "--no-notify", "-c", path, env=ENV)).proc.returncode == 1
    state = tmp_path / "state.db"
    db = sqlite3.connect(state)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    page = 4096
    assert state.stat().st_size > 6 * page
    db = sqlite3.connect(state)
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name='samples'").fetchone()
    db.close()
    seek = 2 if where == "the first tables" else root - 1  # the history's first pages
    with state.open("r+b") as f:  # dd if=/dev/urandom of=state.db bs=4096 seek=N count=2
        f.seek(seek * page)
        f.write(os.urandom(2 * page))

    run = await run_bot("run", "-c", path, env=ENV)
    assert run.proc.returncode == 1
    (line,) = [line for line in run.lines if "bot.cannot_start" in line]
    assert str(state) in line and "restore it from a backup" in line
    check = await run_bot("check", "-c", path, env=ENV)
    assert check.proc.returncode == 3
    assert check.stdout.startswith("BALANCE UNKNOWN - state file") and str(state) in check.stdout
    no_traceback(run)
    no_traceback(check)


@pytest.fixture
async def tg():
    fake = FakeTelegram(TG_TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


def telegram(fake: FakeTelegram) -> str:
    return f"""
[notifiers.telegram]
token = "{TG_TOKEN}"
chat_ids = [{CHAT}]
api_url = "{fake.url}"
"""


async def test_shutdown_with_a_hung_send_and_a_hung_poll_keeps_one_deadline(
    write_config, comet, tg
):
    """SIGTERM while a Telegram send and a poll both hang: the process exits 0
    within the one 10 s deadline (not 10 s per wait), and no new send starts."""
    comet.push(reply_balance(5))
    comet.default = reply_stall(60)
    tg.hang("sendMessage")
    path = write_config(extra=telegram(tg))
    text = Path(path).read_text()
    Path(path).write_text(text.replace('request_timeout = "1s"', 'request_timeout = "10s"'))
    bot = await BotProcess("run", "-c", path, env=ENV).start()
    await tg.wait_calls("sendMessage", 1, within=20)
    await comet.wait_requests(2)  # the second poll hangs
    sends = len([c for c in tg.calls if c.method == "sendMessage"])
    loop = asyncio.get_running_loop()
    signalled = loop.time()
    assert await bot.stop(within=30) == 0
    took = loop.time() - signalled
    assert took < 12.5, f"exit took {took:.1f}s"  # the 10 s deadline and process start-up
    assert len([c for c in tg.calls if c.method == "sendMessage"]) == sends
    no_traceback(bot)


async def test_sighup_is_logged_and_the_bot_goes_on(write_config, comet):
    bot = await BotProcess("run", "-c", write_config(), env=ENV).start()
    await bot.wait_for(lambda lines: any("bot.started" in line for line in lines))
    assert bot.proc is not None
    bot.proc.send_signal(signal.SIGHUP)
    await bot.wait_for(lambda lines: any("bot.sighup" in line for line in lines))
    polls = len(comet.requests)
    await comet.wait_requests(polls + 2)  # still polling
    assert await bot.stop() == 0


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_state_file_deleted_or_replaced_under_the_bot_stops_it(
    write_config, comet, tmp_path, how
):
    bot = await BotProcess("run", "-c", write_config(), env=ENV).start()
    await bot.wait_for(lambda lines: any("bot.started" in line for line in lines))
    await comet.wait_requests(2)
    state = tmp_path / "state.db"
    if how == "deleted":
        for f in tmp_path.glob("state.db*"):
            f.unlink()
    else:
        fresh = tmp_path / "fresh.db"
        sqlite3.connect(fresh).close()
        fresh.replace(state)
    assert await bot.wait(within=20) == 1
    (line,) = [line for line in bot.lines if "bot.fatal" in line]
    assert f"state file {state} was deleted or replaced" in line
    assert Path(state).exists() == (how == "replaced")
    no_traceback(bot)
