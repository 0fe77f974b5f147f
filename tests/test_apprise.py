"""The apprise notifier: the real Apprise library posting json:// and form:// to a
loopback receiver (fakes/webhook.py) on the test's own event loop."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from bot.app.service import App
from bot.common.secrets import MASK, redact
from bot.config import ConfigError
from bot.engine.model import Event, EventKind, Severity
from bot.notifiers import DeliveryError, NotifierContext
from bot.notifiers.apprise import (
    BODY_LIMIT,
    EXTRA_MISSING,
    AppriseConfig,
    AppriseNotifier,
    Post,
    notify_type,
    secret_parts,
)
from bot.notifiers.message import Message, Section, Span
from fakes.cometapi import reply_balance
from fakes.webhook import FakeWebhook, reply_status
from tests.conftest import printed
from tests.helpers import FAST, QUICK

USER, PASSWORD = "balance-user-7", "pa55-SECRET-word"
TOKEN, FORM_TOKEN = "tok-SECRET123", "tok-SECRET456"
SECRETS = (USER, PASSWORD, TOKEN, FORM_TOKEN, "SECRET")
ROOT = Path(__file__).resolve().parent.parent

RULE = """
[[rules]]
name = "account-low"
target = "total"
below = 20
recover_above = 25
"""


# --- fixtures and helpers ---------------------------------------------------------


@pytest.fixture
async def hook():
    fake = FakeWebhook()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def other_hook():
    fake = FakeWebhook()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(autouse=True)
def _url_secrets_never_printed(caplog, capsys):
    """Requirement: no secret part of a URL appears in any log record or output,
    in every test, with Apprise and urllib3 logging at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for library in ("apprise", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=library)
    yield
    leaked = [t for t in printed(caplog, capsys) if any(s in t for s in SECRETS)]
    assert not leaked, leaked[:3]


def json_url(fake: FakeWebhook, token: str = TOKEN, auth: bool = True) -> str:
    """A json:// URL to the receiver, with a user, a password and a token in its path."""
    user = f"{USER}:{PASSWORD}@" if auth else ""
    return f"json://{user}127.0.0.1:{fake.port}/hooks/{token}"


def form_url(fake: FakeWebhook) -> str:
    return f"form://127.0.0.1:{fake.port}/form/{FORM_TOKEN}"


def apprise_section(*urls: str) -> str:
    listed = ", ".join(f'"{u}"' for u in urls)
    return f"\n[notifiers.apprise]\nurls = [{listed}]\n"


def _app(cfg, **kw) -> App:
    return App(cfg, retry=FAST, backoff=QUICK, **kw)


def outbox(app: App) -> list[tuple[str, str, int, str]]:
    return app.store._conn.execute(
        "SELECT destination, status, attempts, last_error FROM outbox ORDER BY destination, id"
    ).fetchall()


def _notifier(*urls: str) -> AppriseNotifier:
    config = AppriseConfig.model_validate({"urls": list(urls)})
    context = NotifierContext(None, ZoneInfo("UTC"))  # type: ignore[arg-type]
    return AppriseNotifier("apprise", config, context)


def _message(lines: int = 1, severity: Severity | None = Severity.WARNING) -> Message:
    body = tuple((Span(f"WARNING · main / key-{i}: $0.50 left"),) for i in range(lines))
    return Message("CometAPI balance: 1 warning", (Section("🔔 Firing", body),), severity)


# --- 1. an alert arrives at every URL, each its own destination -------------------------


