"""The CometAPI client: parsing, typed errors, retries, bounds, and no key in any error."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core

from bot.config import Account
from bot.engine.model import FailureKind, PollFailure
from bot.upstream.client import Client
from bot.upstream.cometapi import parse_quota
from bot.upstream.transport import MAX_BODY_BYTES, FetchError, RetryPolicy
from fakes.cometapi import (
    reply_balance,
    reply_json,
    reply_raw,
    reply_stall,
    reply_status,
)
from tests.conftest import QUERY_KEY

FAST = RetryPolicy(attempts=3, deadline=10, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01)
DOC_EXAMPLE = {
    "username": "example_user",
    "total_quota": 2105.234088,
    "total_used_quota": 21.065912,
    "request_count": 1221,
    "keys": [
        {"name": "tts_test", "remain_quota": 8.93872, "used_quota": 2.099206},
        {"name": "concurrency_test", "remain_quota": 10, "used_quota": 0},
        {"name": "mj_test", "remain_quota": 8.55, "used_quota": 1.45},
        {"name": "test_key", "remain_quota": 999999999, "used_quota": -1},
    ],
}


class _Response(ClientResponse):
    """aioresponses 0.7.9 predates aiohttp 3.14's `stream_writer` argument (PITFALLS.md)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(*args, **kwargs)


@pytest.fixture
def mocked(monkeypatch):
    monkeypatch.setattr(aioresponses_core, "ClientResponse", _Response)
    with aioresponses() as m:
        yield m


def account(url: str) -> Account:
    return Account(name="main", key=QUERY_KEY, url=url)


async def fetch(url: str, retry: RetryPolicy = FAST, request_timeout: float = 2.0):
    async with Client.new_session() as session:
        return await Client(session, request_timeout, retry).poll(account(url))


MOCK_URL = "https://query.test/user/quota"
MOCK_PATTERN = re.compile(r"^https://query\.test/user/quota\?key=.*$")


async def test_parses_the_documented_example(mocked):
    mocked.get(MOCK_PATTERN, payload=DOC_EXAMPLE)
    snap = await fetch(MOCK_URL)
    assert snap.username == "example_user" and snap.total_quota == 2105.234088
    assert snap.request_count == 1221 and len(snap.keys) == 4
    assert [k.unlimited for k in snap.keys] == [False, False, False, True]
    (call,) = mocked.requests.values()
    assert call[0].kwargs["params"] == {"key": QUERY_KEY}


def test_tolerant_parsing():
    now = None
    body = {
        "total_quota": "12.5",
        "total_used_quota": "1",
        "request_count": "7",
        "extra": {"x": 1},
        "keys": [
            {"name": "a", "remain_quota": "3"},
            {"name": "a", "remain_quota": 1, "used_quota": 2},
            {"remain_quota": -1, "used_quota": 5},
        ],
    }
    snap = parse_quota("main", json.dumps(body).encode(), now)
    assert snap.total_quota == 12.5 and snap.request_count == 7 and snap.username == ""
    assert [(k.name, k.remain_quota, k.used_quota) for k in snap.keys] == [
        ("a", 3.0, 0.0),
        ("a #2", 1.0, 2.0),
        ("key #3", -1.0, 5.0),
    ]
    assert parse_quota("main", b'{"total_quota": 1}', now).keys == ()
    wrapped = parse_quota("main", b'{"success": true, "data": {"total_quota": 4}}', now)
    assert wrapped.total_quota == 4


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"<html>502</html>", "not JSON"),
        (b'{"total_quota": 1', "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"success": false, "message": "token expired"}', "CometAPI answered: token expired"),
        (b'{"error": "bad things"}', "CometAPI answered: bad things"),
        (b'{"total_quota": null}', "total_quota is not a number"),
        (b'{"total_quota": "lots"}', "total_quota is not a number"),
        (b'{"total_quota": true}', "total_quota is not a number"),
        (b'{"total_quota": 5, "keys": {"a": 1}}', "keys is not a list"),
        (
            b'{"total_quota": 5, "keys": [{"name": "a", "remain_quota": null}]}',
            "keys[0].remain_quota",
        ),
        (b'{"total_quota": 1e999}', "total_quota is not a number"),
    ],
)
def test_bad_bodies_are_bad_responses(body, needle):
    with pytest.raises(FetchError) as info:
        parse_quota("main", body, None)
    assert info.value.kind is FailureKind.BAD_RESPONSE
    assert needle in info.value.reason


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_key_is_not_retried(mocked, status):
    mocked.get(MOCK_PATTERN, status=status, body=f"invalid key {QUERY_KEY}", repeat=True)
    result = await fetch(MOCK_URL)
    assert isinstance(result, PollFailure) and result.kind is FailureKind.REJECTED
    assert len(next(iter(mocked.requests.values()))) == 1
    assert QUERY_KEY not in result.reason


