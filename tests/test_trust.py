"""No silent failure: one bad account, one failed chat or one config slip never
swallows an alert, and no error text leaks a key. In-process, against the
loopback fakes; the tests of the program as a process are in test_trust_process.py."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import sqlite3
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app.service import App
from bot.common.backoff import Backoff
from bot.config import ConfigError, parse
from bot.engine.model import (
    Account,
    EngineState,
    Event,
    EventKind,
    FailureKind,
    PollFailure,
    clean_name,
)
from bot.notify.delivery import Delivery
from bot.state.sqlite import db as store_db
from bot.state.sqlite import schema
from bot.state.sqlite.store import Store
from bot.upstream.client import Client
from bot.upstream.cometapi import parse_quota
from bot.upstream.parse import unique_subjects
from fakes import telegram as fake_tg
from fakes.cometapi import FakeCometAPI, reply_balance, reply_json, reply_raw
from fakes.slack import FakeSlack, text_objects
from fakes.telegram import FakeTelegram
from tests.conftest import QUERY_KEY
from tests.helpers import FAST, KEY_RULE, POISONS, SURROGATE, T0, TOTAL_RULE, Clock

ODD_KEY = "sk-odd-account-SECRET-0099"
TG_TOKEN = "123456789:AAFakeTokenForTrustTests_abcdefghij"
CHAT, OTHER_CHAT = 111111, 222222
CHANNEL = "C0ALERTS01"


@pytest.fixture
async def odd():
    """A second CometAPI account, on a fake of its own."""
    fake = FakeCometAPI(ODD_KEY)
    await fake.start()
    yield fake
    await fake.stop()


def odd_account(odd: FakeCometAPI) -> str:
    return f"""
[[accounts]]
name = "odd"
key = "{ODD_KEY}"
url = "{odd.url}"
"""


@pytest.fixture
async def tg():
    fake = FakeTelegram(TG_TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


def telegram(fake: FakeTelegram, chats: tuple[int, ...] = (CHAT,)) -> str:
    return f"""
