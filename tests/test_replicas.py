"""Replicas on one PostgreSQL database (SPEC 7b), as real `python -m bot run`
processes: one is active and the others stand by; a standby takes over when
the active one stops or is cut off from the database, and two processes never
send at the same time (the partition test puts a TCP proxy between the active
process and PostgreSQL, and cuts it)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from pathlib import Path

import aiohttp
import pytest

from fakes.cometapi import reply_balance
from fakes.postgres import Server, free_port
from fakes.webhook import FakeWebhook
from tests.conftest import QUERY_KEY
from tests.process import BotProcess, run_bot

ENV = {"TEST_QUERY_KEY": QUERY_KEY}


class Proxy:
    """A TCP proxy to PostgreSQL that can be cut (every connection closed, new
    ones refused) and healed (listening again on the same port)."""

    def __init__(self, target_port: int) -> None:
        self.target, self.port = target_port, free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._open |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open -= {writer, up_writer}

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def heal(self) -> None:
        await self.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self.cut()


def flapping() -> object:
    """A balance below the rule's threshold at every other poll: each poll of
    the active process fires or resolves, and a message goes out."""
    turn = itertools.count()

    async def respond(request):  # type: ignore[no-untyped-def]
        return await reply_balance(10 if next(turn) % 2 == 0 else 30)(request)

    return respond


def replica_toml(
    tmp_path: Path, name: str, url: str, comet_url: str, notifier: str, listen: str = ""
) -> str:
    """Replica `name`'s config file on the database `url`, polling `comet_url`."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
[bot]
interval = "1s"
state_url = "{url}"
http_listen = "{listen}"
request_timeout = "1s"

[[accounts]]
name = "main"
key = "${{TEST_QUERY_KEY}}"
url = "{comet_url}"

[[rules]]
name = "account-low"
target = "total"
below = 20
recover_above = 25

