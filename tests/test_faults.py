"""Proof under faults: a misbehaving upstream, chat platforms that fail, and a
process that is killed. Real HTTP against loopback fakes; the process tests run
`python -m bot` as users do. Every test here also checks that none of the
distinctive secrets below shows up anywhere it can look."""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app.service import App
from bot.engine.model import Account, Event, EventKind, PollFailure
from bot.notifiers.message import plain as plain_line
from bot.notify.render import event_line
from bot.upstream.client import Client
from bot.upstream.transport import MAX_BODY_BYTES
from fakes import slack as fake_slack
from fakes import telegram as fake_tg
from fakes.cometapi import (
    FakeCometAPI,
    Responder,
    quota,
    reply_balance,
    reply_json,
    reply_raw,
    reply_stall,
    reply_status,
)
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram
from tests.conftest import QUERY_KEY, printed
from tests.helpers import FAST as ONE_TRY
from tests.helpers import POISONS, T0
from tests.helpers import RETRYING as FAST
from tests.process import BotProcess

TG_TOKEN = "987654321:AAaudit-SECRET-telegram-zq81x"
SLACK_BOT_TOKEN = "xoxb-audit-SECRET-slack-bot-9f8e"
SLACK_APP_TOKEN = "xapp-1-audit-SECRET-slack-app-7d6c"
ODD_KEY = "sk-odd-account-SECRET-0042"
SECRETS = (QUERY_KEY, ODD_KEY, TG_TOKEN, TG_TOKEN.split(":")[1], SLACK_BOT_TOKEN, SLACK_APP_TOKEN)
ENV = {
    "TEST_QUERY_KEY": QUERY_KEY,
    "TEST_TG_TOKEN": TG_TOKEN,
    "TEST_SLACK_BOT": SLACK_BOT_TOKEN,
    "TEST_SLACK_APP": SLACK_APP_TOKEN,
}
CHAT, BLOCKED_CHAT, STRANGER = 111111, 222222, 999
CHANNEL = "C0ALERTS01"

RULES = """
[[rules]]
name = "account-low"
target = "total"
below = 20
recover_above = 25

[[rules]]
name = "key-low"
target = "key"
below = 5
recover_above = 6
severity = "critical"
"""
GOOD = reply_balance(100, [{"name": "k1", "remain_quota": 50, "used_quota": 1}])


def assert_no_secret(*texts: str | bytes, files: tuple[Path, ...] = ()) -> None:
    blobs = [t.encode() if isinstance(t, str) else t for t in texts]
    blobs += [f.read_bytes() for f in files if f.exists()]
    for secret in SECRETS:
        leaks = [blob[:300] for blob in blobs if secret.encode() in blob]
        assert not leaks, f"{secret[:12]}... leaked: {leaks[:2]}"


