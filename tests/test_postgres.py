"""PostgreSQL state beyond the contract (tests/test_store_contract.py): the schema
created once however many start together, a newer schema refused, one line
when the database is not there, the URL's password a secret, and the whole
bot on it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import psycopg
import pytest

from bot import config as config_mod
from bot.app.service import App
from bot.common import secrets
from bot.config import ConfigError
from bot.engine.model import EventKind
from bot.state.backends import open_store
from bot.state.postgres.schema import SCHEMA_VERSION
from bot.state.postgres.store import Store
from bot.state.types import SchemaTooNewError, StoreError
from fakes.cometapi import reply_balance
from tests.conftest import QUERY_KEY, RULES
from tests.helpers import RETRYING
from tests.process import run_bot

PASSWORD = "s3cret-Pg-Pa55"


def pg_config(url: str, comet, extra: str = RULES, bot: str = "") -> str:
    return f"""
[bot]
interval = "1s"
state_url = "{url}"
http_listen = ""
{bot}

[[accounts]]
name = "main"
key = "{QUERY_KEY}"
url = "{comet.url}"
{extra}
"""


async def test_replicas_starting_together_create_the_schema_once(pg_server):
    url = pg_server.fresh()
    stores = await asyncio.gather(*(Store.open(url) for _ in range(4)))
    for store in stores:
        await store.close()
    with psycopg.connect(url) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM balance_bot_schema").fetchone()
        (version,) = conn.execute("SELECT version FROM balance_bot_schema").fetchone()
    assert rows == 1 and version == SCHEMA_VERSION


async def test_a_newer_schema_is_refused_in_one_line_exit_3(pg_server, comet, tmp_path):
    url = pg_server.fresh()
    await (await Store.open(url)).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE balance_bot_schema SET version = 99")
    with pytest.raises(SchemaTooNewError) as refused:
        await Store.open(url)
    assert "newer balance-bot (schema 99" in str(refused.value)
    path = tmp_path / "rules.toml"
    path.write_text(pg_config(url, comet).replace(QUERY_KEY, "${TEST_QUERY_KEY}"))
    bot = await run_bot("-c", str(path), "run", env={"TEST_QUERY_KEY": QUERY_KEY})
    assert bot.proc is not None and bot.proc.returncode == 3
    (line,) = [line for line in bot.lines if "newer balance-bot" in line]
    assert "upgrade balance-bot" in line and "Traceback" not in bot.stderr


async def test_a_database_that_is_not_there_is_one_line_without_the_password(pg_server):
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{pg_server.port + 1}/nothing"
    with pytest.raises(StoreError) as failed:
        await open_store(Path("unused.db"), url)
    text = str(failed.value)
    assert text.startswith(f"database postgresql://127.0.0.1:{pg_server.port + 1}/nothing: ")
    assert "check that PostgreSQL runs" in text and PASSWORD not in text and "\n" not in text


def test_state_url_is_exclusive_with_state_path_and_its_password_a_secret(tmp_path):
    both = f"""