[notifiers.telegram]
token = "{TG_TOKEN}"
chat_ids = [{", ".join(map(str, chats))}]
api_url = "{fake.url}"
"""


def main_events(events: list[Event]) -> list[tuple[str, EventKind]]:
    return [(e.subject, e.kind) for e in events if e.account == "main"]


# --- 1. one account's odd body is that account's failed poll, nothing more --------------


@pytest.mark.parametrize("body", POISONS.values(), ids=POISONS.keys())
async def test_a_poisoned_account_never_silences_another(make_config, comet, odd, body):
    comet.default = reply_balance(5)
    odd.default = reply_raw(body)
    async with App(make_config(odd_account(odd) + TOTAL_RULE), retry=FAST) as app:
        result = await app.cycle(notify=False)
        assert result.committed
        assert main_events(result.events) == [("total", EventKind.FIRE)]
        failure = result.results["odd"]
        assert isinstance(failure, PollFailure) and failure.kind is FailureKind.BAD_RESPONSE
        assert failure.reason.startswith("bad response from 127.0.0.1")
        again = await app.cycle(notify=False)
        assert again.committed and main_events(again.events) == []
        assert app.model.state.health["odd"].failures == 2


async def test_a_lone_surrogate_in_a_name_reaches_telegram_slack_and_metrics(
    make_config, comet, odd, tg
):
    slack = FakeSlack("xoxb-trust-bot-token-1234", "xapp-1-trust-app-token-5678")
    slack.add_channel(CHANNEL, "alerts")
    await slack.start()
    try:
        comet.default = reply_balance(100)
        odd.default = reply_raw(SURROGATE)
        sections = f"""
{telegram(tg)}
[notifiers.slack]
bot_token = "xoxb-trust-bot-token-1234"
app_token = "xapp-1-trust-app-token-5678"
channel = "{CHANNEL}"
api_url = "{slack.url}"
"""
        cfg = make_config(odd_account(odd) + KEY_RULE + sections, listen="127.0.0.1:0")
        ready, stop = asyncio.Event(), asyncio.Event()
        async with App(cfg, retry=FAST) as app:
            serving = asyncio.create_task(app.serve(stop, ready=lambda _: ready.set()))
            await asyncio.wait_for(ready.wait(), 10)
            (sent,) = await tg.wait_sent(1)
            (posted,) = await slack.wait_posted(1)
            metrics = (await get(app, "/metrics"))[1]
            stop.set()
            await serving
    finally:
        await slack.stop()
    assert "CRITICAL · odd / key bad\ufffd: $0.50 left" in plain_html(sent.text)
    assert "odd / key bad\ufffd: $0.50 left" in " ".join(text_objects(posted.blocks))
    assert (
        'balance_bot_key_remaining{account="odd",currency="USD",key="bad\ufffd",provider="cometapi"} 0.5'
        in metrics
    )


async def get(app: App, path: str) -> tuple[int, str]:
    assert app.web is not None
    url = f"http://127.0.0.1:{app.web.port}{path}"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


def plain_html(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def test_names_lose_control_and_bidi_characters_and_keep_the_rest():
    assert clean_name("prod\n<b>\u202eevil\u2066\u2028x\x00\u200f") == "prod<b>evilx"
    assert clean_name("bad\ud800") == "bad\ufffd"
    assert clean_name("émoji 🚀 und Ümläut") == "émoji 🚀 und Ümläut"
    snap = parse_quota(
        "main",
        json.dumps(
            {"total_quota": 1, "username": "a\nb", "keys": [{"name": "k\r\n", "remain_quota": 1}]}
        ).encode(),
        T0,
    )
    assert snap.username == "ab" and [k.name for k in snap.keys] == ["k"]


# an upstream error text is no safer than a name: cleaned the same way
NASTY = {
    "a lone surrogate": "\ud800",
    "ESC": "\x1b[31m",
    "NUL": "\x00",
    "a bidi override": "\u202e",
}
UNSAFE = re.compile("[\ud800-\udfff\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def error_replies(text: str) -> dict[str, object]:
    raw = text.encode("utf-8", "surrogatepass")  # a surrogate's bytes: invalid UTF-8
    return {
        "200 success false": reply_json({"success": False, "message": text}),
        "200 error": reply_json({"error": text}),
        "200 html": reply_raw(b"<html><body>" + raw + b"</body></html>", content_type="text/html"),
        "400 plain": reply_raw(raw, status=400, content_type="text/plain"),
        "404 html": reply_raw(b"<h1>" + raw + b"</h1>", status=404, content_type="text/html"),
    }


@pytest.mark.parametrize("nasty", NASTY.values(), ids=NASTY.keys())
async def test_an_upstream_error_text_loses_surrogates_control_and_bidi_characters(comet, nasty):
    async with Client.new_session() as session:
        client = Client(session, 2, FAST)
        for how, reply in error_replies(f"bad {nasty} thing").items():
            comet.default = reply
            failure = await client.poll(Account("main", QUERY_KEY, comet.url))
            assert isinstance(failure, PollFailure), how
            assert failure.kind is FailureKind.BAD_RESPONSE, how
            assert "bad" in failure.reason and "thing" in failure.reason, (how, failure.reason)
            assert not UNSAFE.search(failure.reason), (how, failure.reason)
            failure.reason.encode("utf-8")  # storable: no lone surrogate


async def test_a_lone_surrogate_in_an_error_message_does_not_stop_the_commit(
    make_config, comet, odd
):
    comet.default = reply_balance(5)
    odd.default = reply_raw(b'{"success": false, "message": "bad \\ud800\\u202e thing"}')
    async with App(make_config(odd_account(odd) + TOTAL_RULE), retry=FAST) as app:
        for _ in range(2):
            result = await app.cycle(notify=False)
            assert result.committed
            failure = result.results["odd"]
            assert isinstance(failure, PollFailure)
            assert failure.reason.endswith("CometAPI answered: bad \ufffd thing")


# --- 2. every configured destination hears of every firing alert -------------------------


async def test_a_chat_that_refused_hears_of_the_alert_once_it_works(make_config, comet, tg, caplog):
    comet.default = reply_balance(5)
    tg.fail_always("sendMessage", fake_tg.bad_request("Bad Request: chat not found"), chat_id=CHAT)
    cfg = make_config(TOTAL_RULE + telegram(tg), listen="127.0.0.1:0")
    caplog.set_level(logging.INFO)
    ready, stop = asyncio.Event(), asyncio.Event()
    async with App(cfg, retry=FAST) as app:
        serving = asyncio.create_task(app.serve(stop, ready=lambda _: ready.set()))
        await asyncio.wait_for(ready.wait(), 10)
        await tg.wait_calls("sendMessage", 1)
        await app.pipeline.wait_cycles(3)  # still firing: nothing new to send
        status, body = await get(app, "/healthz")
        metrics = (await get(app, "/metrics"))[1]
        stop.set()
        await serving
    entry = json.loads(body)["destinations"][f"telegram {CHAT}"]
    assert status == 200  # a failing chat is shown, but a restart would not fix it
    assert entry["ok"] is False and "chat not found" in entry["last_error"].lower()
    assert entry["since"]
    assert f'balance_bot_destination_up{{destination="{CHAT}",notifier="telegram"}} 0.0' in metrics
    assert len([c for c in tg.calls if c.method == "sendMessage"]) == 1
    failing = [r for r in caplog.records if r.getMessage() == "destination.failing"]
    assert len(failing) == 1 and failing[0].levelno == logging.ERROR
    assert failing[0].fields["destination"] == str(CHAT)
    assert tg.sent == []

    tg._always.clear()  # the operator fixes the chat (the bot joins it again)
    for _ in range(2):  # a restart tells it once, a second restart has nothing to add
        async with App(cfg, retry=FAST) as app:
            await app.start_notifiers(listen=False)
            await app.tell_missed()
            await app.delivery.deliver_due()
            assert app.health()[1]["destinations"][f"telegram {CHAT}"]["ok"] in (True, None)
    (sent,) = tg.sent
    text = plain_html(sent.text)
    assert text.startswith("CometAPI balance: still firing, 1 alert")
    assert "WARNING · main / total: $5.00 left (below $20.00" in text


async def test_a_destination_added_later_hears_of_what_is_still_firing(make_config, comet, tg):
    comet.default = reply_balance(5)
    async with App(make_config(TOTAL_RULE + telegram(tg)), retry=FAST) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        await app.delivery.deliver_due()
    assert [s.chat_id for s in tg.sent] == [CHAT]
    cfg = make_config(TOTAL_RULE + telegram(tg, chats=(CHAT, OTHER_CHAT)))
    async with App(cfg, retry=FAST) as app:
        await app.start_notifiers(listen=False)
        await app.tell_missed()
        result = await app.cycle()
        await app.delivery.deliver_due()
    assert result.events == []
    assert [s.chat_id for s in tg.sent] == [CHAT, OTHER_CHAT]
    assert "still firing" in plain_html(tg.sent[1].text)


async def test_a_fire_recorded_without_notifying_is_sent_by_the_next_notifying_run(
    make_config, comet, tg
):
    comet.default = reply_balance(5)
    cfg = make_config(TOTAL_RULE + telegram(tg))
    async with App(cfg, retry=FAST) as app:  # check --no-notify
        assert [e.kind for e in (await app.cycle(notify=False)).events] == [EventKind.FIRE]
    async with App(cfg, retry=FAST) as app:  # check
        await app.start_notifiers(listen=False)
        await app.tell_missed()
        assert (await app.cycle()).events == []
        await app.delivery.deliver_due()
    (sent,) = tg.sent
    assert "WARNING · main / total: $5.00 left" in plain_html(sent.text)


async def test_an_outage_is_a_firing_alert_too(make_config, comet, tg):
    comet.default = reply_json({"success": False, "message": "down"}, status=401)
    async with App(make_config(TOTAL_RULE), retry=FAST) as app:  # no chat yet: the log
        assert [e.kind for e in (await app.cycle()).events] == [EventKind.UNAVAILABLE]
    async with App(make_config(TOTAL_RULE + telegram(tg)), retry=FAST) as app:
        await app.start_notifiers(listen=False)
        await app.tell_missed()
        await app.delivery.deliver_due()
    (sent,) = tg.sent
    assert "DATA UNAVAILABLE · main: key rejected (HTTP 401" in plain_html(sent.text)


# --- 3. config slips that would switch a rule off ----------------------------------------

BASE = """
[[accounts]]
name = "main"
key = "${COMETAPI_QUERY_KEY}"