async def test_transient_errors_are_retried_then_succeed(mocked):
    mocked.get(MOCK_PATTERN, status=500)
    mocked.get(MOCK_PATTERN, exception=aiohttp.ClientConnectionError("boom"))
    mocked.get(MOCK_PATTERN, payload={"total_quota": 3})
    snap = await fetch(MOCK_URL)
    assert snap.total_quota == 3


async def test_retries_are_bounded(mocked):
    mocked.get(MOCK_PATTERN, status=503, repeat=True)
    result = await fetch(MOCK_URL)
    assert isinstance(result, PollFailure) and result.kind is FailureKind.UNREACHABLE
    assert len(next(iter(mocked.requests.values()))) == FAST.attempts


async def test_4xx_other_than_auth_is_a_bad_response_with_its_text(mocked):
    mocked.get(MOCK_PATTERN, status=404, body=f"no such path for key={QUERY_KEY}")
    result = await fetch(MOCK_URL)
    assert result.kind is FailureKind.BAD_RESPONSE
    assert "HTTP 404" in result.reason and QUERY_KEY not in result.reason


# --- real HTTP against the loopback fake -------------------------------------


async def test_retry_after_is_honoured(comet):
    comet.push(reply_status(429, headers={"Retry-After": "1"}), reply_balance(42))
    started = time.monotonic()
    snap = await fetch(comet.url)
    assert snap.total_quota == 42
    assert time.monotonic() - started >= 1.0
    assert len(comet.requests) == 2


async def test_retry_after_beyond_the_deadline_gives_up(comet):
    comet.push(reply_status(429, headers={"Retry-After": "3600"}))
    result = await fetch(comet.url)
    assert result.kind is FailureKind.RATE_LIMITED and len(comet.requests) == 1


async def test_a_stalled_body_times_out_without_the_key(comet, caplog):
    caplog.set_level(logging.DEBUG)
    comet.push(*[reply_stall(5, b'{"total_quota": ')] * 3)
    retry = RetryPolicy(attempts=2, deadline=1.5, wait_initial=0.01, wait_max=0.01, wait_jitter=0)
    started = time.monotonic()
    result = await fetch(comet.url, retry=retry, request_timeout=0.4)
    assert time.monotonic() - started < 2.5
    assert result.kind is FailureKind.UNREACHABLE and "timed out" in result.reason
    assert QUERY_KEY not in caplog.text


async def test_whole_poll_ends_within_its_deadline(comet):
    comet.push(*[reply_stall(5)] * 10)
    retry = RetryPolicy(attempts=10, deadline=1.0, wait_initial=0.01, wait_max=0.01, wait_jitter=0)
    started = time.monotonic()
    result = await fetch(comet.url, retry=retry, request_timeout=0.3)
    assert isinstance(result, PollFailure)
    assert time.monotonic() - started < 1.5


async def test_oversized_body_is_refused(comet):
    comet.push(reply_raw(b" " * (MAX_BODY_BYTES + 10)))
    result = await fetch(comet.url)
    assert result.kind is FailureKind.BAD_RESPONSE and "too large" in result.reason


