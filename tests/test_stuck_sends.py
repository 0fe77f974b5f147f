"""A receiver that never finishes its answer (fakes/trickle.py: one byte every 2 s)
holds back only its own destination: the others get every alert, and SIGTERM,
test-notify and check end within their bounds. The real Apprise library and
aiohttp talk to loopback receivers; in-process tests shrink the deadlines, the
process tests run with the real ones."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable

import pytest

from bot.app.service import App
from bot.common.backoff import Backoff
from bot.notifiers import apprise as apprise_notifier
from bot.notifiers import webhook as webhook_notifier
from bot.notifiers.blocking import LIMIT, BlockingCalls, Busy
from bot.notify.delivery import Outcome
from fakes.cometapi import reply_balance
from fakes.trickle import TrickleServer
from fakes.webhook import FakeWebhook
from tests.conftest import QUERY_KEY, RULES
from tests.helpers import FAST
from tests.process import BotProcess, run_bot

ENV = {"TEST_QUERY_KEY": QUERY_KEY}
TOKEN = "tok-SECRET-trickle-5e1"  # in the stuck URL's path: never in a log line
# the threads of a default ThreadPoolExecutor, as the loop's default pool and
# Apprise's shared one have them: more stuck calls than this filled either
POOL = min(32, (os.cpu_count() or 1) + 4)
NO_WAIT = Backoff(initial=0.01, maximum=0.01, jitter=0)
# fire, resolve, fire, resolve, fire: five alerts, one message each
BALANCES = (10, 30, 10, 30, 10)
KINDS = ["warning", "success", "warning", "success", "warning"]


@pytest.fixture
async def trickle() -> AsyncIterator[TrickleServer]:
    fake = await TrickleServer().start()
    yield fake
    await fake.stop()  # hangs up: the calls stuck on it end


@pytest.fixture
async def mute() -> AsyncIterator[TrickleServer]:
    """A receiver that trickles even its status line: not even a status arrives."""
    fake = await TrickleServer(headers_first=False).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def hook() -> AsyncIterator[FakeWebhook]:
    fake = await FakeWebhook().start()
    yield fake
    await fake.stop()


def json_url(port: int, path: str = "hooks/healthy") -> str:
    return f"json://127.0.0.1:{port}/{path}"


def apprise_section(*urls: str) -> str:
    return "\n[notifiers.apprise]\nurls = [" + ", ".join(f'"{u}"' for u in urls) + "]\n"


def webhook_section(url: str) -> str:
    return f'\n[notifiers.webhook]\nurl = "{url}"\n'


class Outcomes:
    """Every delivery outcome of an App, to wait on."""

    def __init__(self, app: App) -> None:
        self.seen: list[Outcome] = []
        self._changed = asyncio.Event()
        report = app.delivery.on_outcome

        def record(outcome: Outcome) -> None:
            report(outcome)
            self.seen.append(outcome)
            self._changed.set()

        app.delivery.on_outcome = record

    def of(self, notifier: str, destination: str) -> list[Outcome]:
        return [o for o in self.seen if (o.notifier, o.destination) == (notifier, destination)]

    async def until(self, done: Callable[[], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not done():
                self._changed.clear()
                await self._changed.wait()


async def alerts_reach_the_healthy_one(
    app: App, comet, hook: FakeWebhook, outcomes: Outcomes, stuck: tuple[str, str]
) -> None:
    """The first alert; the stuck destination retried more often than a shared
    pool has threads; then four alerts more: the healthy receiver gets all five."""
    delivering = asyncio.create_task(app.delivery.run())
    try:
        comet.default = reply_balance(BALANCES[0])
        await app.cycle()
        await outcomes.until(lambda: len(outcomes.of(*stuck)) > POOL + 2)
        for balance in BALANCES[1:]:
            comet.default = reply_balance(balance)
            await app.cycle()
        await hook.wait_received(len(BALANCES), within=15)
    finally:
        app.delivery.stop()
        await delivering


# --- the threads: a deadline per call, a few threads per destination ---------------------


async def test_stuck_calls_hold_back_only_their_own_destination(caplog):
    calls = BlockingCalls("demo", limit=2)
    release = threading.Event()
    for _ in range(2):
        with pytest.raises(TimeoutError):
            await calls.run("a", "#1", 0.05, release.wait)
    assert calls.running("a") == 2  # left running in their threads
    with pytest.raises(Busy, match="still waiting for 2 earlier sends"):
        await calls.run("a", "#1", 5, lambda: "never started")
    assert await calls.run("b", "#2", 5, lambda: "sent") == "sent"  # another destination
    stuck = [t for t in threading.enumerate() if t.name == "demo #1"]
    assert len(stuck) == 2 and all(t.daemon for t in stuck)  # nothing joins them at exit
    release.set()
    for thread in stuck:
        await asyncio.to_thread(thread.join, 5)
    assert calls.running("a") == 0
    assert await calls.run("a", "#1", 5, lambda: "sent again") == "sent again"
    lines = [r for r in caplog.records if r.getMessage() == "demo.stuck"]
    assert [r.fields["destination"] for r in lines] == ["#1", "#1"]  # type: ignore[attr-defined]


async def test_a_failing_call_raises_its_error_and_frees_its_thread():
    calls = BlockingCalls("demo", limit=1)

    def fail() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await calls.run("a", "#1", 5, fail)
    assert calls.running("a") == 0


# --- in the process: the healthy destination gets every alert -----------------------------


async def test_a_trickling_apprise_url_holds_back_only_itself(
    make_config, comet, trickle, hook, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(apprise_notifier, "NOTIFY_TIMEOUT", 0.2)
    urls = (json_url(trickle.port, f"hooks/{TOKEN}"), json_url(hook.port))
    async with App(make_config(RULES + apprise_section(*urls)), retry=FAST, backoff=NO_WAIT) as app:
        outcomes = Outcomes(app)
        await app.start_notifiers(listen=False)
        await alerts_reach_the_healthy_one(app, comet, hook, outcomes, ("apprise", "1"))
    assert [r.status for r in hook.received] == [200] * len(BALANCES)
    assert [r.json["type"] for r in hook.received] == KINDS
    stuck = outcomes.of("apprise", "1")
    assert {o.outcome for o in stuck} == {"retry"}
    # the first calls ran out of time; while they hang on, no new thread is started
    assert trickle.requests == LIMIT
    reasons = [o.reason for o in stuck]
    assert reasons[:LIMIT] == ["Apprise #1 (json): no answer within 0.2s"] * LIMIT
    assert set(reasons[LIMIT:]) == {
        f"Apprise #1 (json): not sent: still waiting for {LIMIT} earlier sends to this destination"
    }
    lines = [r for r in caplog.records if r.getMessage() == "apprise.stuck"]
    assert [r.fields["destination"] for r in lines] == ["#1 (json)"] * LIMIT  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if TOKEN in r.getMessage() + repr(r.__dict__)]


async def test_a_mute_webhook_holds_back_only_itself(make_config, comet, mute, hook, monkeypatch):
    monkeypatch.setattr(webhook_notifier, "REQUEST_TIMEOUT", 0.1)
    extra = webhook_section(mute.url) + apprise_section(json_url(hook.port))
    async with App(make_config(RULES + extra), retry=FAST, backoff=NO_WAIT) as app:
        outcomes = Outcomes(app)
        await app.start_notifiers(listen=False)
        await alerts_reach_the_healthy_one(app, comet, hook, outcomes, ("webhook", "default"))
    assert [r.json["type"] for r in hook.received] == KINDS
    stuck = outcomes.of("webhook", "default")
    assert {o.reason for o in stuck} == {f"webhook 127.0.0.1:{mute.port}: no answer within 0.1s"}
    assert mute.requests == len(stuck)  # each retry a POST of its own, each given up in time


async def test_a_webhook_answer_counts_once_its_status_is_in(trickle):
    """Headers, then a body one byte every 2 s: the 2xx status is the answer."""
    from zoneinfo import ZoneInfo

    from bot.notifiers import NotifierContext

    config = webhook_notifier.WebhookConfig.model_validate({"url": trickle.url})
    context = NotifierContext(None, ZoneInfo("UTC"))  # type: ignore[arg-type]
    notifier = webhook_notifier.WebhookNotifier("webhook", config, context)
    try:
        await asyncio.wait_for(notifier.send("default", b"{}"), 5)
    finally:
        await notifier.stop()
    assert trickle.requests == 1


# --- as a process: SIGTERM, test-notify and check end in time ----------------------------


async def test_sigterm_exits_in_time_with_sends_stuck(write_config, comet, trickle, mute, hook):
    comet.default = reply_balance(10)
    urls = (json_url(trickle.port, f"hooks/{TOKEN}"), json_url(hook.port))
    path = write_config(extra=apprise_section(*urls) + webhook_section(mute.url))
    bot = await BotProcess("run", "-c", path, env=ENV).start()
    await hook.wait_received(1, within=30)
    await trickle.wait_requests(1)
    await mute.wait_requests(1)  # both stuck sends are under way
    started = asyncio.get_running_loop().time()
    assert await bot.stop(signal.SIGTERM, within=20) == 0, bot.stderr
    took = asyncio.get_running_loop().time() - started
    assert took <= 12, f"{took:.1f}s from SIGTERM to the exit\n{bot.stderr}"
    assert "Traceback" not in bot.stderr and TOKEN not in bot.stderr


async def test_test_notify_and_check_end_in_time(write_config, comet, trickle, hook):
    comet.default = reply_balance(10)
    urls = (json_url(trickle.port, f"hooks/{TOKEN}"), json_url(hook.port))
    path = write_config(extra=apprise_section(*urls))
    # their 30 s bound, and the interpreter's start-up
    notify, check = await asyncio.gather(
        run_bot("test-notify", "-c", path, env=ENV, within=35),
        run_bot("check", "-c", path, env=ENV, within=35),
    )
    assert notify.stdout.splitlines() == [
        "apprise #1 (json): failed: no answer within 15s — check the network",
        "apprise #2 (json): ok",
    ]
    assert notify.proc.returncode == 1  # type: ignore[union-attr]
    assert check.stdout.startswith("BALANCE WARNING - "), check.stdout
    assert check.proc.returncode == 1  # type: ignore[union-attr]
    assert "delivery.deferred" in check.stderr  # the stuck one waits in the outbox
    titles = sorted(r.json["title"] for r in hook.received)
    assert titles == ["CometAPI balance: 1 warning", "balance-bot test message"]
    for run in (notify, check):
        assert "Traceback" not in run.stderr and TOKEN not in run.stderr + run.stdout