[[rules]]
name = "low"
target = "total"
below = 20
"""


def problems(text: str, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    return info.value.problems


@pytest.mark.parametrize(
    ("edit", "env", "expected"),
    [
        (
            ("below = 20", 'below = 20\naccounts = ["prod"]'),
            {"COMETAPI_QUERY_KEY": QUERY_KEY},
            "rules[0].accounts[0]: matches no account (accounts: main)",
        ),
        (
            ("${COMETAPI_QUERY_KEY}", "$COMETAPI_QUERY_KEY"),
            {"COMETAPI_QUERY_KEY": QUERY_KEY},
            "accounts[0].key: $COMETAPI_QUERY_KEY is not replaced by the environment: "
            "write ${COMETAPI_QUERY_KEY} (with braces)",
        ),
        (
            ("", ""),
            {"COMETAPI_QUERY_KEY": ""},
            "accounts[0].key: environment variable COMETAPI_QUERY_KEY is empty",
        ),
        (("", ""), {}, "accounts[0].key: environment variable COMETAPI_QUERY_KEY is not set"),
        (
            ("", ""),
            {"COMETAPI_QUERY_KEY": QUERY_KEY + "\n"},
            "accounts[0].key: must not contain spaces, newlines or control characters "
            "(from $COMETAPI_QUERY_KEY)",
        ),
    ],
    ids=[
        "glob matches no account",
        "$VAR without braces",
        "empty variable",
        "unset variable",
        "key with a trailing newline",
    ],
)
def test_config_slips_are_errors_naming_the_path_and_the_variable(edit, env, expected):
    found = problems(BASE.replace(*edit), env)
    assert found == [expected]
    assert not any(QUERY_KEY in p for p in found)


def test_a_default_applies_to_an_empty_variable_and_literal_dollars_need_braces():
    text = BASE.replace('"${COMETAPI_QUERY_KEY}"', '"${COMETAPI_QUERY_KEY:-sk-fallback-0001}"')
    cfg = parse(text, {"COMETAPI_QUERY_KEY": ""})
    assert cfg.accounts[0].key == "sk-fallback-0001"


def test_a_key_typed_into_the_wrong_field_is_not_echoed():
    text = BASE.replace("${COMETAPI_QUERY_KEY}", QUERY_KEY) + f'\n[bot]\ntimezone = "{QUERY_KEY}"\n'
    (found,) = problems(text, {})
    assert found.startswith("bot.timezone: unknown time zone") and QUERY_KEY not in found


def test_an_environment_override_is_validated_like_the_file():
    env = {"COMETAPI_QUERY_KEY": QUERY_KEY, "BALANCE_BOT_HTTP_LISTEN": "garbage"}
    assert problems(BASE, env) == [
        "bot.http_listen: must be 'host:port' (e.g. '0.0.0.0:9464') or '', not 'garbage' "
        "(from $BALANCE_BOT_HTTP_LISTEN)"
    ]


# --- 4. duplicate key names: unique, stable subjects ------------------------------------


def test_duplicate_names_get_the_smallest_free_number():
    assert unique_subjects(["a", "a", "a #2"]) == ["a", "a #3", "a #2"]
    assert unique_subjects(["a", "a", "a", "b"]) == ["a", "a #2", "a #3", "b"]
    assert unique_subjects(["x #2", "x", "x"]) == ["x #2", "x", "x #3"]


def unique_subjects_reference(names: list[str]) -> list[str]:
    """unique_subjects as it was (quadratic for many keys of one name): the reference."""
    real = set(names)
    taken: set[str] = set()
    out: list[str] = []
    for name in names:
        if name in taken:
            k = 2
            while f"{name} #{k}" in real or f"{name} #{k}" in taken:
                k += 1
            name = f"{name} #{k}"
        taken.add(name)
        out.append(name)
    return out


TRICKY_NAMES = [
    "",
    "a",
    "b",
    " #2",
    " #3",
    "a #2",
    "a #3",
    "a #4",
    "a #2 #2",
    "a #1",
    "a #0",
    "b #2",
]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(TRICKY_NAMES), max_size=60))
def test_duplicate_names_are_numbered_as_before(names):
    assert unique_subjects(names) == unique_subjects_reference(names)


@pytest.mark.parametrize("name", ["a", ""])
def test_20000_keys_of_one_name_are_numbered_without_quadratic_work(name):
    names = [name] * 20_000 + [f"{name} #{k}" for k in range(3, 40_000, 7)]
    real = set(names)
    expected = [name]
    k = 2
    for _ in range(19_999):
        while f"{name} #{k}" in real:
            k += 1
        expected.append(f"{name} #{k}")
        k += 1
    out = unique_subjects(names)
    assert out[:20_000] == expected and out[20_000:] == names[20_000:]
    assert len(set(out)) == len(out)


async def test_duplicate_key_names_do_not_flap(make_config, comet):
    keys = [{"name": n, "remain_quota": 1, "used_quota": 1} for n in ("a", "a", "a #2")]
    comet.default = reply_balance(100, keys)
    async with App(make_config(KEY_RULE), retry=FAST) as app:
        first = await app.cycle(notify=False)
        assert sorted(main_events(first.events)) == [
            ("a", EventKind.FIRE),
            ("a #2", EventKind.FIRE),
            ("a #3", EventKind.FIRE),
        ]
        for _ in range(3):
            assert (await app.cycle(notify=False)).events == []


# --- 5. a rule whose target or kind changed is a new rule --------------------------------


def rule(target: str, extra: str = "") -> str:
    return f"""