{notifier}
""")
    return str(path)


def replica_config(tmp_path: Path, name: str, url: str, comet, hook: FakeWebhook, port: int) -> str:
    """A replica sending to the webhook at /<name>, health on `port`."""
    webhook = f'[notifiers.webhook]\nurl = "http://127.0.0.1:{hook.port}/{name}"'
    return replica_toml(tmp_path, name, url, comet.url, webhook, f"127.0.0.1:{port}")


def telegram_section(token: str, chat: int, api_url: str) -> str:
    return f'[notifiers.telegram]\ntoken = "{token}"\nchat_ids = [{chat}]\napi_url = "{api_url}"'


async def healthz(port: int) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
        return json.loads(await r.text())


async def metric(port: int, name: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    (line,) = [line for line in text.splitlines() if line.startswith(f"{name} ")]
    return line.split()[1]


def said(event: str, times: int = 1):  # type: ignore[no-untyped-def]
    return lambda lines: sum(event in line for line in lines) >= times


def sent_by(hook: FakeWebhook, name: str) -> int:
    return sum(r.path == f"/{name}" for r in hook.received)


@pytest.fixture
async def hook():
    fake = await FakeWebhook().start()
    yield fake
    await fake.stop()


async def start(path: str) -> BotProcess:
    return await BotProcess("-c", path, "run", env=ENV).start()


async def test_one_active_one_standby_and_a_takeover_when_it_stops(
    pg_server: Server, comet, hook, tmp_path
):
    comet.default = flapping()
    url = pg_server.fresh()
    ports = {"a": free_port(), "b": free_port()}
    a = await start(replica_config(tmp_path, "a", url, comet, hook, ports["a"]))
    await a.wait_for(said("replica.active"))
    b = await start(replica_config(tmp_path, "b", url, comet, hook, ports["b"]))
    await b.wait_for(said("replica.standby"))
    await hook.wait_received(3)
    standby = await healthz(ports["b"])
    assert standby["role"] == "standby" and (await healthz(ports["a"]))["role"] == "active"
    assert await metric(ports["a"], "balance_bot_active") == "1.0"
    assert await metric(ports["b"], "balance_bot_active") == "0.0"
    # the standby polls nothing and sends nothing
    assert sent_by(hook, "b") == 0
    # a check beside the active process is refused, as with the SQLite lock
    check = await run_bot("-c", str(tmp_path / "b.toml"), "check", env=ENV)
    assert check.proc is not None and check.proc.returncode == 3
    assert "in use by an active balance-bot process" in check.stdout
    assert await a.stop() == 0
    await b.wait_for(said("replica.active"), within=10)
    before = sent_by(hook, "b")
    await hook.wait_received(len(hook.received) + 2)
    assert sent_by(hook, "b") > before
    assert (await healthz(ports["b"]))["role"] == "active"
    assert await b.stop() == 0
    for bot in (a, b):
        assert "Traceback" not in bot.stderr, bot.stderr


async def test_cut_off_from_the_database_the_active_one_stops_sending_before_the_other_starts(
    pg_server: Server, comet, hook, tmp_path
):
    comet.default = flapping()
    url = pg_server.fresh()
    proxy = await Proxy(pg_server.port).start()
    try:
        ports = {"a": free_port(), "b": free_port()}
        via_proxy = url.replace(f":{pg_server.port}/", f":{proxy.port}/")
        a = await start(replica_config(tmp_path, "a", via_proxy, comet, hook, ports["a"]))
        await a.wait_for(said("replica.active"))
        b = await start(replica_config(tmp_path, "b", url, comet, hook, ports["b"]))
        await b.wait_for(said("replica.standby"))
        await hook.wait_received(3)
        await proxy.cut()
        await b.wait_for(said("replica.active"), within=10)
        await a.wait_for(said("replica.stepping_down"), within=10)
        first_of_b = len(hook.received)
        await hook.wait_received(first_of_b + 3)
        paths = [r.path for r in hook.received]
        b_from = paths.index("/b")
        # once the new active process has sent, the old one never sends again
        assert "/a" not in paths[b_from:], paths
        assert paths.count("/b") >= 3
        await proxy.heal()
        await a.wait_for(said("replica.standby", 2), within=15)
        assert (await healthz(ports["a"]))["role"] == "standby"
        sent_a = sent_by(hook, "a")
        await hook.wait_received(len(hook.received) + 2)
        assert sent_by(hook, "a") == sent_a  # healed: a standby, sending nothing
        assert await a.stop() == 0 and await b.stop() == 0
        for bot in (a, b):
            assert "Traceback" not in bot.stderr, bot.stderr
    finally:
        await proxy.stop()


async def test_an_active_process_whose_lock_session_ends_stops_though_the_database_answers(
    pg_server: Server, comet, hook, tmp_path
):
    """The sharpest cut: only the lock's session ends (an administrator, a
    failover of the connection) while the rest of its connections still work.
    Fencing and the check before each send keep it from sending beside the new one."""
    import psycopg

    comet.default = flapping()
    url = pg_server.fresh()
    ports = {"a": free_port(), "b": free_port()}
    a = await start(replica_config(tmp_path, "a", url, comet, hook, ports["a"]))
    await a.wait_for(said("replica.active"))
    b = await start(replica_config(tmp_path, "b", url, comet, hook, ports["b"]))
    await b.wait_for(said("replica.standby"))
    await hook.wait_received(3)
    with psycopg.connect(url, autocommit=True) as admin:
        (ended,) = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted"
        ).fetchone()
    assert ended == 1
    await b.wait_for(said("replica.active"), within=10)
    await a.wait_for(said("replica.stepping_down"), within=10)
    count = len(hook.received)
    await hook.wait_received(count + 3)
    paths = [r.path for r in hook.received]
    assert "/a" not in paths[paths.index("/b") :], paths
    await a.wait_for(said("replica.standby", 2), within=10)
    assert await a.stop() == 0 and await b.stop() == 0
    for bot in (a, b):
        assert "Traceback" not in bot.stderr, bot.stderr


async def healthz_status(port: int) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
        return r.status, json.loads(await r.text())


async def test_postgres_down_at_start_is_one_line_and_exit_1_for_run_3_for_check(
    comet, hook, tmp_path
):
    url = f"postgresql://bot:pg-Secret-77@127.0.0.1:{free_port()}/balance"
    path = replica_config(tmp_path, "a", url, comet, hook, free_port())
    run = await run_bot("-c", path, "run", env=ENV)
    assert run.proc is not None and run.proc.returncode == 1
    (line,) = [line for line in run.lines if "bot.cannot_start" in line]
    assert "database postgresql://127.0.0.1:" in line and "check that PostgreSQL runs" in line
    check = await run_bot("-c", path, "check", env=ENV)
    assert check.proc is not None and check.proc.returncode == 3
    assert check.stdout.startswith("BALANCE UNKNOWN - database postgresql://127.0.0.1:")
    for bot in (run, check):
        assert "pg-Secret-77" not in bot.stderr + bot.stdout
        assert "Traceback" not in bot.stderr + bot.stdout


async def test_postgres_down_while_running_is_a_503_naming_it_and_then_recovered(
    pg_server: Server, comet, hook, tmp_path
):
    comet.default = flapping()
    proxy = await Proxy(pg_server.port).start()
    try:
        url = pg_server.fresh().replace(f":{pg_server.port}/", f":{proxy.port}/")
        port = free_port()
        a = await start(replica_config(tmp_path, "a", url, comet, hook, port))
        await a.wait_for(said("replica.active"))
        await hook.wait_received(2)
        await proxy.cut()
        await a.wait_for(said("replica.database_down"), within=15)
        status, body = await healthz_status(port)
        assert status == 503 and body["role"] == "standby"
        assert body["database"] == f"postgresql://127.0.0.1:{proxy.port}/{url.rsplit('/', 1)[1]}"
        assert "check that PostgreSQL runs" in body["error"]
        sent = len(hook.received)
        assert len(hook.received) == sent
        await proxy.heal()
        await a.wait_for(said("replica.active", 2), within=15)
        await hook.wait_received(sent + 2)
        status, body = await healthz_status(port)
        assert status == 200 and body["role"] == "active"
        assert await a.stop() == 0
        assert "Traceback" not in a.stderr, a.stderr
    finally:
        await proxy.stop()


async def test_exactly_one_polls_the_upstream_and_one_long_polls_telegram(
    pg_server: Server, comet, tmp_path
):
    """Each replica polls its own fake CometAPI: requests show who polls."""
    from fakes.cometapi import FakeCometAPI
    from fakes.telegram import FakeTelegram

    token = "123456789:AAReplicaTokenForTests_abcdefghijk"
    tg = await FakeTelegram(token).start()
    upstream = {"a": comet, "b": await FakeCometAPI(QUERY_KEY).start()}
    try:
        for fake in upstream.values():
            fake.default = reply_balance(50)
        url = pg_server.fresh()
        bots = {}
        for name in ("a", "b"):
            telegram = telegram_section(token, 111, tg.url)
            bots[name] = await start(
                replica_toml(tmp_path, name, url, upstream[name].url, telegram)
            )
            await bots[name].wait_for(said("replica.active" if name == "a" else "replica.standby"))
        a, b = bots["a"], bots["b"]
        await a.wait_for(said("telegram.listening"))
        await comet.wait_requests(len(comet.requests) + 4)  # four intervals and more
        assert upstream["b"].requests == []
        assert b.count("telegram.") == 0  # no listener, not even a start-up call
        assert await a.stop() == 0
        polled = len(comet.requests)
        await b.wait_for(said("telegram.listening"), within=15)
        await upstream["b"].wait_requests(3)
        assert len(comet.requests) == polled  # the stopped one polls no more
        assert await b.stop() == 0
        for bot in (a, b):
            assert bot.count("telegram.conflict") == 0 and "Traceback" not in bot.stderr
    finally:
        await tg.stop()
        await upstream["b"].stop()


async def test_a_killed_active_process_is_replaced_within_10_seconds(
    pg_server: Server, comet, hook, tmp_path
):
    """SIGKILL: the kernel closes its connections, PostgreSQL ends its session
    and frees the lock; the standby takes it at its next try (every 2 s)."""
    import signal

    comet.default = flapping()
    url = pg_server.fresh()
    a = await start(replica_config(tmp_path, "a", url, comet, hook, free_port()))
    await a.wait_for(said("replica.active"))
    b = await start(replica_config(tmp_path, "b", url, comet, hook, free_port()))
    await b.wait_for(said("replica.standby"))
    await hook.wait_received(2)
    loop = asyncio.get_running_loop()
    killed = loop.time()
    assert await a.stop(signal.SIGKILL) == -signal.SIGKILL
    await b.wait_for(said("replica.active"), within=10)
    assert loop.time() - killed < 10
    sent = sent_by(hook, "b")
    await hook.wait_received(len(hook.received) + 2)
    assert sent_by(hook, "b") >= sent + 2
    assert await b.stop() == 0
    assert "Traceback" not in b.stderr, b.stderr


async def test_a_command_answered_before_a_takeover_is_not_answered_again(
    pg_server: Server, comet, tmp_path
):
    """The update offset lives in the database: the process that takes over
    skips what its predecessor answered, even when Telegram never heard the
    confirmation (the process died before its next getUpdates)."""
    import psycopg

    from fakes.telegram import FakeTelegram

    token = "123456789:AAReplicaOffsetForTests_abcdefghi"
    chat = 222
    tg = await FakeTelegram(token).start()
    try:
        comet.default = reply_balance(50)
        url = pg_server.fresh()
        bots = []
        for name in ("a", "b"):
            telegram = telegram_section(token, chat, tg.url)
            bots.append(await start(replica_toml(tmp_path, name, url, comet.url, telegram)))
            await bots[-1].wait_for(said("replica.active" if name == "a" else "replica.standby"))
        a, b = bots
        await a.wait_for(said("telegram.listening"))
        help_id = await tg.message(chat, "/help")
        (help_update,) = [u for u in tg.updates if u["update_id"] == help_id]
        (helped,) = await tg.wait_sent(1)
        assert "/balance" in helped.text
        assert await a.stop() == 0  # its answers done, the offset saved
        with psycopg.connect(url) as conn:
            (stored,) = conn.execute(
                "SELECT value FROM meta WHERE key = 'telegram.update_offset'"
            ).fetchone()
        assert int(stored) == help_id + 1
        # as if Telegram never got the confirmation: the /help is served again
        tg.updates.insert(0, help_update)
        await tg.message(chat, "/id")  # the one still to answer
        await b.wait_for(said("telegram.listening"), within=15)
        await tg.wait_sent(2)
        assert await b.stop() == 0  # its answers done too
        answered = [s.text for s in tg.sent]
        assert len(answered) == 2 and "chat 222 · user 222" in answered[1], answered
    finally:
        await tg.stop()


async def test_sigkill_after_sigkill_loses_no_message_and_sends_none_more_than_twice(
    pg_server: Server, comet, hook, tmp_path
):
    """Three SIGKILLs in a row while alerts fire and resolve at every poll: every
    row the outbox says was delivered arrived, none arrived more than twice (a
    send in flight at the kill may go again, SPEC 7b), and nothing undelivered
    arrived more than once."""
    import signal
    from collections import Counter
    from datetime import UTC, datetime

    import psycopg

    def second(at: str) -> str:
        return datetime.fromisoformat(at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    comet.default = flapping()
    url = pg_server.fresh()
    active = await start(replica_config(tmp_path, "r0", url, comet, hook, free_port()))
    await active.wait_for(said("replica.active"))
    for i in range(1, 4):
        standby = await start(replica_config(tmp_path, f"r{i}", url, comet, hook, free_port()))
        await standby.wait_for(said("replica.standby"))
        await hook.wait_received(len(hook.received) + 2)
        await active.stop(signal.SIGKILL)
        await standby.wait_for(said("replica.active"), within=10)
        active = standby
    await hook.wait_received(len(hook.received) + 2)
    assert await active.stop() == 0
    arrived = Counter(
        (e["kind"], e["rule"], e["at"]) for r in hook.received for e in r.json["events"]
    )
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, events FROM outbox ORDER BY id").fetchall()
    assert len(rows) >= 4 and max(arrived.values()) <= 2, arrived
    for status, payload in rows:
        for e in json.loads(payload)["events"]:
            times = arrived[(e["kind"], e["rule"], second(e["at"]))]
            assert (1 <= times <= 2) if status == "delivered" else times <= 1, (status, e)
    assert "Traceback" not in active.stderr
