"""/healthz and /metrics of a serving App, over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.app.service import App, StartupError
from fakes.cometapi import reply_balance, reply_status
from tests.conftest import QUERY_KEY
from tests.helpers import FAST


class Served:
    def __init__(self, app: App, stop: asyncio.Event, task: asyncio.Task) -> None:
        self.app, self.stop, self.task = app, stop, task

    @property
    def base(self) -> str:
        assert self.app.web is not None
        return f"http://127.0.0.1:{self.app.web.port}"

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(self.base + path) as r:
            return r.status, await r.text()


@pytest.fixture
async def serve(make_config) -> AsyncIterator:
    running: list[Served] = []

    async def start(bot: str = "") -> Served:
        cfg = make_config(bot=bot, listen="127.0.0.1:0")
        ready = asyncio.Event()
        stop = asyncio.Event()
        app = App(cfg, retry=FAST)
        await app.__aenter__()
        task = asyncio.create_task(app.serve(stop, ready=lambda _: ready.set()))
        await asyncio.wait_for(ready.wait(), 10)
        served = Served(app, stop, task)
        running.append(served)
        return served

    yield start
    for s in running:
        s.stop.set()
        await asyncio.wait_for(s.task, 15)
        await s.app.__aexit__(None, None, None)


async def cycles(served: Served, count: int) -> None:
    """Wait until `count` more poll cycles have completed."""
    monitor = served.app.pipeline
    async with asyncio.timeout(15):
        await monitor.wait_cycles(monitor.cycles_done + count)


async def test_healthz_ok_with_per_account_detail(serve, comet):
    comet.default = reply_balance(100)
    served = await serve()
    await cycles(served, 1)
    status, body = await served.get("/healthz")
    assert status == 200
    import json

    data = json.loads(body)
    assert data["status"] == "ok" and data["scheduler"] == "running"
    assert data["accounts"]["main"]["outcome"] == "ok"
    assert data["accounts"]["main"]["last_poll"] and data["accounts"]["main"]["last_success"]
    assert QUERY_KEY not in body


async def test_healthz_turns_503_after_three_intervals_of_failure_and_back(serve, comet):
    import json

    comet.default = reply_balance(100)
    served = await serve()
    await cycles(served, 1)
    comet.default = reply_status(502)
    failing_since = served.app.clock()
    while (served.app.clock() - failing_since).total_seconds() <= 3.2:
        await cycles(served, 1)
    status, body = await served.get("/healthz")
    assert status == 503, body
    data = json.loads(body)
    assert data["failing"] == ["main"]
    assert data["accounts"]["main"]["outcome"] == "unreachable"
    assert "HTTP 502" in data["accounts"]["main"]["error"]
    assert data["accounts"]["main"]["failing_since"]
    assert QUERY_KEY not in body
    comet.default = reply_balance(100)
    await cycles(served, 2)
    status, _ = await served.get("/healthz")
    assert status == 200


async def test_metrics_expose_balances_keys_alerts_and_backlog(serve, comet):
    keys = [
        {"name": 'we"ird\nname', "remain_quota": 3.5, "used_quota": 1},
        {"name": "unlimited", "remain_quota": 999999999, "used_quota": -1},
    ]
    comet.default = reply_balance(12.5, keys)
    served = await serve()
    await cycles(served, 1)
    await served.app.delivery.deliver_due()
    status, text = await served.get("/metrics")
    assert status == 200
    assert 'balance_bot_balance{account="main",currency="USD",provider="cometapi"} 12.5' in text
    # the newline was stripped where the name came in (README, "How alerts behave")
    assert (
        'balance_bot_key_remaining{account="main",currency="USD",key="we\\"irdname",provider="cometapi"} 3.5'
        in text
    )
    assert 'key="unlimited"' not in text
    assert 'balance_bot_alerts_firing{rule="account-low",severity="warning"} 1.0' in text
    assert 'balance_bot_notifications_total{notifier="log",outcome="delivered"} 1.0' in text
    assert 'balance_bot_outbox_backlog{notifier="log"} 0.0' in text
    assert "balance_bot_build_info{" in text
    assert "balance_bot_cycle_duration_seconds_count" in text
    comet.default = reply_status(500)
    await cycles(served, 1)
    _, text = await served.get("/metrics")
    assert (
        'balance_bot_poll_failures_total{account="main",kind="unreachable",provider="cometapi"} 1.0'
        in text
    )
    assert QUERY_KEY not in text


async def test_slow_polls_never_overlap(serve, comet):
    from aiohttp import web

    from fakes.cometapi import quota

    in_flight = peak = 0

    async def slow(request):
        nonlocal in_flight, peak
        if "start_date" in request.query:  # the seeding request at start is no poll
            return web.json_response(quota(100))
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(2.2)  # upstream latency longer than the 1 s interval
        in_flight -= 1
        return web.json_response(quota(100))

    comet.default = slow
    served = await serve()
    await cycles(served, 2)
    assert peak == 1


async def test_a_dead_internal_task_is_logged_and_turns_healthz_503(serve, comet, caplog):
    comet.default = reply_balance(100)
    served = await serve()
    await cycles(served, 1)
    assert (await served.get("/healthz"))[0] == 200

    async def broken() -> None:
        raise RuntimeError("delivery bug")

    served.app.tasks.spawn("delivery", broken())
    async with asyncio.timeout(5):
        while "delivery" not in served.app.tasks.dead:  # noqa: ASYNC110 - set by a done callback
            await asyncio.sleep(0.01)
    status, body = await served.get("/healthz")
    data = json.loads(body)
    assert status == 503 and data["status"] == "failing"
    assert data["dead_tasks"]["delivery"]["error"] == "RuntimeError: delivery bug"
    (record,) = [r for r in caplog.records if r.getMessage() == "task.died"]
    assert record.fields["task"] == "delivery"


async def test_a_failure_at_start_up_stops_what_had_started(make_config, comet):
    """Chat listeners fail to start: serve() fails, and the scheduler and the
    outbox task it had started are stopped, not left running."""
    cfg = make_config(listen="127.0.0.1:0")
    app = App(cfg, retry=FAST)
    await app.__aenter__()

    async def broken(listen: bool) -> None:
        raise RuntimeError("listeners broke")

    app.start_notifiers = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="listeners broke"):
        await app.serve(asyncio.Event())
    await app.__aexit__(None, None, None)
    assert app._scheduler is not None and not app._scheduler.running
    assert app._deliveries is not None and app._deliveries.done()
    assert app.web is not None
    with pytest.raises(ConnectionRefusedError):  # the web server is gone too
        await asyncio.open_connection("127.0.0.1", app.web.port)


async def test_the_health_port_taken_is_one_clear_error(make_config, comet):
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        async with App(make_config(listen=f"127.0.0.1:{port}"), retry=FAST) as app:
            with pytest.raises(
                StartupError, match=f"bot.http_listen: cannot listen on 127.0.0.1:{port}"
            ):
                await app.serve(asyncio.Event())
    finally:
        blocker.close()
    assert app._scheduler is None and not comet.requests  # nothing had started


async def test_the_metrics_page_renders_off_the_event_loop(serve, comet, monkeypatch):
    """A page of thousands of series takes about a second to render: in a worker
    thread, so /healthz (and polls, sends, commands) answer meanwhile."""
    import threading

    from bot.ops import metrics as metrics_mod

    comet.default = reply_balance(100)
    served = await serve()
    await cycles(served, 1)
    rendering, finish = threading.Event(), threading.Event()
    real = metrics_mod.generate_latest

    def slow(registry):  # stands for a big page: holds its thread until told
        rendering.set()
        finish.wait(10)
        return real(registry)

    monkeypatch.setattr(metrics_mod, "generate_latest", slow)
    page = asyncio.create_task(served.get("/metrics"))
    await asyncio.to_thread(rendering.wait, 10)
    status, _ = await served.get("/healthz")  # answered while the page is still rendering
    assert status == 200 and not page.done()
    finish.set()
    status, body = await page
    assert (
        status == 200
        and 'balance_bot_balance{account="main",currency="USD",provider="cometapi"} 100.0' in body
    )