[[rules]]
name = "low"
target = "{target}"
below = 20
{extra}
"""


async def test_a_rule_changed_from_total_to_key_leaves_no_ghost(make_config, comet):
    comet.default = reply_balance(5, [{"name": "k1", "remain_quota": 50, "used_quota": 1}])
    async with App(make_config(rule("total")), retry=FAST) as app:
        assert main_events((await app.cycle()).events) == [("total", EventKind.FIRE)]
    async with App(make_config(rule("key")), retry=FAST) as app:
        assert (await app.cycle()).events == []
        assert app.model.state.alerts == {}


async def test_a_rule_changed_from_key_to_total_leaves_no_ghost(make_config, comet):
    comet.default = reply_balance(100, [{"name": "k1", "remain_quota": 5, "used_quota": 1}])
    async with App(make_config(rule("key")), retry=FAST) as app:
        assert main_events((await app.cycle()).events) == [("k1", EventKind.FIRE)]
    async with App(make_config(rule("total")), retry=FAST) as app:
        assert (await app.cycle()).events == []
        assert app.model.state.alerts == {}


async def test_a_rule_changed_from_usd_to_percent_is_new_but_a_new_threshold_is_not(
    make_config, comet
):
    comet.default = reply_balance(5)
    async with App(make_config(rule("total")), retry=FAST) as app:
        await app.cycle()
    percent = rule("total").replace("below = 20", "below_percent = 50")
    async with App(make_config(percent), retry=FAST) as app:  # 5 of 26.5: 18.9 %, fires anew
        assert main_events((await app.cycle()).events) == [("total", EventKind.FIRE)]
    lower = rule("total").replace("below = 20", "below = 10")
    async with App(make_config(lower), retry=FAST) as app:
        await app.cycle()
    async with App(
        make_config(rule("total").replace("below = 20", "below = 8")), retry=FAST
    ) as app:
        assert (await app.cycle()).events == []  # the same alert, still firing


# --- 6. a row this version cannot read fails alone --------------------------------------


async def test_an_unreadable_outbox_row_is_failed_with_its_reason(make_config, comet, caplog):
    comet.default = reply_balance(5)
    async with App(make_config(TOTAL_RULE), retry=FAST) as app:
        db = app.store._conn
        db.execute(
            "INSERT INTO outbox (created_at, notifier, destination, events, next_attempt_at) "
            "VALUES (?, 'log', 'default', ?, ?)",
            (
                T0.isoformat(),
                json.dumps({"v": 1, "events": [{"kind": "fire", "renamed_field": 1}]}),
                T0.isoformat(),
            ),
        )
        await app.start_notifiers(listen=False)
        await app.cycle()
        await app.delivery.deliver_due()
        rows = db.execute("SELECT status, last_error FROM outbox ORDER BY id").fetchall()
    assert rows[0][0] == "failed" and "renamed_field" in rows[0][1]
    assert rows[1][0] == "delivered"
    (record,) = [r for r in caplog.records if r.getMessage() == "delivery.unreadable"]
    assert record.levelno == logging.ERROR


# --- 16. pruning: batches, an index, off the event loop ---------------------------------


async def test_pruning_runs_in_batches_off_the_loop(make_config, comet, monkeypatch):
    monkeypatch.setattr(store_db, "PRUNE_BATCH", 500)
    pauses = 0

    def pause() -> None:  # between two statements the prune thread lets others write
        nonlocal pauses
        pauses += 1

    monkeypatch.setattr(store_db, "_prune_pause", pause)
    comet.default = reply_balance(100)
    async with App(make_config(TOTAL_RULE), retry=FAST) as app:
        old = (T0 - timedelta(days=400)).timestamp()
        app.store._conn.executemany(
            "INSERT INTO samples (account, at, total, used, spent) VALUES ('main', ?, 1, 1, 0)",
            ((old + i,) for i in range(20_000)),
        )
        plan = app.store._conn.execute(
            "EXPLAIN QUERY PLAN SELECT account, at FROM samples WHERE at < ? LIMIT 5", (old,)
        ).fetchall()
        assert "samples_by_time" in repr(plan)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        await app.cycle()  # polls, then prunes: 40 batches, each in a worker thread
        ticking.cancel()
        left = app.store._conn.execute("SELECT count(*) FROM samples WHERE at < ?", (old + 1e6,))
        assert left.fetchone()[0] == 0
        assert app.store._conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 1
    assert ticks > 40  # the loop ran between and during the batches
    assert pauses >= 40  # after each statement that deleted


# --- 17. a clock that steps back, redirects -----------------------------------------------


async def test_a_clock_stepping_back_does_not_stretch_a_retry(tmp_path):
    from bot.notifiers import DeliveryError
    from bot.state.sqlite.store import Store
    from bot.state.types import Commit, OutboxItem
    from tests.test_delivery import Scripted, event

    store = Store.open(tmp_path / "state.db")
    try:
        clock, notifier = Clock(T0), Scripted(destinations=("a",))
        notifier.failures["a"] = [DeliveryError("HTTP 502")]
        item = OutboxItem("fake", "a", (event("x"),))
        await store.commit_cycle(Commit(EngineState(), EngineState(), [], [item], T0))
        delivery = Delivery(store, {"fake": notifier}, Backoff(10, 40, 0), clock, lambda: 0.5)
        assert await delivery.deliver_due() == pytest.approx(10)
        clock.advance(-3600)  # NTP steps the clock back an hour
        assert await delivery.deliver_due() == pytest.approx(10)  # not 3,610
        assert notifier.sent == []
        clock.advance(10)
        assert await delivery.deliver_due() is None
        assert len(notifier.sent) == 1
    finally:
        await store.close()


def redirect(location: str, status: int = 301):
    async def respond(_: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location})

    return respond


async def test_redirects_are_followed_on_the_configured_host_only(comet):
    account = Account("main", QUERY_KEY, comet.url)
    async with Client.new_session() as session:
        client = Client(session, 2.0, FAST)

        comet.push(redirect("/user/quota/"))  # a trailing slash, as the docs show both
        ok = await client.poll(account)
        assert not isinstance(ok, PollFailure) and ok.total_quota == 100
        assert [r.query.get("key") for r in comet.requests] == [QUERY_KEY, QUERY_KEY]

        comet.requests.clear()
        comet.push(redirect(f"http://evil.example/steal?key={QUERY_KEY}", 302))
        away = await client.poll(account)
        assert isinstance(away, PollFailure) and away.kind is FailureKind.BAD_RESPONSE
        assert "redirects to another host (evil.example)" in away.reason
        assert QUERY_KEY not in away.reason and len(comet.requests) == 1  # not retried

        comet.requests.clear()
        comet.default = redirect("/user/quota")  # a loop
        loop = await client.poll(account)
        assert isinstance(loop, PollFailure) and loop.kind is FailureKind.BAD_RESPONSE
        assert "too many redirects" in loop.reason and len(comet.requests) == 4


# --- shared: the state file keeps told rows across an upgrade -----------------------------


async def test_an_older_state_file_knows_who_was_told(tmp_path):
    """A file from the first release: its delivered fire counts as told, its failed
    one does not (so that destination hears at the next start)."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for statement in schema.statements(schema.MIGRATIONS[0]):  # type: ignore[arg-type]
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    fire = Event(EventKind.FIRE, "main", T0, rule="low", target="total", subject="total")
    db.execute(
        "INSERT INTO alerts VALUES ('low', 'main', 'total', 1, 1, 5.0, ?, ?)",
        (T0.isoformat(), T0.isoformat()),
    )
    for destination, status in (("1", "delivered"), ("2", "failed")):
        db.execute(
            "INSERT INTO outbox (created_at, notifier, destination, events, next_attempt_at, "
            "status) VALUES (?, 'telegram', ?, ?, ?, ?)",
            (T0.isoformat(), destination, json.dumps([fire.to_dict()]), T0.isoformat(), status),
        )
    db.commit()
    db.close()
    store = Store.open(path)
    try:
        assert await store.told() == {(fire.alert, "telegram", "1")}
    finally:
        await store.close()