def plain(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def state_files(tmp_path: Path) -> tuple[Path, ...]:
    return tuple(tmp_path.glob("state.db*"))  # the database, its WAL and shared memory


# --- upstream faults (the real client over HTTP; cycles driven in-process) ----------------


def reply_hang(seconds: float) -> Responder:
    """No status line for `seconds`: a server that accepted and went quiet."""

    async def respond(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(text="too late")

    return respond


def reply_endless() -> Responder:
    """A 200 whose body never ends (it stops when the client hangs up)."""

    async def respond(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        chunk = b'{"total_quota": 1, "pad": "' + b" " * (1024 * 1024)
        for _ in range(4 * MAX_BODY_BYTES // len(chunk)):
            await resp.write(chunk)
        return resp

    return respond


def reply_echoing_the_url(status: int) -> Responder:
    """An error page that quotes the request URL, key and all, as some proxies do."""

    async def respond(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=f"cannot serve {request.url}")

    return respond


REJECTED = reply_json({"success": False, "message": "invalid key"}, status=401)
UPSTREAM_FAULTS: dict[str, Responder] = {
    "500": reply_status(500),
    "502 with HTML": reply_status(
        502, "<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html"
    ),
    "503 quoting the URL": reply_echoing_the_url(503),
    "429 with Retry-After": reply_status(429, "slow down", headers={"Retry-After": "1"}),
    "no answer (timeout)": reply_hang(5),
    "body stalls mid-way": reply_stall(5, b'{"total_quota": 1'),
    "truncated JSON": reply_raw(b'{"total_quota": 12.5, "keys": [{"name": "k1", "remai'),
    "HTML with 200": reply_raw(b"<html>maintenance</html>", content_type="text/html"),
    "not an object": reply_json([{"total_quota": 1}]),
    "no total_quota": reply_json({"username": "x", "keys": []}),
    "success false": reply_json({"success": False, "message": "quota service down"}),
    "total is null": reply_json(quota(None)),  # type: ignore[arg-type]
    "total is a word": reply_json(quota("plenty")),  # type: ignore[arg-type]
    "total is NaN": reply_raw(b'{"total_quota": NaN, "keys": []}'),
    "key remainder null": reply_json(
        quota(100, [{"name": "k1", "remain_quota": None, "used_quota": 1}])
    ),
    "keys not a list": reply_json(quota(100, {"k1": 1})),  # type: ignore[arg-type]
    "body over the size bound": reply_endless(),
    "401 after good polls": REJECTED,
    "403 quoting the URL": reply_echoing_the_url(403),
    "200 quoting the URL": reply_echoing_the_url(200),
}


async def cycle_kinds(app: App) -> list[EventKind]:
    """The kinds of the main account's events in one cycle."""
    result = await app.cycle(notify=False)
    assert result.committed
    return [e.kind for e in result.events if e.account == "main"]


@pytest.fixture
async def odd():
    """A second account whose every answer is poisoned (tests.helpers.POISONS)."""
    fake = FakeCometAPI(ODD_KEY)
    await fake.start()
    yield fake
    await fake.stop()


ODD_ACCOUNT = """
[[accounts]]
name = "odd"
key = "{key}"
url = "{url}"
"""
SCENARIOS = [
    (fault, poison)
    for fault, poison in zip(UPSTREAM_FAULTS.values(), itertools.cycle(POISONS.values()))
]


@pytest.mark.parametrize(("fault", "poison"), SCENARIOS, ids=UPSTREAM_FAULTS.keys())
async def test_bad_upstream_data_is_unavailable_never_a_low_balance(
    make_config, comet, odd, tmp_path, caplog, capsys, fault, poison
):
    """Three good polls, three bad ones, then good again: the bad ones never fire a
    balance rule, never replace the last good numbers, and raise exactly one
    data-unavailable alert (at the first failure for a rejected key, else after
    `stale_after`), resolved by one notice when data returns. Meanwhile a second
    account answers a poisoned body every time: it fails alone."""
    odd.default = reply_raw(poison)
    accounts = ODD_ACCOUNT.format(key=ODD_KEY, url=odd.url)
    cfg = make_config(accounts + RULES, bot='stale_after = 2\nrequest_timeout = "1s"')
    seen = []
    async with App(cfg, retry=FAST) as app:
        comet.default = GOOD
        for _ in range(3):
            seen.append(await cycle_kinds(app))
        comet.default = fault
        for _ in range(3):
            seen.append(await cycle_kinds(app))
            latest = app.model.latest("main")
            assert latest is not None and latest.total_quota == 100
        failing = app.model.state.health["main"]
        comet.default = GOOD
        seen.append(await cycle_kinds(app))
        poisoned = app.model.state.health["odd"]
        assert poisoned.failures == 7 and poisoned.last_error.startswith("bad response")
    rejected = failing.last_error.startswith("key rejected")
    assert rejected == (fault in (REJECTED, UPSTREAM_FAULTS["403 quoting the URL"]))
    unavailable_at = 3 if rejected else 4
    expected = [[] for _ in range(7)]
    expected[unavailable_at] = [EventKind.UNAVAILABLE]
    expected[6] = [EventKind.AVAILABLE]
    assert seen == expected
    assert_no_secret(failing.last_error, *printed(caplog, capsys), files=state_files(tmp_path))


async def test_connection_refused_then_back(make_config, comet):
    cfg = make_config(RULES, bot="stale_after = 2")
    async with App(cfg, retry=FAST) as app:
        comet.default = GOOD
        seen = [await cycle_kinds(app)]
        port = comet.port
        await comet.stop()
        seen += [await cycle_kinds(app) for _ in range(3)]
        assert "cannot connect" in app.model.state.health["main"].last_error
        await comet.start(port)
        seen.append(await cycle_kinds(app))
    assert seen == [[], [], [EventKind.UNAVAILABLE], [], [EventKind.AVAILABLE]]


async def test_odd_but_valid_bodies_are_read_for_what_they_say(make_config, comet):
    """Strings for numbers, negative (= unlimited) keys, duplicate names, unknown
    fields, an empty key list, tens of thousands of keys."""

    def keys(*items: tuple[str, Any, Any]) -> list[dict[str, Any]]:
        return [{"name": n, "remain_quota": r, "used_quota": u} for n, r, u in items]

    many = keys(*((f"key-{i}", 10 + i % 7, 1) for i in range(30_000)))
    steps = [
        # numbers as strings, extra fields, an unlimited key (-1 used): nothing fires
        (
            reply_json(
                quota("100.5", keys(("k1", "50", "1"), ("free", 999999999, -1)), plan="pro")
            ),
            [],
        ),
        (reply_balance(100, keys(("k1", 50, 1), ("free", -1, 3)) + many), []),
        # two keys named k1: each its own subject; the low one fires alone
        (reply_balance(100, keys(("k1", 50, 1), ("k1", 1, 1))), [("k1 #2", EventKind.FIRE)]),
        # an empty key list: the keys are gone, so is their alert
        (reply_balance(100, []), [("k1 #2", EventKind.RESOLVE)]),
    ]
    async with App(make_config(RULES), retry=FAST) as app:
        for responder, expected in steps:
            comet.default = responder
            result = await app.cycle(notify=False)
            assert [(e.subject, e.kind) for e in result.events] == expected
        latest = app.model.latest("main")
        assert latest is not None and latest.total_quota == 100 and latest.keys == ()


# --- the program as a real process --------------------------------------------------------


@pytest.fixture
def config(write_config):
    """rules.toml with RULES, stale_after 2 and the given fakes as notifiers."""

    def write(
        tg: FakeTelegram | None = None,
        slack: FakeSlack | None = None,
        listen: str = "",
        chats: tuple[int, ...] = (CHAT,),
    ) -> str:
        sections = ""
        if tg:
            sections += f"""
[notifiers.telegram]
token = "${{TEST_TG_TOKEN}}"
chat_ids = [{", ".join(map(str, chats))}]
api_url = "{tg.url}"
"""
        if slack:
            sections += f"""
[notifiers.slack]
bot_token = "${{TEST_SLACK_BOT}}"
app_token = "${{TEST_SLACK_APP}}"
channel = "{CHANNEL}"
api_url = "{slack.url}"
"""
        return write_config(RULES, bot="stale_after = 2", listen=listen, extra=sections)

    return write


@pytest.fixture
async def tg():
    fake = FakeTelegram(TG_TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def slack():
    fake = FakeSlack(SLACK_BOT_TOKEN, SLACK_APP_TOKEN)
    fake.add_channel(CHANNEL, "alerts")
    await fake.start()
    yield fake
    await fake.stop()


async def start_bot(config: str, *extra: str) -> BotProcess:
    bot = await BotProcess("run", "-c", config, *extra, env=ENV).start()
    await bot.wait_for(lambda lines: any("bot.started" in line for line in lines))
    return bot


def logged(bot: BotProcess, event: str) -> list[str]:
    return [line for line in bot.lines if re.search(rf"\b{re.escape(event)}\b", line)]


async def http_get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


def metric(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series == (f"{name}{{{want}}}" if labels else name):
            return float(value)
    return None


async def test_memory_stays_bounded_under_huge_and_endless_bodies(tmp_path, comet, config):
    """Tens of thousands of keys, then a body four times the size bound, over and
    over: the process's peak memory stays far below what reading it all would take."""
    many = [
        {"name": f"key-{i:05d}-" + "x" * 40, "remain_quota": 50, "used_quota": 1}
        for i in range(30_000)
    ]
    comet.default = reply_endless()
    comet.push(*[reply_balance(100, many), reply_endless(), reply_endless()] * 3)
    bot = await start_bot(config())
    await comet.wait_requests(12, within=60)
    status = Path(f"/proc/{bot.proc.pid}/status").read_text()  # type: ignore[union-attr]
    peak_kib = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    assert await bot.stop() == 0
    assert peak_kib < 256 * 1024, f"peak RSS {peak_kib // 1024} MiB"
    assert logged(bot, "poll.failed") and "larger than" in bot.stderr
    assert not logged(bot, "alert.fire")
    assert_no_secret(bot.stdout, bot.stderr, files=state_files(tmp_path))


async def test_notifier_faults_delay_but_never_lose_or_repeat(tmp_path, comet, tg, slack, config):
    """Telegram answers 429 then 500 for one chat and 403 (bot blocked) for
    another; Slack hangs, then fails, then is rate limited. Each working
    destination gets the alert exactly once, the blocked chat is named in the log
    and does not hold up the others, and /metrics shows Slack's backlog while it
    is down."""
    tg.fail("sendMessage", fake_tg.retry_after(1), fake_tg.server_error(500), chat_id=CHAT)
    tg.fail_always("sendMessage", fake_tg.forbidden(), chat_id=BLOCKED_CHAT)
    release_slack = asyncio.Event()
    slack.fail(
        "chat.postMessage",
        fake_slack.stall(release_slack),
        fake_slack.rate_limited(1),
    )
    comet.default = reply_balance(10)
    bot = await start_bot(
        config(tg, slack, listen="127.0.0.1:0", chats=(CHAT, BLOCKED_CHAT)),
        "--log-format",
        "json",
    )
    await bot.wait_for(lambda lines: any("http.listening" in line for line in lines))
    (listening,) = [e for e in bot.json_lines() if e["event"] == "http.listening"]
    base = f"http://127.0.0.1:{listening['port']}"

    (alert,) = await tg.wait_sent(1, within=20)  # after the 429 and the 500
    assert alert.chat_id == CHAT and "WARNING · main / total: $10.00 left" in plain(alert.text)
    await slack.wait_calls("chat.postMessage", 1)
    status, text = await http_get(f"{base}/metrics")
    assert status == 200
    assert metric(text, "balance_bot_outbox_backlog", notifier="slack") == 1
    assert metric(text, "balance_bot_outbox_backlog", notifier="telegram") == 0
    assert metric(text, "balance_bot_notifications_total", notifier="telegram", outcome="failed")
    assert (
        metric(text, "balance_bot_balance", account="main", currency="USD", provider="cometapi")
        == 10
    )

    release_slack.set()  # the hung request fails with a 500; then 429; then it goes through
    (posted,) = await slack.wait_posted(1, within=30)
    assert posted.channel == CHANNEL
    assert "main / total: $10.00 left" in " ".join(fake_slack.text_objects(posted.blocks))
    await bot.wait_for(lambda lines: sum("delivery.sent" in line for line in lines) >= 2)
    status, text = await http_get(f"{base}/metrics")
    assert metric(text, "balance_bot_outbox_backlog", notifier="slack") == 0
    status, health = await http_get(f"{base}/healthz")
    assert status == 200

    assert await bot.stop() == 0
    assert [s.chat_id for s in tg.sent] == [CHAT]
    assert len(slack.posted) == 1
    (failed,) = [e for e in bot.json_lines() if e["event"] == "delivery.failed"]
    assert failed["destination"] == str(BLOCKED_CHAT) and "blocked" in failed["reason"]
    retries = {e["notifier"] for e in bot.json_lines() if e["event"] == "delivery.retry"}
    assert retries == {"telegram", "slack"}
    calls = [repr(c.params) for c in tg.calls] + [repr(c.args) for c in slack.calls]
    assert_no_secret(bot.stdout, bot.stderr, text, health, *calls, files=state_files(tmp_path))


async def test_sigkill_during_a_send_then_restart_delivers_the_alert(tmp_path, comet, tg, config):
    """The outcome of the interrupted send is unknown, so the restarted process
    sends it again from the outbox; the crossing is not evaluated twice."""
    release = tg.hang("sendMessage")
    comet.default = reply_balance(10)
    path = config(tg)
    bot = await start_bot(path)
    await tg.wait_calls("sendMessage", 1)
    assert len(logged(bot, "alert.fire")) == 1
    bot.kill()
    await bot.wait()
    release.set()  # the hung request ends; the fake delivered nothing

    bot = await start_bot(path)
    (alert,) = await tg.wait_sent(1)
    assert "WARNING · main / total: $10.00 left" in plain(alert.text)
    polls = len(comet.requests)
    await comet.wait_requests(polls + 2)
    assert await bot.stop() == 0
    assert not logged(bot, "alert.fire")
    assert len(tg.sent) == 1
    assert_no_secret(bot.stdout, bot.stderr, files=state_files(tmp_path))


async def test_sigkill_during_a_cycle_then_restart_fires_nothing_twice(tmp_path, comet, tg, config):
    comet.push(reply_balance(10), reply_stall(30))
    comet.default = reply_balance(10)
    path = config(tg)
    bot = await start_bot(path)
    await tg.wait_sent(1)
    await comet.wait_requests(2)  # the second poll hangs: the cycle is under way
    bot.kill()
    await bot.wait()

    bot = await start_bot(path)
    polls = len(comet.requests)
    await comet.wait_requests(polls + 2)
    assert not logged(bot, "alert.fire")
    comet.default = reply_balance(30)
    (_, resolved) = await tg.wait_sent(2)
    assert "RESOLVED · main / total: $30.00" in plain(resolved.text)
    assert await bot.stop() == 0
    assert len(tg.sent) == 2
    assert_no_secret(bot.stdout, bot.stderr, files=state_files(tmp_path))


async def test_sigterm_during_a_send_exits_0_and_keeps_the_alert(tmp_path, comet, tg, config):
    release = tg.hang("sendMessage")
    comet.default = reply_balance(10)
    path = config(tg)
    bot = await start_bot(path)
    await tg.wait_calls("sendMessage", 1)
    assert await bot.stop(signal.SIGTERM, within=30) == 0
    assert "bot.stopped" in bot.stderr
    assert not tg.sent
    release.set()

    bot = await start_bot(path)
    (alert,) = await tg.wait_sent(1)
    assert "WARNING · main / total: $10.00 left" in plain(alert.text)
    assert await bot.stop() == 0
    assert not logged(bot, "alert.fire")
    assert_no_secret(bot.stdout, bot.stderr, files=state_files(tmp_path))


# --- the secret audit ---------------------------------------------------------------------


async def test_secret_audit(tmp_path, comet, tg, slack, config):
    """One pass through the scenarios above with every secret set to a distinctive
    value: alerts and retries on both chats, /balance from allowed and refused
    chats while the upstream quotes the key back, an outage, a rejected key, a
    SIGKILL and restart, `check`, `check --json` and `validate` of a config that
    puts a token in the wrong field. Then every byte the program let out is
    searched: stdout, stderr (JSON and human), all that reached the fake
    Telegram and Slack, /metrics, /healthz, the state file with its WAL."""
    out: list[str | bytes] = []
    path = config(tg, slack, listen="127.0.0.1:0")
    tg.fail("sendMessage", fake_tg.retry_after(1))
    slack.fail("chat.postMessage", fake_slack.rate_limited(1))
    keys = [{"name": "prod <&>", "remain_quota": 1, "used_quota": 2}]
    comet.default = reply_balance(10, keys)

    bot = await start_bot(path, "--log-format", "json")
    await bot.wait_for(lambda lines: any("http.listening" in line for line in lines))
    (listening,) = [e for e in bot.json_lines() if e["event"] == "http.listening"]
    base = f"http://127.0.0.1:{listening['port']}"
    await tg.wait_sent(1, within=20)
    await slack.wait_posted(1, within=20)

    comet.default = reply_echoing_the_url(503)  # /balance fetches afresh and fails
    await comet.wait_requests(len(comet.requests) + 1)
    await tg.message(CHAT, "/balance")
    await tg.message(STRANGER, "/balance")
    allowed = await slack.slash("", channel_id=CHANNEL)
    refused = await slack.slash("status", channel_id="C0ELSEWHERE")
    await slack.wait_responses(allowed)
    await slack.wait_responses(refused)
    await bot.wait_for(lambda lines: any("alert.unavailable" in line for line in lines))
    await tg.wait_sent(4, within=20)  # the alerts, 2 answers, data unavailable
    comet.default = reply_echoing_the_url(200)
    await comet.wait_requests(len(comet.requests) + 3)
    _, metrics = await http_get(base + "/metrics")
    status, health = await http_get(base + "/healthz")
    out += [metrics, health]
    assert "balance_bot_balance" in metrics
    assert status == 503 and '"failing": ["main"]' in health
    out += [bot.stdout, bot.stderr, *(f.read_bytes() for f in state_files(tmp_path))]
    bot.kill()
    await bot.wait()
    out += [bot.stdout, bot.stderr]

    comet.default = reply_echoing_the_url(403)  # the key is rejected, and quoted
    bot = await start_bot(path)
    await bot.wait_for(lambda lines: any("key rejected" in line for line in lines))
    assert await bot.stop() == 0
    out += [bot.stdout, bot.stderr]

    for args in (("check",), ("check", "--json")):
        check = await BotProcess(*args, "-c", path, env=ENV).start()
        assert await check.wait() == 3
        out += [check.stdout, check.stderr]
    bad = tmp_path / "bad.toml"
    bad.write_text(
        Path(path).read_text().replace('interval = "1s"', 'interval = "${TEST_TG_TOKEN}"')
    )
    validate = await BotProcess("validate", "-c", str(bad), env=ENV).start()
    assert await validate.wait() == 3
    out += [validate.stdout, validate.stderr]

    out += [repr(c.params) for c in tg.calls] + [repr(s.text) for s in tg.sent]
    out += [repr(c.args) for c in slack.calls] + [repr(p.args) for p in slack.posted]
    out += [repr(r) for rs in slack.responses.values() for r in rs]
    # The scan is only as good as what it reads: the secrets were in play, the
    # chats got the answers, and each failure path left its trace.
    assert all(r.query["key"] == QUERY_KEY for r in comet.requests)
    assert any("DATA UNAVAILABLE · main: HTTP 503" in plain(s.text) for s in tg.sent)
    assert [plain(s.text) for s in tg.sent if s.chat_id == STRANGER] == [
        "Sorry, this chat is not allowed to use balance-bot."
    ]
    assert "key=***" in health  # the upstream quoted the key; /healthz shows it masked
    assert "${TEST_TG_TOKEN}" in validate.stdout + validate.stderr
    assert_no_secret(*out, files=state_files(tmp_path))


# --- the secret audit, part two: a key quoted anywhere in an error text ------------------


def fragments(secret: str, size: int = 8) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


async def test_error_bodies_quoting_the_key_at_any_offset_never_leak_a_fragment(comet):
    """The upstream quotes the key anywhere in an error text (0 to 300 characters
    in): the reason, and the chat line made from it, keep no part of it."""
    account = Account("main", QUERY_KEY, comet.url)
    carriers = {
        "400 page": lambda text: web.Response(status=400, text=text),
        "HTML with 200": lambda text: web.Response(text=text, content_type="text/html"),
        "success false": lambda text: web.json_response({"success": False, "message": text}),
    }
    async with Client.new_session() as session:
        client = Client(session, 2.0, ONE_TRY)
        for name, reply in carriers.items():
            for offset in range(301):
                text = "é" * (offset % 3) + "x" * offset + QUERY_KEY + " trailing words" * 5

                async def respond(_: web.Request, text: str = text, reply: Any = reply):
                    return reply(text)

                comet.default = respond
                result = await client.poll(account)
                assert isinstance(result, PollFailure), name
                event = Event(EventKind.UNAVAILABLE, "main", T0, reason=result.reason)
                shown = result.reason + plain_line(event_line(event))
                leaked = [f for f in fragments(QUERY_KEY) if f in shown]
                assert not leaked, (name, offset, result.reason)