async def test_alert_reaches_each_url_as_its_own_destination(make_config, comet, hook):
    comet.default = reply_balance(10)
    urls = (json_url(hook), json_url(hook, token="tok-SECRET-other-2", auth=False))
    async with _app(make_config(RULE + apprise_section(*urls))) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        await app.delivery.deliver_due()
        await app.cycle()  # still low: nothing new
        await app.delivery.deliver_due()
        notifier = app.notifiers["apprise"]
        destinations = list(notifier.destinations())
        labels = [notifier.label(d) for d in destinations]
        healthy = app.health()[1]["destinations"]
        rows = outbox(app)
    assert labels == ["#1 (json)", "#2 (json)"]
    assert {"apprise #1 (json)", "apprise #2 (json)"} <= set(healthy)
    assert [(d, s) for d, s, _, _ in rows] == [(d, "delivered") for d in destinations]
    by_path = {r.path: r for r in hook.received}
    assert set(by_path) == {f"/hooks/{TOKEN}", "/hooks/tok-SECRET-other-2"}
    for received in hook.received:
        body = received.json
        assert body["title"] == "CometAPI balance: 1 warning"
        assert body["message"].startswith("🔔 Firing\nWARNING · main / total: $10.00 left")
        assert "CometAPI balance" not in body["message"]  # the title is not repeated
        assert body["type"] == "warning"  # a warning looks like one
        assert received.headers["User-Agent"] == "balance-bot"
    # the first URL's user and password reached the receiver as Basic auth
    auth = by_path[f"/hooks/{TOKEN}"].headers["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(auth).decode() == f"{USER}:{PASSWORD}"
    assert "Authorization" not in by_path["/hooks/tok-SECRET-other-2"].headers


async def test_form_urls_post_the_title_and_the_plain_lines(hook):
    notifier = _notifier(form_url(hook))
    (post,) = notifier.format(_message(2, Severity.CRITICAL))
    assert await notifier.send("1", post) is None
    (received,) = hook.received
    form = {k: v[0] for k, v in parse_qs(received.body.decode()).items()}
    assert received.path == f"/form/{FORM_TOKEN}" and notifier.label("1") == "#1 (form)"
    assert form["title"] == "CometAPI balance: 1 warning"
    assert form["message"] == "🔔 Firing\nWARNING · main / key-0: $0.50 left\n" + (
        "WARNING · main / key-1: $0.50 left"
    )
    assert form["type"] == "failure"  # critical


# --- 2. failures are retried until delivered; one URL does not hold up another ----------


async def test_a_failing_url_is_retried_until_delivered(
    make_config, comet, hook, other_hook, caplog
):
    comet.default = reply_balance(10)
    hook.fail(reply_status(500, "down"), reply_status(503, "still down"))
    cfg = make_config(RULE + apprise_section(json_url(hook), json_url(other_hook)))
    async with _app(cfg) as app:
        await app.start_notifiers(listen=False)
        loop = asyncio.create_task(app.delivery.run())
        try:
            await app.cycle()
            await other_hook.wait_received(1)
            await hook.wait_received(3)
        finally:
            app.delivery.stop()
            await loop
        assert await app.delivery.deliver_due() is None
        rows = outbox(app)
    assert [r.status for r in hook.received] == [500, 503, 200]
    assert [r.status for r in other_hook.received] == [200]  # sent at once, not held up
    assert rows == [("1", "delivered", 2, ""), ("2", "delivered", 0, "")]
    retries = [r.fields for r in caplog.records if r.getMessage() == "delivery.retry"]
    assert [r["reason"] for r in retries] == ["Apprise #1 (json): not delivered"] * 2
    assert [r["destination"] for r in retries] == ["#1 (json)", "#1 (json)"]  # its label
    # Apprise's own line says why, with the URL's secrets masked
    failures = [r.getMessage() for r in caplog.records if r.name == "apprise"]
    assert any("error=500" in m for m in failures)


async def test_every_failure_is_a_retryable_delivery_error(hook):
    port = hook.port
    await hook.stop()  # nothing listens: a connection error
    notifier = _notifier(f"json://{USER}:{PASSWORD}@127.0.0.1:{port}/hooks/{TOKEN}")
    (post,) = notifier.format(_message())
    with pytest.raises(DeliveryError) as caught:
        await notifier.send("1", post)
    assert not caught.value.permanent and caught.value.retry_after is None
    assert caught.value.reason == "Apprise #1 (json): not delivered"


async def test_notify_runs_off_the_event_loop(hook):
    """The receiver runs on this loop: it can only answer while Apprise waits in a thread."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(_: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.Response(text="ok")

    hook.fail(held)
    notifier = _notifier(json_url(hook))
    (post,) = notifier.format(_message())
    sending = asyncio.create_task(notifier.send("1", post))
    await asyncio.wait_for(arrived.wait(), 10)
    assert not sending.done()  # Apprise waits for the answer, the loop goes on
    release.set()
    assert await asyncio.wait_for(sending, 10) is None
    assert [r.status for r in hook.received] == [200]


# --- 3. long messages are split under the limit ------------------------------------------


def test_a_long_message_is_split_between_lines_under_the_limit():
    notifier = _notifier("json://127.0.0.1:9/hooks/x")
    message = _message(400)
    posts = notifier.format(message)
    assert len(posts) > 1
    total = len(posts)
    assert [p.title for p in posts] == [
        f"CometAPI balance: 1 warning ({i}/{total})" for i in range(1, total + 1)
    ]
    assert all(0 < len(p.body) <= BODY_LIMIT for p in posts)
    lines = [line for p in posts for line in p.body.split("\n") if "key-" in line]
    assert lines == [f"WARNING · main / key-{i}: $0.50 left" for i in range(400)]
    assert posts[1].body.startswith("🔔 Firing (continued)\n")  # the heading, repeated


def test_a_short_message_is_one_post_with_the_plain_lines():
    notifier = _notifier("json://127.0.0.1:9/hooks/x")
    message = _message(3)
    assert notifier.format(message) == [
        Post(message.title, "\n".join(message.plain_lines()[1:]), "warning")
    ]
    assert notifier.format(Message("Just a title", ())) == [
        Post("Just a title", "Just a title", "info")
    ]


def test_how_urgent_a_message_looks():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    resolve = Event(EventKind.RESOLVE, "main", at, rule="r", subject="total")
    available = Event(EventKind.AVAILABLE, "main", at)
    unavailable = Event(EventKind.UNAVAILABLE, "main", at)
    assert notify_type(Message("x", (), Severity.CRITICAL)) == "failure"
    assert notify_type(Message("x", (), Severity.WARNING)) == "warning"
    assert notify_type(Message("x", (), events=(resolve, available))) == "success"
    assert notify_type(Message("x", (), events=(unavailable,))) == "warning"
    assert notify_type(Message("x", (), kind="digest")) == "info"


# --- 4. the URLs' secrets -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "secret", "plain"),
    [
        (
            "discord://123456789012345678/AbCdEf-GhIjKl_MnOpQr",
            ["123456789012345678", "AbCdEf-GhIjKl_MnOpQr"],
            ["discord"],
        ),
        (
            "mailtos://alerts%40example.com:app-pass-123@smtp.example.com?to=ops@example.com",
            ["alerts@example.com", "app-pass-123", "ops@example.com"],
            ["smtp.example.com"],
        ),
        ("ntfys://ntfy.example.com/balance-alerts-x7k2", ["balance-alerts-x7k2"], ["ntfy"]),
        (
            "pagerduty://Integ0123456789abcdef@Api0123456789abcdef",
            ["Integ0123456789abcdef", "Api0123456789abcdef"],
            ["pagerduty"],
        ),
        (
            "json://127.0.0.1:8080/webhooks/run?token=abcdef&api-version=2016-06-01",
            ["abcdef"],
            ["webhooks", "127.0.0.1", "2016-06-01"],
        ),
    ],
)
def test_secret_parts_mask_credentials_not_words(url, secret, plain):
    parts = secret_parts(url)
    assert url in parts
    assert all(s in parts for s in secret), parts
    assert not any(p in parts for p in plain), parts


def test_labels_and_texts_never_show_the_url(hook):
    url = json_url(hook)
    notifier = _notifier(url)
    assert notifier.label("1") == "#1 (json)"
    shown = redact(f"posting to {url}; user {USER}, password {PASSWORD}, path /hooks/{TOKEN}")
    assert not any(s in shown for s in SECRETS) and MASK in shown
    assert logging.getLogger("apprise").filters  # Apprise's records are redacted at the source


def test_an_address_apprise_recognises_is_labelled_by_its_service():
    notifier = _notifier(
        "https://discord.com/api/webhooks/123456789012345678/AbCdEf-GhIjKl_MnOpSECRET",
        "ntfys://ntfy.example.com/balance-alerts-SECRET",
    )
    assert [notifier.label(d) for d in notifier.destinations()] == ["#1 (discord)", "#2 (ntfys)"]


# --- 5. config errors: the field, never the URL -------------------------------------------


@pytest.mark.parametrize(
    ("urls", "problem"),
    [
        (
            '["json://127.0.0.1/hooks/x", "foo://u:SECRET-pw@host/SECRET-tok"]',
            "notifiers.apprise.urls[1]: unknown scheme 'foo': Apprise has no such service",
        ),
        ('["SECRET-not-a-url"]', "notifiers.apprise.urls[0]: is not an Apprise URL"),
        (
            '["https://example.com/SECRET-hook"]',
            "notifiers.apprise.urls[0]: no Apprise service is known by this https:// address",
        ),
        (
            '["discord://SECRET-id-without-a-token"]',
            "notifiers.apprise.urls[0]: this discord:// URL is incomplete or malformed",
        ),
        ("[]", "notifiers.apprise.urls: list should have at least 1 item"),
        ('"json://127.0.0.1/hooks/SECRET-x"', "notifiers.apprise.urls: input should be a valid"),
    ],
)
def test_config_errors_name_the_url_by_index_without_printing_it(make_config, urls, problem):
    with pytest.raises(ConfigError) as caught:
        make_config(RULE + f"\n[notifiers.apprise]\nurls = {urls}\n")
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
    assert "SECRET" not in str(caught.value)


def test_unknown_keys_are_errors(make_config):
    with pytest.raises(ConfigError) as caught:
        make_config(RULE + '\n[notifiers.apprise]\nurls = ["json://127.0.0.1/x"]\nurl = "x"\n')
    assert caught.value.problems == [
        "notifiers.apprise.url: unknown key (check the spelling; see rules.example.toml)"
    ]


def test_without_the_extra_the_section_says_how_to_install_it(make_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "apprise", None)  # `import apprise` fails
    with pytest.raises(ConfigError) as caught:
        make_config(RULE + '\n[notifiers.apprise]\nurls = ["json://127.0.0.1/x", "foo://y"]\n')
    assert caught.value.problems == [f"notifiers.apprise: {EXTRA_MISSING}"]
    assert EXTRA_MISSING == (
        "[notifiers.apprise] needs the apprise extra: pip install 'cometapi-balance-bot[apprise]'"
    )


def test_everything_else_works_without_apprise_installed(tmp_path):
    """In a fresh interpreter where `import apprise` fails: the package, the apprise
    module and the other notifiers import, and a webhook config is valid."""
    script = """
import sys
sys.modules["apprise"] = None
import bot.notifiers.apprise, bot.notifiers.webhook, bot.app.service
from bot import config, notifiers
assert notifiers.load("apprise") is bot.notifiers.apprise.AppriseNotifier
cfg = config.parse('''
[[accounts]]
name = "main"
key = "sk-test-0123456789abcdef"
[[rules]]
name = "low"
target = "total"
below = 5
[notifiers.webhook]
url = "https://ops.example.com/hooks/balance"
''')
assert list(cfg.notifiers) == ["webhook"]
assert "apprise" not in sys.modules or sys.modules["apprise"] is None
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_validation_prints_no_apprise_log_line_and_says_what_apprise_said(make_config, caplog):
    """Before the problem list, Apprise logged `ERROR Unparseable URL` on its own: its
    reason now is part of the problem line, and nothing else is printed."""
    caplog.set_level(logging.WARNING)
    with pytest.raises(ConfigError) as caught:
        make_config(
            RULE + '\n[notifiers.apprise]\nurls = ["discord://SECRET-id-without-a-token"]\n'
        )
    (problem,) = caught.value.problems
    assert problem.startswith("notifiers.apprise.urls[0]: this discord:// URL is incomplete")
    assert "(Apprise: An invalid Discord Webhook Token (None) was specified.)" in problem
    assert "log line" not in problem  # there is none to read
    with pytest.raises(ConfigError):
        make_config(RULE + '\n[notifiers.apprise]\nurls = ["https://example.com/SECRET-hook"]\n')
    said = [r for r in caplog.records if r.name == "apprise" and r.levelno >= logging.WARNING]
    assert said == []
