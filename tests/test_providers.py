"""newapi, openrouter and deepseek through the real client (aiohttp, the shared
transport and its retries) against their loopback fakes: figures, currency, odd
bodies as that account's failed poll, and no key in any error text."""

from __future__ import annotations

import json

import pytest

from bot.common import secrets
from bot.engine.model import Account, FailureKind, PollFailure, Snapshot
from bot.upstream.client import Client
from bot.upstream.transport import RetryPolicy
from fakes.providers import FakeDeepSeek, FakeNewAPI, FakeOpenRouter, echo_error, raw

FAST = RetryPolicy(attempts=2, deadline=5, wait_initial=0.01, wait_max=0.02, wait_jitter=0.01)


@pytest.fixture
async def newapi():
    fake = await FakeNewAPI().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def openrouter():
    fake = await FakeOpenRouter().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def deepseek():
    fake = await FakeDeepSeek().start()
    yield fake
    await fake.stop()


async def poll(
    fake, provider: str, currency: str | None = None, key: str | None = None
) -> Snapshot | PollFailure:
    key = key or fake.key
    account = Account("acc", key, fake.url, provider, currency or "USD", currency is not None)
    secrets.register(key)
    async with Client.new_session() as session:
        return await Client(session, 2.0, FAST).poll(account)


def failed(
    result: Snapshot | PollFailure, fake, kind: FailureKind = FailureKind.BAD_RESPONSE
) -> str:
    assert isinstance(result, PollFailure), result
    assert result.kind is kind, result
    for start in range(0, len(fake.key) - 15):  # no 16-character fragment of the key
        assert fake.key[start : start + 16] not in result.reason
    return result.reason


# --- newapi ----------------------------------------------------------------------


async def test_newapi_remaining_is_the_limit_less_the_usage_in_hundredths(newapi):
    newapi.granted, newapi.used = 150.0, 42.5
    snap = await poll(newapi, "newapi", "CNY")
    assert isinstance(snap, Snapshot)
    assert snap.total_quota == pytest.approx(107.5)
    assert snap.total_used_quota == pytest.approx(42.5)
    assert snap.currency == "CNY" and not snap.unlimited and snap.keys == ()
    paths = sorted(r.path for r in newapi.requests)
    assert paths == ["/v1/dashboard/billing/subscription", "/v1/dashboard/billing/usage"]


async def test_newapi_unlimited_token(newapi):
    newapi.granted = 100000000
    snap = await poll(newapi, "newapi")
    assert isinstance(snap, Snapshot) and snap.unlimited


async def test_newapi_error_with_http_200_is_a_failed_poll_with_its_message(newapi):
    newapi.push(echo_error(200, "token quota exhausted"), echo_error(200))
    reason = failed(await poll(newapi, "newapi"), newapi)
    assert "token quota exhausted" in reason or "upstream says no" in reason
    assert "***" in reason  # the echoed header, masked


async def test_newapi_without_the_bearer_header_is_key_rejected(newapi):
    newapi.key = "sk-another-token-that-the-site-knows-0123"
    account_key = "sk-newapi-test-token-0123456789abcdef"
    account = Account("acc", account_key, newapi.url, "newapi")
    secrets.register(account_key)
    async with Client.new_session() as session:
        result = await Client(session, 2.0, FAST).poll(account)
    assert isinstance(result, PollFailure) and result.kind is FailureKind.REJECTED
    assert account_key[:16] not in result.reason


@pytest.mark.parametrize(
    "body",
    [
        '{"hard_limit_usd": "lots"}',
        '{"hard_limit_usd": 1e400}',
        '{"hard_limit_usd": ' + "9" * 400 + "}",
        '{"hard_limit_usd": null}',
        "{}",
        "[1, 2]",
        "[" * 100000 + "]" * 100000,
        "<html>502 Bad Gateway</html>",
        '{"hard_limit_usd": -5}',
        '{"success": false, "message": "site closed"}',
    ],
)
async def test_newapi_odd_bodies_fail_the_poll(newapi, body):
    newapi.push(raw(body), raw(body))
    failed(await poll(newapi, "newapi"), newapi)


