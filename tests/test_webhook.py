"""The webhook notifier: real aiohttp POSTs to a loopback receiver (fakes/webhook.py)."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import time
from datetime import UTC, date, datetime
from pathlib import Path
from unittest import mock
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from bot.app.service import App
from bot.config import ConfigError
from bot.engine.model import Event, EventKind
from bot.notifiers import DeliveryError, NotifierContext
from bot.notifiers.message import Message, Section, Span
from bot.notifiers.webhook import USER_AGENT, WebhookConfig, WebhookNotifier, stamped
from bot.notifiers.webhook import signature as webhook_signature
from fakes.cometapi import reply_balance
from fakes.cometapi import reply_status as comet_status
from fakes.webhook import FakeWebhook, Received, redirect, reply_status, signature, verified
from tests.conftest import printed
from tests.helpers import FAST, QUICK

SECRET = "whsec-SECRET-signing-4c1e"
PATH_TOKEN = "tok-SECRET-path-9f2a"
QUERY_TOKEN = "SECRET-query-77b1"
SECRETS = (SECRET, PATH_TOKEN, QUERY_TOKEN)
HOOK_PATH = f"/hooks/{PATH_TOKEN}"

RULE = """
[[rules]]
name = "account-low"
target = "total"
below = 20
recover_above = 25
"""

EVENT_FIELDS = {
    "kind",
    "severity",
    "rule",
    "account",
    "subject",
    "value",
    "threshold",
    "recover_at",
    "unit",
    "at",
}


# --- fixtures and helpers ---------------------------------------------------------


@pytest.fixture
async def hook():
    fake = FakeWebhook(HOOK_PATH)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(autouse=True)
def _secrets_never_printed(caplog, capsys):
    """Requirement: neither the URL's tokens nor the signing secret appear in any
    log record or output, in every test, at any level."""
    caplog.set_level(logging.DEBUG)
    yield
    leaked = [t for t in printed(caplog, capsys) if any(s in t for s in SECRETS)]
    assert not leaked, leaked[:3]


def url_of(fake: FakeWebhook, path: str = HOOK_PATH) -> str:
    """The receiver's URL, with a token in its path and one in its query."""
    return f"http://127.0.0.1:{fake.port}{path}?token={QUERY_TOKEN}"


def webhook_section(fake: FakeWebhook, secret: str | None = SECRET, extra: str = "") -> str:
    signed = f'secret = "{secret}"\n' if secret is not None else ""
    return f'\n[notifiers.webhook]\nurl = "{url_of(fake)}"\n{signed}{extra}'


def _app(cfg, **kw) -> App:
    return App(cfg, retry=FAST, backoff=QUICK, **kw)


def outbox(app: App) -> list[tuple[str, int, str]]:
    return app.store._conn.execute(
        "SELECT status, attempts, last_error FROM outbox ORDER BY id"
    ).fetchall()


def rfc3339(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.removesuffix("Z") + "+00:00")


def check_signed(received: Received) -> None:
    """Signed as SPEC 6 says: over "<timestamp>." and the exact body, whose
    `sent_at` is that timestamp; the body alone does not verify."""
    sent_at, signed = (received.headers[f"X-Balance-Bot-{h}"] for h in ("Timestamp", "Signature"))
    assert signed == signature(SECRET, f"{sent_at}.".encode() + received.body)
    assert signed != signature(SECRET, received.body)
    assert rfc3339(received.json["sent_at"]) == datetime.fromtimestamp(int(sent_at), UTC)


def _notifier(url: str, secret: str | None = None) -> WebhookNotifier:
    config = WebhookConfig.model_validate({"url": url, "secret": secret})
    return WebhookNotifier("webhook", config, NotifierContext(None, ZoneInfo("UTC")))  # type: ignore[arg-type]


# --- 1. a fire arrives: the exact shape, signed ----------------------------------------