# --- 13. /balance asks every account at once and holds up no other command ----------------


def hang(seconds: float):
    async def respond(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response({"total_quota": 1})

    return respond


async def test_balance_fetches_at_once_and_never_holds_up_help(make_config, comet, odd, tg):
    """Three accounts hang: /balance answers within request_timeout with what it
    has (their last good data, or none), and /help sent after it is not held up."""
    comet.default = reply_balance(42)
    odd.default = reply_balance(7)
    slow = "".join(
        f'\n[[accounts]]\nname = "slow-{i}"\nkey = "{ODD_KEY}"\nurl = "{odd.url}"\n'
        for i in range(3)
    )
    cfg = make_config(slow + TOTAL_RULE + telegram(tg), bot='request_timeout = "2s"')
    async with App(cfg, retry=FAST) as app:
        await app.cycle(notify=False)  # good data for everyone
        app.clock = Clock()
        app.clock.advance(60)  # ... a minute ago: /balance fetches afresh
        odd.default = hang(30)
        await app.start_notifiers(listen=True)
        await tg.message(CHAT, "/balance")
        await tg.message(CHAT, "/help")
        helptext, balance = await tg.wait_sent(2, within=15)
    assert "commands" in helptext.text  # answered while /balance waited
    shown = plain_html(balance.text)
    assert "main (example_user)" in shown and "Balance: $42.00" in shown
    for i in range(3):
        assert f"slow-{i} (example_user)" in shown
    assert shown.count("fetch failed: no answer within 2s") == 3
    assert (
        shown.count("Balance: $7.00") == 3
        and shown.count("(1m 0s ago)") + shown.count("(1m ago)") >= 3
    )


# --- 14. a /balance too long for a chat is cut at five messages, saying what is missing --


async def test_telegram_balance_for_5000_keys_is_five_messages_at_most(make_config, comet, tg):
    names = [f"key-{i:05d}-" + "x" * 30 for i in range(5000)]
    comet.default = reply_balance(
        100, [{"name": n, "remain_quota": 5, "used_quota": 1} for n in names]
    )
    async with App(make_config(TOTAL_RULE + telegram(tg)), retry=FAST) as app:
        await app.start_notifiers(listen=True)
        await tg.message(CHAT, "/balance")
        sent = await tg.wait_sent(5, within=30)
        await tg.message(CHAT, "/help")
        await tg.wait_sent(6)
    answer = [plain_html(m.text) for m in sent[:5]]
    # numbered over what is sent (issue 20, defect 7)
    assert [a.split("\n")[0] for a in answer] == [f"CometAPI balance ({i}/5)" for i in range(1, 6)]
    shown = sum(a.count(": $5.00 left") for a in answer[:4])
    note = answer[4].removeprefix("CometAPI balance (5/5)\n\n")
    match = re.fullmatch(r"… (\d+) keys not shown \(a reply holds at most 5 messages\)", note)
    assert match, note  # one account: no "ask for one account"
    assert shown + int(match[1]) == 5000
    assert "commands" in plain_html(tg.sent[5].text)  # nothing else came of the answer
