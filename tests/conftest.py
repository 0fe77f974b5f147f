from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bot import config as config_mod
from bot.common import secrets
from bot.config import Config
from fakes.cometapi import FakeCometAPI
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram
from tests.stores import pg_server, postgres_opener, sqlite_opener  # noqa: F401 - fixtures

QUERY_KEY = "sk-query-SECRET-4f9d2c7e1b"
TG_TOKEN = "123456789:AAFakeTokenForTests_abcdefghijklmnopq"
BOT_TOKEN, APP_TOKEN = "xoxb-1-fake-bot-token", "xapp-1-fake-app-token"
ALERTS, ONCALL_CHANNEL = "C0ALERTS01", "C0ONCALL01"


def printed(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """All a test wrote to stdout/stderr and logged during setup and call: messages,
    structured fields and tracebacks, to be searched for secrets."""
    out = capsys.readouterr()
    texts = [out.out, out.err]
    for record in caplog.get_records("setup") + caplog.get_records("call"):
        texts.append(record.getMessage())
        texts.append(repr(getattr(record, "fields", None)))
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
        if record.exc_text:
            texts.append(record.exc_text)
    return texts


@pytest.fixture(autouse=True)
def _clean_secrets() -> None:
    secrets.registry.clear()


@pytest.fixture(autouse=True)
def _cometapi_titles() -> None:
    """Titles say "CometAPI" until an App configures other providers."""
    from bot.notify.render import name_providers

    name_providers(["cometapi"])


@pytest.fixture(autouse=True)
def _kill_leftover_processes() -> Iterator[None]:
    yield
    from tests.process import BotProcess

    while BotProcess.running:
        BotProcess.running.pop().kill()


@pytest.fixture
async def comet() -> AsyncIterator[FakeCometAPI]:
    fake = FakeCometAPI(QUERY_KEY)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    """The fake Bot API (modules with their own `tg` fixture override this one)."""
    fake = FakeTelegram(TG_TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """The fake Slack, with an alerts and an oncall channel the bot is in."""
    fake = FakeSlack(BOT_TOKEN, APP_TOKEN)
    fake.add_channel(ALERTS, "alerts")
    fake.add_channel(ONCALL_CHANNEL, "oncall")
    await fake.start()
    yield fake
    await fake.stop()


RULES = """
[[rules]]
name = "account-low"
target = "total"
below = 20
recover_above = 25
"""


@pytest.fixture
def make_config(tmp_path: Path, comet: FakeCometAPI) -> Callable[..., Config]:
    """A Config pointed at the fake CometAPI; `extra` is appended TOML."""

    def build(extra: str = RULES, bot: str = "", listen: str = "") -> Config:
        text = f"""
[bot]
interval = "1s"
state_path = "{tmp_path / "state.db"}"
http_listen = "{listen}"
{bot}

[[accounts]]
name = "main"
key = "{QUERY_KEY}"
url = "{comet.url}"
{extra}
"""
        cfg = config_mod.parse(text)
        for s in cfg.secrets():
            secrets.register(s)
        return cfg

    return build


PROCESS_RULES = (
    RULES
    + """
[[rules]]
name = "account-empty"
target = "total"
below = 5
recover_above = 10
severity = "critical"
"""
)


@pytest.fixture
def write_config(tmp_path: Path, comet: FakeCometAPI) -> Callable[..., str]:
    """Writes rules.toml for a `python -m bot` process (key from $TEST_QUERY_KEY,
    interval 1s); `bot` adds [bot] options, `accounts` options of the account,
    `extra` more sections after the rules (e.g. notifiers). Returns its path."""

    def write(
        rules: str = PROCESS_RULES,
        bot: str = "",
        accounts: str = "",
        listen: str = "",
        extra: str = "",
    ) -> str:
        path = tmp_path / "rules.toml"
        path.write_text(f"""
[bot]
interval = "1s"
state_path = "{tmp_path / "state.db"}"
http_listen = "{listen}"
request_timeout = "1s"
{bot}

[[accounts]]
name = "main"
key = "${{TEST_QUERY_KEY}}"
url = "{comet.url}"
{accounts}
{rules}
{extra}
""")
        return str(path)

    return write