async def test_fire_arrives_signed_with_every_field(make_config, comet, hook):
    comet.default = reply_balance(10)
    before = datetime.now(UTC).replace(microsecond=0)
    async with _app(make_config(RULE + webhook_section(hook))) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        await app.delivery.deliver_due()
        await app.cycle()  # still low: nothing new
        await app.delivery.deliver_due()
        label = app.notifiers["webhook"].label("default")
        healthy = app.health()[1]
        rows = outbox(app)
    (received,) = hook.received
    assert received.path == HOOK_PATH and received.query == {"token": QUERY_TOKEN}
    check_signed(received)
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["User-Agent"] == USER_AGENT and "balance-bot" in USER_AGENT
    assert received.json == json.loads(received.body.decode("utf-8"))
    body = received.json
    assert set(body) == {"version", "kind", "text", "events", "sent_at"}
    assert before <= rfc3339(body.pop("sent_at")) <= datetime.now(UTC)
    assert body["version"] == 1 and body["kind"] == "alerts"
    lines = body["text"].split("\n")
    assert lines[0].startswith("CometAPI balance") and "main / total: $10.00 left" in body["text"]
    (event,) = body["events"]
    assert set(event) == EVENT_FIELDS
    at = event.pop("at")
    assert event == {
        "kind": "fire",
        "severity": "warning",
        "rule": "account-low",
        "account": "main",
        "subject": "total",
        "value": 10.0,
        "threshold": 20.0,
        "recover_at": 25.0,
        "unit": "usd",
    }
    assert before <= rfc3339(at) <= datetime.now(UTC)
    assert rows == [("delivered", 0, "")]
    # the label is the host and port: never the path or the query
    assert label == f"127.0.0.1:{hook.port}"
    assert f"webhook 127.0.0.1:{hook.port}" in healthy["destinations"]


@pytest.mark.parametrize("secret", [None, "${WEBHOOK_SECRET_NEVER_SET:-}"])
async def test_without_a_secret_there_is_no_signature(make_config, comet, hook, secret):
    comet.default = reply_balance(10)
    async with _app(make_config(RULE + webhook_section(hook, secret=secret))) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        await app.delivery.deliver_due()
    (received,) = hook.received
    assert "X-Balance-Bot-Signature" not in received.headers
    assert "X-Balance-Bot-Timestamp" not in received.headers
    assert received.json["events"][0]["kind"] == "fire"
    assert rfc3339(received.json["sent_at"]) <= datetime.now(UTC)


# --- 2. resolves and data outages: the right nulls --------------------------------------


async def test_resolve_unavailable_and_available_have_the_right_nulls(make_config, comet, hook):
    cfg = make_config(RULE + webhook_section(hook), bot="stale_after = 1")
    async with _app(cfg) as app:
        await app.start_notifiers(listen=False)
        for reply in (reply_balance(10), reply_balance(30), comet_status(500), reply_balance(30)):
            comet.push(reply)
            await app.cycle()
            await app.delivery.deliver_due()
    events = [r.json["events"] for r in hook.received]
    assert [[e["kind"] for e in batch] for batch in events] == [
        ["fire"],
        ["resolve"],
        ["unavailable"],
        ["available"],
    ]
    for received in hook.received:
        check_signed(received)
        assert received.json["kind"] == "alerts"
    (resolve,), (unavailable,), (available,) = events[1:]
    assert all(set(e) == EVENT_FIELDS for batch in events for e in batch)
    resolve.pop("at")
    assert resolve == {
        "kind": "resolve",
        "severity": "warning",
        "rule": "account-low",
        "account": "main",
        "subject": "total",
        "value": 30.0,
        "threshold": 20.0,
        "recover_at": 25.0,
        "unit": "usd",
    }
    for outage, kind in ((unavailable, "unavailable"), (available, "available")):
        rfc3339(outage.pop("at"))
        assert outage == {
            "kind": kind,
            "severity": None,
            "rule": None,
            "account": "main",
            "subject": None,
            "value": None,
            "threshold": None,
            "recover_at": None,
            "unit": None,
        }


# --- 3. the daily digest: kind "digest", no events -------------------------------------


async def test_digest_has_its_kind_and_no_events(make_config, comet, hook):
    comet.default = reply_balance(50)
    cfg = make_config(RULE + webhook_section(hook) + '\n[digest]\nat = "09:00"\n')
    async with _app(cfg) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        assert await app.send_digest(date(2026, 1, 1))
        await app.delivery.deliver_due()
        rows = outbox(app)
    (received,) = hook.received
    check_signed(received)
    body = received.json
    assert body["kind"] == "digest" and body["events"] == [] and body["version"] == 1
    assert body["text"].strip() and "main" in body["text"]
    assert rows == [("delivered", 0, "")]


