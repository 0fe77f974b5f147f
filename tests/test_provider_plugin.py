"""Providers are plugins: the example of docs/providers.md, registered through
an entry point of the `balance_bot.providers` group exactly as an installed
package's would be (nothing installed), reads a loopback fake Moonshot, and its
account alerts in its currency through the real pipeline."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from aiohttp import web

from bot.app.service import App
from bot.common import plugins
from bot.common.plugins import PROVIDER_GROUP
from bot.config import ConfigError, parse
from bot.ops.web import WebServer
from tests.helpers import FAST
from tests.process import ROOT

MOONSHOT_KEY = "sk-moonshot-test-0123456789abcdef"


def example_source() -> str:
    page = (ROOT / "docs" / "providers.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    return code


def test_the_example_is_about_30_lines():
    assert len(example_source().strip().splitlines()) <= 31


def test_every_builtin_provider_is_an_entry_point():
    points = plugins.available_providers()
    assert {"cometapi", "newapi", "openrouter", "deepseek"} <= set(points)
    for name in ("cometapi", "newapi", "openrouter", "deepseek"):
        provider = plugins.load_provider(name)
        assert provider.name == name
        assert all(hasattr(provider, a) for a in ("default_url", "keys", "used", "seeds"))


@pytest.fixture
def moonshot_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example as a module on the path, plus its entry point: what
    `pip install balance-bot-moonshot` would leave behind."""
    (tmp_path / "balance_bot_moonshot.py").write_text(example_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "balance_bot_moonshot", raising=False)
    point = EntryPoint("moonshot", "balance_bot_moonshot:Moonshot", PROVIDER_GROUP)
    installed = {**plugins.available_providers(), "moonshot": point}
    monkeypatch.setattr(plugins, "available_providers", lambda: installed)


@pytest.fixture
async def moonshot():
    balance = {"value": 30.0}

    async def handle(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {MOONSHOT_KEY}":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        data = {"available_balance": balance["value"], "voucher_balance": 0, "cash_balance": 0}
        return web.json_response({"code": 0, "data": data, "scode": "0x0", "status": True})

    app = web.Application()
    app.router.add_get("/v1/users/me/balance", handle)
    server = WebServer(app, "127.0.0.1", 0, shutdown_timeout=0.5)
    await server.start()
    yield f"http://127.0.0.1:{server.port}", balance
    await server.stop()


def config(tmp_path: Path, url: str, provider: str = "moonshot"):
    return parse(f"""
[bot]
interval = "1s"
state_path = "{tmp_path / "state.db"}"
http_listen = ""

[[accounts]]
name = "kimi"
provider = "{provider}"
url = "{url}"
key = "{MOONSHOT_KEY}"
currency = "CNY"

[[rules]]
name = "low"
target = "total"
below = 50
""")


def test_without_the_plugin_validate_names_the_installed_ones(tmp_path):
    with pytest.raises(ConfigError) as info:
        config(tmp_path, "http://127.0.0.1:1")
    (problem,) = info.value.problems
    assert problem.startswith("accounts[0].provider: unknown provider 'moonshot' (installed: ")
    assert "cometapi, deepseek, newapi, openrouter" in problem


async def test_a_third_party_provider_plugs_in(tmp_path, moonshot_installed, moonshot, caplog):
    caplog.set_level(logging.INFO)
    url, balance = moonshot
    cfg = config(tmp_path, url)
    async with App(cfg, retry=FAST) as app:
        await app.cycle()
        await asyncio.wait_for(app.delivery.deliver_due(), 5)
        snap = app.model.snapshots["kimi"]
        assert (snap.total_quota, snap.currency, snap.used_derived) == (30.0, "CNY", True)
        balance["value"] = 24.5
        await app.cycle()
        assert app.model.snapshots["kimi"].total_used_quota == 5.5  # derived from the drop
    logged = "\n".join(r.getMessage() + repr(getattr(r, "fields", "")) for r in caplog.records)
    assert "WARNING · kimi / total: ¥30.00 left (below ¥50.00; resolves at ¥55.00)" in logged