async def test_newapi_decimal_strings_are_numbers(newapi):
    newapi.push(raw('{"hard_limit_usd": "50.25"}'), raw('{"total_usage": "1025"}'))
    snap = await poll(newapi, "newapi")
    assert isinstance(snap, Snapshot)
    assert snap.total_quota == pytest.approx(40.0)


# --- openrouter --------------------------------------------------------------------


async def test_openrouter_total_and_keys_over_three_pages(openrouter):
    openrouter.total_credits, openrouter.total_usage = 80.0, 30.5
    openrouter.keys = [FakeOpenRouter.entry(f"key-{i:03}", 10.0 + i, 1.0) for i in range(250)]
    openrouter.keys[7] = FakeOpenRouter.entry("off", 0.0, disabled=True)
    openrouter.keys[8] = FakeOpenRouter.entry("free", None, 3.0)
    snap = await poll(openrouter, "openrouter")
    assert isinstance(snap, Snapshot)
    assert snap.total_quota == pytest.approx(49.5) and snap.total_used_quota == 30.5
    names = {k.name: k for k in snap.keys}
    assert len(snap.keys) == 249 and "off" not in names
    assert names["free"].unlimited and not names["key-000"].unlimited
    assert names["key-249"].remain_quota == 259.0 and names["key-249"].used_quota == 1.0
    offsets = sorted(int(r.query["offset"]) for r in openrouter.requests if "offset" in r.query)
    assert offsets == [0, 100, 200]


async def test_openrouter_pages_that_never_end_are_bounded(openrouter):
    openrouter.endless = True
    reason = failed(await poll(openrouter, "openrouter"), openrouter)
    assert "more than 100 pages" in reason
    assert len([r for r in openrouter.requests if r.path.endswith("/keys")]) == 100


async def test_openrouter_a_failed_key_page_fails_the_poll(openrouter):
    openrouter.keys = [FakeOpenRouter.entry(f"k{i}", 1.0) for i in range(150)]
    openrouter.push(raw('{"data": {"total_credits": 5, "total_usage": 1}}'))
    openrouter.push(
        raw(
            '{"data": ['
            + ",".join(['{"name": "a", "limit": 1, "limit_remaining": 1, "usage": 0}'] * 100)
            + "]}"
        )
    )
    openrouter.push(echo_error(200, "page broke"))
    reason = failed(await poll(openrouter, "openrouter"), openrouter)
    assert "page broke" in reason


async def test_openrouter_names_with_control_characters_and_duplicates(openrouter):
    openrouter.keys = [
        {"name": "a\u202eb\x00c\ud800", "limit": 5, "limit_remaining": 2, "usage": 3},
        {"name": "dup", "limit": 5, "limit_remaining": 1, "usage": 4},
        {"name": "dup", "limit": 5, "limit_remaining": 2, "usage": 3},
        {"label": "labelled", "limit": 5, "limit_remaining": 2, "usage": 3},
    ]
    snap = await poll(openrouter, "openrouter")
    assert isinstance(snap, Snapshot)
    assert [k.name for k in snap.keys] == ["abc\ufffd", "dup", "dup #2", "labelled"]


async def test_openrouter_a_normal_key_is_rejected(openrouter):
    openrouter.push(echo_error(401, "management key required"))
    failed(await poll(openrouter, "openrouter"), openrouter, FailureKind.REJECTED)


# --- deepseek ------------------------------------------------------------------------


async def test_deepseek_reads_decimal_strings_and_derives_nothing_itself(deepseek):
    deepseek.balances = {"CNY": 110.25}
    snap = await poll(deepseek, "deepseek")
    assert isinstance(snap, Snapshot)
    assert snap.total_quota == 110.25 and snap.currency == "CNY"
    assert snap.used_derived and snap.available


async def test_deepseek_prefers_usd_then_the_first_entry(deepseek):
    deepseek.balances = {"CNY": 10.0, "USD": 3.0}
    snap = await poll(deepseek, "deepseek")
    assert isinstance(snap, Snapshot) and (snap.currency, snap.total_quota) == ("USD", 3.0)
    deepseek.balances = {"EUR": 4.0, "CNY": 10.0}
    snap = await poll(deepseek, "deepseek")
    assert isinstance(snap, Snapshot) and (snap.currency, snap.total_quota) == ("EUR", 4.0)


