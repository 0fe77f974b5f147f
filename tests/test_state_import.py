"""`balance-bot state import FILE` (SPEC 7b), with real processes: a team moves
from one process on SQLite to replicas on PostgreSQL without a false
"resolved" or a repeated fire, and the row the old process had not delivered
goes out once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import psycopg

from bot import config as config_mod
from bot.app.service import App
from bot.common import secrets
from bot.engine.model import Silence
from fakes.cometapi import reply_balance
from fakes.postgres import Server
from fakes.webhook import FakeWebhook
from tests.conftest import PROCESS_RULES, QUERY_KEY
from tests.helpers import RETRYING
from tests.process import BotProcess, run_bot

ENV = {"TEST_QUERY_KEY": QUERY_KEY}


def config_text(state: str, comet, hook: FakeWebhook, path: str) -> str:
    return f"""
[bot]
interval = "1s"
{state}
http_listen = ""
request_timeout = "1s"

[[accounts]]
name = "main"
key = "${{TEST_QUERY_KEY}}"
url = "{comet.url}"
{PROCESS_RULES}
[notifiers.webhook]
url = "http://127.0.0.1:{hook.port}{path}"
"""


async def test_a_firing_alert_a_snooze_and_an_undelivered_row_move_to_postgres(
    pg_server: Server, comet, tmp_path: Path
):
    hook = await FakeWebhook().start()
    try:
        file = tmp_path / "state.db"
        old = config_mod.parse(
            config_text(f'state_path = "{file}"', comet, hook, "/old").replace(
                "${TEST_QUERY_KEY}", QUERY_KEY
            )
        )
        for s in old.secrets():
            secrets.register(s)
        async with App(old, retry=RETRYING) as app:
            await app.start_notifiers(listen=False)
            comet.push(reply_balance(10))
            await app.cycle()  # account-low fires, and is delivered
            await app.delivery.deliver_due()
            comet.push(reply_balance(3))
            await app.cycle()  # account-empty fires: queued, not delivered (the process dies)
            now = app.clock()
            await app.store.add_silence(Silence(now + timedelta(days=1), "@ann", "spare"), now)
        (sent,) = hook.received
        assert sent.path == "/old" and sent.json["events"][0]["rule"] == "account-low"

        url = pg_server.fresh()
        new = tmp_path / "replica.toml"
        new.write_text(config_text(f'state_url = "{url}"', comet, hook, "/new"))
        moved = await run_bot("-c", str(new), "state", "import", str(file), env=ENV)
        assert moved.proc is not None and moved.proc.returncode == 0, moved.stderr
        assert moved.stdout.startswith(f"imported {file} into postgresql://127.0.0.1:")
        assert "2 alerts" in moved.stdout and "2 outbox" in moved.stdout
        again = await run_bot("-c", str(new), "state", "import", str(file), env=ENV)
        assert again.proc is not None and again.proc.returncode == 1
        assert "already holds balance-bot data" in again.stderr and "Traceback" not in again.stderr

        comet.default = reply_balance(3)  # still as low as when the old process stopped
        polled = len(comet.requests)
        bot = await BotProcess("-c", str(new), "run", env=ENV).start()
        try:
            await bot.wait_for(lambda lines: any("replica.active" in line for line in lines))
            (undelivered,) = [r for r in await hook.wait_received(2) if r.path == "/new"]
            await comet.wait_requests(polled + 4)  # polls after it: nothing more to say
            assert await bot.stop() == 0
        finally:
            bot.kill()
        assert [r.path for r in hook.received] == ["/old", "/new"]
        (event,) = undelivered.json["events"]
        assert (event["kind"], event["rule"]) == ("fire", "account-empty")
        assert "Traceback" not in bot.stderr
        with psycopg.connect(url) as conn:
            firing = conn.execute("SELECT rule FROM alerts WHERE firing ORDER BY rule").fetchall()
            (snoozes,) = conn.execute("SELECT count(*) FROM silences").fetchone()
            (samples,) = conn.execute("SELECT count(*) FROM samples").fetchone()
        assert firing == [("account-empty",), ("account-low",)]
        assert snoozes == 1 and samples >= 2
    finally:
        await hook.stop()