# --- 4. retries: 429 with Retry-After, then 500, then delivered once -------------------


async def test_rate_limit_and_server_error_are_retried_then_delivered(
    make_config, comet, hook, caplog
):
    comet.default = reply_balance(10)
    hook.fail(reply_status(429, "slow down", {"Retry-After": "1"}), reply_status(500, "oops"))
    async with _app(make_config(RULE + webhook_section(hook))) as app:
        await app.start_notifiers(listen=False)
        loop = asyncio.create_task(app.delivery.run())
        try:
            await app.cycle()
            await hook.wait_received(3)
        finally:
            app.delivery.stop()
            await loop
        assert await app.delivery.deliver_due() is None
        rows = outbox(app)
    assert [r.status for r in hook.received] == [429, 500, 200]
    for received in hook.received:  # each attempt signed over its own bytes
        check_signed(received)
    assert len({json.dumps(r.json["events"]) for r in hook.received}) == 1
    assert rows == [("delivered", 2, "")]
    retries = [r.fields for r in caplog.records if r.getMessage() == "delivery.retry"]
    assert retries[0]["retry_in"] == 1.1  # the receiver's Retry-After, honoured
    assert "HTTP 429" in retries[0]["reason"] and f"127.0.0.1:{hook.port}" in retries[0]["reason"]
    assert "HTTP 500" in retries[1]["reason"]
    assert retries[1]["retry_in"] == pytest.approx(0.1)  # QUICK backoff, second attempt


async def test_each_attempt_is_stamped_and_signed_anew_and_a_replay_is_refused(
    make_config, comet, hook
):
    """SPEC 6: the signature covers "<timestamp>." and the exact bytes sent, so a
    receiver that refuses old timestamps (the fake runs docs/notifiers.md's
    check) cannot be fed a captured request again; a retry signs anew."""
    hook.secret = SECRET
    comet.default = reply_balance(10)
    hook.fail(reply_status(500, "oops"))
    async with _app(make_config(RULE + webhook_section(hook))) as app:
        await app.start_notifiers(listen=False)
        now = time.time()
        attempts = iter([now - 60, now])  # the retry a minute after the first attempt
        app.notifiers["webhook"].clock = lambda: next(attempts)  # type: ignore[attr-defined]
        loop = asyncio.create_task(app.delivery.run())
        try:
            await app.cycle()
            first, retry = await hook.wait_received(2)
        finally:
            app.delivery.stop()
            await loop
        rows = outbox(app)
    assert [r.verified for r in (first, retry)] == [True, True]
    assert [r.status for r in (first, retry)] == [500, 200] and rows == [("delivered", 1, "")]
    for received in (first, retry):
        check_signed(received)
    stamps = [int(r.headers["X-Balance-Bot-Timestamp"]) for r in (first, retry)]
    assert stamps == [int(now - 60), int(now)]
    assert first.headers["X-Balance-Bot-Signature"] != retry.headers["X-Balance-Bot-Signature"]
    assert first.json["events"] == retry.json["events"]

    # the first attempt replayed once it is older than 5 minutes, as is and with
    # a fresh timestamp: both refused, as is a signature over the body alone
    stale = {k: first.headers[k] for k in ("X-Balance-Bot-Timestamp", "X-Balance-Bot-Signature")}
    fresh = {**stale, "X-Balance-Bot-Timestamp": str(int(time.time()))}
    bare = {**fresh, "X-Balance-Bot-Signature": signature(SECRET, first.body)}
    with mock.patch("fakes.webhook.time.time", return_value=now + 301):
        assert not verified(SECRET, first.body, *stale.values())
    async with aiohttp.ClientSession() as http:
        for headers in (fresh, bare):
            async with http.post(hook.url, data=first.body, headers=headers) as response:
                assert response.status == 401
    assert [r.verified for r in hook.received[2:]] == [False, False]