async def test_oversized_chunked_body_is_cut_off(comet):
    from aiohttp import web

    async def endless(request):
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        chunk = b" " * 1024 * 1024
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            await resp.write(chunk)
        return resp

    comet.push(endless)
    result = await fetch(comet.url)
    assert result.kind is FailureKind.BAD_RESPONSE and "larger than" in result.reason


async def test_connection_refused_names_host_not_key(unused_tcp_port):
    url = f"http://127.0.0.1:{unused_tcp_port}/user/quota"
    result = await fetch(url)
    assert result.kind is FailureKind.UNREACHABLE
    assert f"cannot connect to 127.0.0.1:{unused_tcp_port}/user/quota" in result.reason
    assert QUERY_KEY not in result.reason


async def test_html_with_200_is_bad_response(comet):
    comet.push(reply_raw(b"<html><body>Bad Gateway</body></html>", content_type="text/html"))
    result = await fetch(comet.url)
    assert result.kind is FailureKind.BAD_RESPONSE and "not JSON" in result.reason
    assert "Bad Gateway" in result.reason


async def test_wrong_key_reports_rejected(comet):
    async with Client.new_session() as session:
        wrong = Account(name="main", key="sk-wrong-key-000000", url=comet.url)
        result = await Client(session, 2, FAST).poll(wrong)
    assert result.kind is FailureKind.REJECTED and "sk-wrong-key" not in result.reason


async def test_many_keys_and_slash_form_url(comet):
    keys = [{"name": f"k{i}", "remain_quota": i, "used_quota": 1} for i in range(20000)]
    comet.push(reply_json({"total_quota": 1, "keys": keys}))
    snap = await fetch(comet.url + "/")
    assert len(snap.keys) == 20000


async def test_accounts_are_polled_concurrently_with_a_limit(comet):
    from bot.upstream.client import poll_all

    in_flight, peak = 0, 0

    async def slow(_):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        from aiohttp import web

        return web.json_response({"total_quota": 1})

    comet.default = slow
    accounts = [Account(name=f"a{i}", key=QUERY_KEY, url=comet.url) for i in range(12)]
    async with Client.new_session() as session:
        results = await poll_all(Client(session, 2, FAST), accounts, concurrency=4)
    assert len(results) == 12 and all(r.total_quota == 1 for r in results.values())
    assert peak == 4


# a key straddling the cut of an error body (HINT_SOURCE bytes) is masked whole, never in part
LONG_KEY = "QueryKey9f3a7c1e5b2d8f4a6c0e9b7d5f3a1c8e6b4d2f0a9c7"  # 51 characters, not sk-


def key_parts(reason: str) -> list[str]:
    return [LONG_KEY[i : i + 8] for i in range(len(LONG_KEY) - 7) if LONG_KEY[i : i + 8] in reason]


@pytest.mark.parametrize("filler", [b" ", b"\n", b"\x00"], ids=["spaces", "newlines", "NULs"])
async def test_a_key_across_the_cut_of_an_error_body_never_shows_in_part(mocked, filler):
    assert len(LONG_KEY) == 51
    key = LONG_KEY.encode()
    async with Client.new_session() as session:
        client = Client(session, 2.0, FAST)
        for offset in range(4000, 4101):
            html = b"<p>" + filler * (offset - 3) + key + b" and the rest</p>"
            plain = filler * offset + key + b" and the rest"
            assert html.index(key) == plain.index(key) == offset
            mocked.get(MOCK_PATTERN, status=400, body=plain, content_type="text/plain")
            mocked.get(MOCK_PATTERN, status=200, body=html, content_type="text/html")
            for status in (400, 200):
                failure = await client.poll(Account(name="main", key=LONG_KEY, url=MOCK_URL))
                assert isinstance(failure, PollFailure)
                assert failure.kind is FailureKind.BAD_RESPONSE
                assert f"HTTP {status}" in failure.reason or status == 200
                assert key_parts(failure.reason) == [], (offset, status, failure.reason)
