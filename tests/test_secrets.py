"""Redaction: the registry, token patterns, and the logging filter as the last line of defence."""

from __future__ import annotations

import io
import json
import logging

import aiohttp
import pytest

from bot.common import secrets
from bot.common.logs import log_event, setup_logging


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("GET https://query.cometapi.com/user/quota?key=sk-abc123&x=1", "sk-abc123"),
        (
            "https://api.telegram.org/bot123456789:AAFakeTokenForTests_abcdefghijklmnopq/getMe",
            "AAFakeTokenForTests_abcdefghijklmnopq",
        ),
        ("token xoxb-1234-5678-abcdefghij was revoked", "xoxb-1234-5678-abcdefghij"),
        ("app token xapp-1-A0123-456-abcdef", "xapp-1-A0123-456-abcdef"),
        ("Authorization: Bearer sk-live-zzz", "sk-live-zzz"),
    ],
)
def test_patterns(text, hidden):
    out = secrets.redact(text)
    assert hidden not in out and secrets.MASK in out


def test_registered_secrets_are_masked_anywhere():
    secrets.register("plain-secret-value")
    assert secrets.redact("a plain-secret-value b") == f"a {secrets.MASK} b"
    secrets.register("abc")  # too short to be a credential: ignored
    assert secrets.redact("abc") == "abc"


async def test_log_filter_redacts_messages_fields_and_tracebacks(unused_tcp_port):
    stream = io.StringIO()
    setup_logging("json", "DEBUG", stream)
    secrets.register("sk-registered-0001")
    logger = logging.getLogger("bot.test")
    log_event(logger, "x", reason="failed with key sk-registered-0001")
    logger.warning("url was %s", "http://h/user/quota?key=sk-registered-0001")
    url = f"http://127.0.0.1:{unused_tcp_port}/user/quota?key=sk-registered-0001"
    try:
        async with aiohttp.ClientSession() as session, session.get(url):
            pass
    except aiohttp.ClientError:
        logger.exception("aiohttp failed")
    logging.getLogger("httpx").warning(
        "HTTP Request: POST https://api.telegram.org/bot1234567:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/sendMessage"
    )
    out = stream.getvalue()
    assert "sk-registered-0001" not in out
    assert "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" not in out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert records[0]["event"] == "x" and secrets.MASK in records[0]["reason"]
    assert any(r["event"] == "aiohttp failed" and "exception" in r for r in records)
    setup_logging("human", "INFO")


def test_human_format_one_line_per_event():
    stream = io.StringIO()
    setup_logging("human", "INFO", stream)
    log_event(
        logging.getLogger("bot.t"),
        "poll.failed",
        logging.WARNING,
        account="main",
        reason="HTTP 502 from h/user/quota",
    )
    line = stream.getvalue().strip()
    assert "\n" not in line
    assert line.endswith('WARNING poll.failed account=main reason="HTTP 502 from h/user/quota"')
    setup_logging("human", "INFO")