async def test_deepseek_the_configured_currency_or_a_failed_poll_naming_those_offered(deepseek):
    deepseek.balances = {"USD": 3.0, "CNY": 10.0}
    snap = await poll(deepseek, "deepseek", "CNY")
    assert isinstance(snap, Snapshot) and (snap.currency, snap.total_quota) == ("CNY", 10.0)
    reason = failed(await poll(deepseek, "deepseek", "EUR"), deepseek)
    assert "EUR" in reason and "USD, CNY" in reason


async def test_deepseek_not_available_is_data_not_a_failure(deepseek):
    deepseek.available = False
    snap = await poll(deepseek, "deepseek")
    assert isinstance(snap, Snapshot) and not snap.available


@pytest.mark.parametrize(
    "body",
    [
        {"is_available": True, "balance_infos": []},
        {"is_available": True},
        {"is_available": "yes", "balance_infos": [{"currency": "CNY", "total_balance": "1"}]},
        {"balance_infos": [{"currency": "CNY", "total_balance": "1e400"}]},
        {"balance_infos": [{"currency": "CNY", "total_balance": "abc"}]},
        {"balance_infos": [{"currency": 5, "total_balance": "1"}]},
        {"balance_infos": "CNY 5"},
        {"error": {"message": "insufficient"}},
    ],
)
async def test_deepseek_odd_bodies_fail_the_poll(deepseek, body):
    deepseek.push(raw(json.dumps(body)))
    failed(await poll(deepseek, "deepseek"), deepseek)


@pytest.mark.parametrize("offset", [0, 1, 100, 4000, 4090, 4096, 5000])
async def test_an_echoed_header_never_shows_whatever_its_place_in_the_body(deepseek, offset):
    async def respond(request):
        from aiohttp import web

        echoed = "x" * offset + request.headers["Authorization"] + " trailing"
        return web.Response(status=400, text=echoed)

    deepseek.push(respond)
    reason = failed(await poll(deepseek, "deepseek"), deepseek)
    assert "HTTP 400" in reason


async def test_openrouter_pages_stay_within_the_attempts_time(openrouter):
    """A slow /keys listing is bounded by one attempt's time, not by each page's."""
    import asyncio

    from aiohttp import web

    openrouter.endless = True
    original = openrouter.answer

    async def slow(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/keys"):
            await asyncio.sleep(0.3)
        return await original(request)

    openrouter.answer = slow
    account = Account("acc", openrouter.key, openrouter.url, "openrouter")
    one_try = RetryPolicy(attempts=1, deadline=5)
    async with Client.new_session() as session:
        result = await Client(session, 1.0, one_try).poll(account)
    assert isinstance(result, PollFailure) and result.kind is FailureKind.UNREACHABLE
    assert len([r for r in openrouter.requests if r.path.endswith("/keys")]) <= 5


@pytest.mark.parametrize("empty", ['"error": null', '"error": ""', '"error": {}'])
async def test_an_empty_error_field_is_no_error(deepseek, empty):
    body = '{"is_available": true, %s, "balance_infos": [{"currency": "USD", "total_balance": "2.50"}]}'
    deepseek.push(raw(body % empty))
    snap = await poll(deepseek, "deepseek")
    assert isinstance(snap, Snapshot) and snap.total_quota == 2.5


@pytest.mark.parametrize("which", ["newapi", "openrouter", "deepseek"])
async def test_a_key_anywhere_but_the_bearer_header_is_rejected(
    which, newapi, openrouter, deepseek
):
    """The fakes, like the real servers, want `Authorization: Bearer <key>`; the
    provider sends it there, and nowhere else."""
    fake = {"newapi": newapi, "openrouter": openrouter, "deepseek": deepseek}[which]
    snap = await poll(fake, which)
    assert isinstance(snap, Snapshot)
    assert all(fake.key not in str(r.url) for r in fake.requests)
    revoked = "sk-revoked-0123456789abcdef-000"  # a key the site no longer knows
    failed(await poll(fake, which, key=revoked), fake, FailureKind.REJECTED)