[bot]
state_path = "{tmp_path / "s.db"}"
state_url = "postgresql://bot:{PASSWORD}@db/balance"
[[accounts]]
name = "main"
key = "k"
{RULES}
"""
    with pytest.raises(ConfigError) as bad:
        config_mod.parse(both)
    (problem,) = bad.value.problems
    assert "state_url and state_path" in problem
    cfg = config_mod.parse(both.replace(f'state_path = "{tmp_path / "s.db"}"\n', ""))
    assert cfg.bot.state_url.endswith("@db/balance") and PASSWORD in cfg.secrets()
    for s in cfg.secrets():
        secrets.register(s)
    assert PASSWORD not in secrets.redact(cfg.bot.state_url)
    with pytest.raises(ConfigError) as wrong:
        config_mod.parse(both.replace("postgresql://", "mysql://").replace("state_path", "#"))
    assert "must be a database URL (postgresql:// or postgres://)" in wrong.value.problems[0]


def test_the_image_state_file_does_not_clash_with_a_database(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(
        f'[bot]\nstate_url = "postgresql://bot@db/balance"\n'
        f'[[accounts]]\nname = "main"\nkey = "k"\n{RULES}'
    )
    cfg = config_mod.load(path, {"BALANCE_BOT_STATE_PATH": "/nowhere/balance-bot.db"})
    assert cfg.bot.state_url == "postgresql://bot@db/balance"


async def test_the_bot_fires_resolves_and_restarts_from_the_database(pg_server, comet, caplog):
    cfg = config_mod.parse(pg_config(pg_server.fresh(), comet))
    caplog.set_level(logging.INFO)
    kinds = []
    for balances in ([30, 15], [15, 30]):
        comet.push(*(reply_balance(b) for b in balances))
        async with App(cfg, retry=RETRYING) as app:
            await app.start_notifiers(listen=False)
            for _ in balances:
                kinds.append([e.kind for e in (await app.cycle()).events])
                await app.delivery.deliver_due()
            assert await app.store.pending() == []
    # the restart remembers the firing alert: no second fire, one resolve
    assert kinds == [[], [EventKind.FIRE], [], [EventKind.RESOLVE]]
    notified = [r.fields["text"] for r in caplog.records if r.getMessage() == "notify"]
    assert sum("WARNING · main / total: $15.00 left" in t for t in notified) == 1
    assert sum(t.startswith("RESOLVED · main / total: $30.00") for t in notified) == 1


async def test_a_takeover_fences_the_old_active_process_out(pg_server):
    """The epoch each takeover raises: the old process's commits, what it
    enqueues and its "delivered" marks are refused; its failures and retries
    are not (the row stays for the new one either way)."""
    from datetime import UTC, datetime

    from bot.engine.model import EngineState
    from bot.state.backends import lease
    from bot.state.types import Commit, FencedError, OutboxItem, OutboxStatus

    now = datetime(2026, 1, 1, tzinfo=UTC)
    url = pg_server.fresh()
    first, second = lease(url), lease(url)
    assert await first.acquire() and not await second.acquire()
    old = await open_store(Path("unused"), url, first.epoch)
    try:
        await old.enqueue([OutboxItem("log", "d", ())], now)
        (row,) = await old.pending()
        await first.release()
        assert await second.acquire() and second.epoch == 2  # the first took it to 1
        new = await open_store(Path("unused"), url, second.epoch)
        try:
            with pytest.raises(FencedError, match="another balance-bot process took over"):
                await old.commit_cycle(Commit(EngineState(), EngineState(), [], [], now))
            with pytest.raises(FencedError):
                await old.enqueue([OutboxItem("log", "d", ())], now)
            with pytest.raises(FencedError):
                await old.mark_done(row.id, OutboxStatus.DELIVERED, now)
            await old.mark_retry(row.id, 1, now, "HTTP 502")
            assert [r.id for r in await new.pending()] == [row.id]  # still to send, by the new one
            await new.mark_done(row.id, OutboxStatus.DELIVERED, now)
            assert await new.pending() == []
        finally:
            await new.close()
    finally:
        await old.close()
        await second.release()


async def test_delivery_sends_nothing_once_the_lock_is_lost(pg_server):
    """The check before each send: a process whose lock connection failed
    stops delivering at once; the row stays undelivered for the next one."""
    from datetime import UTC, datetime

    from bot.notify.delivery import Delivery
    from bot.state.backends import lease
    from bot.state.types import OutboxItem
    from tests.test_delivery import Scripted, event

    now = datetime.now(UTC)
    url = pg_server.fresh()
    held = lease(url)
    assert await held.acquire()
    store = await open_store(Path("unused"), url, held.epoch)
    try:
        await store.enqueue(
            [OutboxItem("fake", "a", (event("k1"),)), OutboxItem("fake", "b", (event("k2"),))], now
        )
        notifier = Scripted()
        delivery = Delivery(store, {"fake": notifier}, may_send=held.holding)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            )
        await delivery.deliver_due()
        assert notifier.sent == [] and len(await store.pending()) == 2
        assert not await held.holding() and held.epoch is None
    finally:
        await store.close()