def test_the_receiver_in_the_docs_is_the_one_the_tests_run():
    """docs/notifiers.md's Python check is fakes/webhook.py's, word for word, and
    it passes what the notifier signs and refuses the rest."""
    doc = (Path(__file__).parent.parent / "docs" / "notifiers.md").read_text()
    section = doc.partition("### The signature")[2].partition("\n### ")[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    assert inspect.getsource(verified) in code and "TOLERANCE = 300" in code
    scope: dict[str, object] = {}
    exec(code, scope)  # the documentation's own snippet
    check = scope["verified"]
    assert callable(check)

    sent_at = int(time.time())
    body = stamped(b'{"version": 1, "kind": "test", "text": "hi", "events": []}', sent_at)
    signed = webhook_signature(SECRET, sent_at, body)
    assert check(SECRET, body, str(sent_at), signed)
    assert not check(SECRET, body, str(sent_at), signature(SECRET, body))  # body alone
    assert not check(SECRET, body, str(sent_at + 1), signed)  # another time
    assert not check(SECRET, body + b" ", str(sent_at), signed)  # another body
    assert not check(SECRET, body, None, signed) and not check(SECRET, body, "soon", signed)
    old = sent_at - 301
    assert not check(SECRET, body, str(old), webhook_signature(SECRET, old, body))  # replay


# --- 5. failures for good: 4xx, and redirects (never followed) -------------------------


@pytest.mark.parametrize(
    ("reply", "status", "remedy"),
    [
        (reply_status(404, "no such hook"), "HTTP 404 Not Found", "check notifiers.webhook.url"),
        (reply_status(401), "HTTP 401 Unauthorized", "notifiers.webhook.secret"),
        (reply_status(400), "HTTP 400 Bad Request", "docs/notifiers.md"),
        # a 301 turns a POST into a GET, a 307 keeps the POST: neither is followed
        (redirect("/elsewhere", 301), "HTTP 301 Moved Permanently", "redirects are not followed"),
        (redirect("/elsewhere", 307), "HTTP 307 Temporary Redirect", "redirects are not followed"),
    ],
)
async def test_refusals_and_redirects_fail_for_good(
    make_config, comet, hook, caplog, reply, status, remedy
):
    comet.default = reply_balance(10)
    hook.fail(reply)
    async with _app(make_config(RULE + webhook_section(hook))) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        assert await app.delivery.deliver_due() is None  # nothing to retry
        assert await app.delivery.deliver_due() is None
        rows = outbox(app)
    assert [r.path for r in hook.received] == [HOOK_PATH]  # one POST, no second request
    ((state, attempts, reason),) = rows
    assert state == "failed" and attempts == 0
    assert reason.startswith(f"webhook 127.0.0.1:{hook.port}: {status}; ") and remedy in reason
    (failed,) = [r for r in caplog.records if r.getMessage() == "delivery.failed"]
    assert failed.fields["reason"] == reason


# --- 6. network trouble is retried; texts never carry the URL --------------------------


async def test_unreachable_receiver_is_retried_without_the_url(hook):
    port = hook.port
    await hook.stop()  # nothing listens there any more
    notifier = _notifier(f"http://127.0.0.1:{port}{HOOK_PATH}?token={QUERY_TOKEN}", SECRET)
    try:
        with pytest.raises(DeliveryError) as caught:
            await notifier.send("default", b"{}")
    finally:
        await notifier.stop()
    error = caught.value
    assert not error.permanent and error.retry_after is None
    assert error.reason.startswith(f"webhook 127.0.0.1:{port}: not sent: ClientConnectorError")
    assert not any(s in error.reason for s in SECRETS) and "/hooks" not in error.reason


async def test_no_answer_in_time_is_retried(hook, monkeypatch):
    from bot.notifiers import webhook

    release = asyncio.Event()

    async def stall(_: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(text="late")

    monkeypatch.setattr(webhook, "REQUEST_TIMEOUT", 0.2)
    hook.fail(stall)
    notifier = _notifier(url_of(hook))
    try:
        with pytest.raises(DeliveryError) as caught:
            await notifier.send("default", b"{}")
    finally:
        release.set()
        await notifier.stop()
    assert not caught.value.permanent
    assert caught.value.reason == f"webhook 127.0.0.1:{hook.port}: no answer within 0.2s"


async def test_one_session_made_on_first_use_and_closed_by_stop(hook):
    notifier = _notifier(url_of(hook))
    await notifier.stop()  # before any send: nothing to close
    assert notifier._session is None
    await notifier.send("default", b"{}")
    session = notifier._session
    await notifier.send("default", b"{}")
    assert notifier._session is session and session is not None
    await notifier.stop()
    assert session.closed and notifier._session is None
    await notifier.stop()  # twice is fine
    assert len(await hook.wait_received(2)) == 2


# --- 7. the body: one POST however long, every kind, no infinity -----------------------


def test_a_long_message_is_one_payload_with_all_its_text():
    lines = tuple((Span(f"key-{i}: $0.50 left"),) for i in range(5000))
    message = Message("CometAPI balance: 5000 alerts", (Section("main", lines),))
    (payload,) = _notifier("https://ops.example.com/hooks/balance").format(message)
    body = json.loads(payload)
    assert body["text"] == "\n".join(message.plain_lines())
    assert body["text"].count("\n") == 5001 and len(payload) > 100_000


@pytest.mark.parametrize("kind", ["alerts", "still_firing", "digest", "test"])
def test_kind_and_events_come_from_the_message(kind):
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Berlin"))
    event = Event(
        EventKind.RESOLVE,
        "main",
        at,
        rule="runway",
        subject="total",
        unit="days",
        value=float("inf"),  # not depleting: days left is infinite
        threshold=7.0,
        recover_at=10.0,
    )
    events = (event,) if kind in ("alerts", "still_firing") else ()
    message = Message("CometAPI balance", (), kind=kind, events=events)
    (payload,) = _notifier("https://ops.example.com/x").format(message)
    body = json.loads(payload)  # strict JSON: no Infinity
    assert body["kind"] == kind and body["text"] == "CometAPI balance"
    assert len(body["events"]) == len(events)
    if events:
        (data,) = body["events"]
        assert data["value"] is None and data["threshold"] == 7.0 and data["unit"] == "days"
        assert data["at"] == "2026-03-01T11:30:15Z"  # UTC, to the second
        assert rfc3339(data["at"]) == at.replace(microsecond=0)


# --- 8. config errors name the field, never the URL ------------------------------------


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (f'url = "ftp://127.0.0.1/{PATH_TOKEN}"', "notifiers.webhook.url: must be an http://"),
        (f'url = "https:///{PATH_TOKEN}"', "notifiers.webhook.url: must be an http://"),
        (f'url = "http://h:99999/{PATH_TOKEN}"', "notifiers.webhook.url: is not a valid URL"),
        (f'secret = "{SECRET}"', "notifiers.webhook.url: required"),
        ('url = "https://ops.example.com/x"\nsign = true', "notifiers.webhook.sign: unknown key"),
        ('url = "https://ops.example.com/x"\nsecret = 5', "notifiers.webhook.secret:"),
    ],
)
def test_config_errors_name_the_field(make_config, section, problem):
    with pytest.raises(ConfigError) as caught:
        make_config(RULE + f"\n[notifiers.webhook]\n{section}\n")
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
    assert not any(s in str(caught.value) for s in SECRETS)


def test_secrets_are_registered_and_the_label_has_no_userinfo():
    from bot.common.secrets import redact

    notifier = _notifier(
        f"https://hooker:pw-SECRET-123456@ops.example.com:8443{HOOK_PATH}?token={QUERY_TOKEN}",
        SECRET,
    )
    assert notifier.label("default") == "ops.example.com:8443"
    text = f"POST {HOOK_PATH} token {QUERY_TOKEN} with {SECRET}, pw-SECRET-123456"
    assert not any(s in redact(text) for s in (*SECRETS, "pw-SECRET-123456"))


def test_user_agents_name_the_version_and_no_made_up_address():
    """Both HTTP clients say what they are; no repository address that does not exist."""
    from bot.common.version import package_version
    from bot.upstream import transport as cometapi

    assert USER_AGENT == cometapi.USER_AGENT == f"balance-bot/{package_version()}"
    assert "http" not in USER_AGENT
