"""Loopback fakes for the benchmark, meant to run in their own process.

    PYTHONPATH=. .venv/bin/python bench/fake_upstream.py --accounts 5000 --keys 50

prints one JSON line with the ports, then serves until stdin closes:

- a fake CometAPI ``GET /user/quota?key=<key>`` for ``--accounts`` accounts,
  each with its own key (``key_for(i)``) and a CometAPI-shaped body (README, "Polling") with
  ``--keys`` keys. It is a bare asyncio protocol answering from pre-encoded
  bytes, so that the fake spends as little CPU per request as possible and
  the client under test stays the bottleneck. Control (same port):
  ``/_bench/phase?low=1`` puts the even-numbered accounts at $10 (below the
  benchmark's $20 rule), ``&upto=K`` only those below K, ``low=0`` puts every
  account at $100;
  ``/_bench/move?on=1`` makes the balances move: from then on every answer for
  an account moves its figures a little from the previous answer (total_quota
  and each limited key's remain_quota down by $0.0001, total_used_quota and each
  limited key's used_quota up by as much), ``on=0`` holds them still (steady);
  ``/_bench/delay?ms=50`` holds every /user/quota answer back that long
  (simulated upstream latency); ``/_bench/stats`` reports the request count,
  the CLOCK_MONOTONIC time of the first request since ``/_bench/reset``, this
  process's CPU seconds, and when the fake Telegram received each sendMessage
  (``telegram_received``; ``telegram`` adds the chat and the first line of
  each, ``telegram_edits`` the times of editMessageText calls).
- the fake Telegram Bot API and fake Slack of ``fakes`` (aiohttp), on
  their own ports, for the notifier measurements.

Moving balances stay cheap: every body is pre-encoded once per account and
phase as a template whose moving numbers end in four marker bytes (their last
four decimals), and an answer is the template with the markers replaced by the
account's poll counter (up) and 9999 minus it (down): two ``bytes.replace``
calls, the same in the steady mode (whose counter just does not advance), so
that both modes cost the fake the same CPU. The counter stops at 9,999 answers
per account.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram

TELEGRAM_TOKEN = "123456789:AAFakeTokenForBench_abcdefghijklmnopq"
SLACK_BOT_TOKEN = "xoxb-bench-0000000000-bench-bot-token"
SLACK_APP_TOKEN = "xapp-1-bench-0000000000-bench-app-token"
SLACK_CHANNEL = "C0BENCH0001"
LOW_TOTAL, HIGH_TOTAL = 10.0, 100.0
UP, DOWN = b"\x01" * 4, b"\x02" * 4  # markers: the last four decimals of a moving number
MAX_MOVES = 9999
PROVIDER_PATHS = frozenset(
    (
        "/v1/dashboard/billing/subscription",
        "/v1/dashboard/billing/usage",
        "/api/v1/credits",
        "/api/v1/keys",
        "/user/balance",
    )
)
_BEARER = re.compile(rb"(?im)^authorization:\s*bearer\s+(\S+)")


def key_for(index: int) -> str:
    """The query key of account `index` (long enough to count as a secret)."""
    return f"sk-bench-{index:05d}-0123456789abcdef"


def _entries(index: int, keys: int, moving: bool) -> list[dict[str, Any]]:
    """The keys of account `index`: the query-only token (remain 0), one unlimited
    key, and limited keys well above the benchmark's key rule ($1). If `moving`,
    the limited keys' figures are placeholders for `quota_template`."""
    entries: list[dict[str, Any]] = [
        {"name": "balance-query", "remain_quota": 0, "used_quota": 0},
        {"name": "unlimited-batch", "remain_quota": 999999999, "used_quota": -1},
    ]
    prefixes = ("prod", "staging", "dev", "ml")
    for j in range(max(keys - len(entries), 0)):
        remain = 5.0 + (index * 7 + j * 13) % 400 / 4
        used = 0.5 + (index + j) % 97 / 3
        entries.append(
            {
                "name": f"{prefixes[j % len(prefixes)]}-service-{j:03d}",
                "remain_quota": f"<<{int(remain)}D>>" if moving else round(remain, 6),
                "used_quota": f"<<{int(used)}U>>" if moving else round(used, 6),
            }
        )
    return entries[:keys]


def _body(index: int, keys: int, total: Any, used: Any, moving: bool) -> dict[str, Any]:
    return {
        "username": f"bench_user_{index:05d}",
        "total_quota": total,
        "total_used_quota": used,
        "request_count": 1221 + index,
        "keys": _entries(index, keys, moving),
    }


def quota_body(index: int, keys: int, total: float) -> bytes:
    """A /user/quota body shaped like CometAPI's (README, "Polling"), with `keys` keys."""
    return json.dumps(_body(index, keys, total, 21.065912, False)).encode()


_PLACEHOLDER = re.compile(rb'"<<(\d+)([UD])>>"')


def quota_template(index: int, keys: int, total: float) -> bytes:
    """`quota_body` with moving numbers: total_quota and every limited key's
    remain_quota end in the DOWN marker, total_used_quota and every used_quota
    in the UP marker (each `<integer part>.` + four marker bytes)."""
    text = json.dumps(_body(index, keys, f"<<{int(total) - 1}D>>", "<<21U>>", True)).encode()
    return _PLACEHOLDER.sub(lambda m: m[1] + b"." + (UP if m[2] == b"U" else DOWN), text)


def render(template: bytes, moves: int) -> bytes:
    """A template (or a whole response holding one) after `moves` moves."""
    return template.replace(UP, b"%04d" % moves).replace(DOWN, b"%04d" % (MAX_MOVES - moves))


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0][:200]


class TimedTelegram(FakeTelegram):
    """FakeTelegram that notes when each sendMessage (and edit) arrived
    (CLOCK_MONOTONIC), to which chat, and the message's first line (its title,
    with an "(i/n)" marker if Telegram's 4,096-character limit split it)."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.received: list[float] = []
        self.messages_in: list[tuple[float, Any, str]] = []
        self.edited: list[float] = []

    async def _api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        now = time.monotonic()
        self.received.append(now)
        self.messages_in.append((now, params.get("chat_id"), _first_line(str(params.get("text")))))
        return await super()._api_sendMessage(params)

    async def _api_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        self.edited.append(time.monotonic())
        return await super()._api_editMessageText(params)


class Comet:
    """State of the fake CometAPI, shared by every connection."""

    def __init__(self, accounts: int, keys: int, telegram: TimedTelegram) -> None:
        self.index = {key_for(i): i for i in range(accounts)}
        high = [_response("200 OK", quota_template(i, keys, HIGH_TOTAL)) for i in range(accounts)]
        self.high = high
        self.low = [
            _response("200 OK", quota_template(i, keys, LOW_TOTAL)) if i % 2 == 0 else high[i]
            for i in range(accounts)
        ]
        self.bodies = self.high
        self.moves = [0] * accounts  # answers so far that moved each account's balances
        self.moving = False
        self.delay = 0.0  # seconds before each /user/quota answer (simulated upstream latency)
        self.telegram = telegram
        self.requests = 0
        self.first_request_at: float | None = None
        self.rejected = _response("401 Unauthorized", b'{"success": false, "message": "bad key"}')
        self.not_found = _response("404 Not Found", b"not found", "text/plain")
        self.keys = keys
        self.router_keys: dict[int, list[dict[str, Any]]] = {}

    def answer(self, target: str, head: bytes = b"") -> tuple[bytes, float]:
        """The response to a GET of `target` (`head`: the request's headers), and
        how long to hold it back."""
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        if parts.path in PROVIDER_PATHS:
            return self.provider(parts.path, query, head), self.delay
        if parts.path in ("/user/quota", "/user/quota/"):
            self.requests += 1
            if self.first_request_at is None:
                self.first_request_at = time.monotonic()
            index = self.index.get(query.get("key", [""])[0])
            if index is None:
                return self.rejected, self.delay
            moves = self.moves[index]
            if self.moving and moves < MAX_MOVES:
                self.moves[index] = moves = moves + 1
            return render(self.bodies[index], moves), self.delay
        return self.control(parts.path, query), 0.0

    def provider(self, path: str, query: dict[str, list[str]], head: bytes) -> bytes:
        """new-api, OpenRouter and DeepSeek answers for the account whose key is the
        request's Bearer token (the same keys as the CometAPI accounts'); balances
        move like CometAPI's when `moving`."""
        self.requests += 1
        if self.first_request_at is None:
            self.first_request_at = time.monotonic()
        found = _BEARER.search(head)
        index = self.index.get(found[1].decode("latin-1")) if found else None
        if index is None:
            return self.rejected
        moves = self.moves[index]
        if self.moving and moves < MAX_MOVES and path != "/api/v1/keys":  # keys: same poll
            self.moves[index] = moves = moves + 1
        total = LOW_TOTAL if self.bodies is self.low and index % 2 == 0 else HIGH_TOTAL
        if path.endswith("/subscription"):
            body = {"object": "billing_subscription", "hard_limit_usd": total + 21.0}
        elif path.endswith("/usage"):
            body = {"object": "list", "total_usage": 2100 + moves / 100}
        elif path.endswith("/credits"):
            body = {"data": {"total_credits": total + 21.0, "total_usage": 21.0 + moves / 1e4}}
        elif path.endswith("/keys"):
            offset = int(query.get("offset", ["0"])[0] or 0)
            if index not in self.router_keys:
                self.router_keys[index] = [
                    {
                        "name": e["name"],
                        "label": e["name"][:6],
                        "disabled": False,
                        "limit": None if e["used_quota"] == -1 else 1000.0,
                        "limit_remaining": e["remain_quota"],
                        "usage": e["used_quota"],
                    }
                    for e in _entries(index, self.keys, False)
                ]
            body = {"data": self.router_keys[index][offset : offset + 100]}
        else:  # /user/balance
            left = f"{total - moves / 1e4:.4f}"
            info = {"currency": "USD", "total_balance": left, "granted_balance": "0.00"}
            body = {"is_available": True, "balance_infos": [{**info, "topped_up_balance": left}]}
        return _response("200 OK", json.dumps(body).encode())

    def control(self, path: str, query: dict[str, list[str]]) -> bytes:
        if path == "/_bench/phase":
            if query.get("low", ["0"])[0] != "1":
                self.bodies = self.high
            elif "upto" in query:  # only the even-numbered accounts below `upto`
                upto = int(query["upto"][0])
                self.bodies = self.low[:upto] + self.high[upto:]
            else:
                self.bodies = self.low
            return self._json({"ok": True})
        if path == "/_bench/move":
            self.moving = query.get("on", ["0"])[0] == "1"
            return self._json({"ok": True})
        if path == "/_bench/delay":
            self.delay = float(query.get("ms", ["0"])[0]) / 1000
            return self._json({"ok": True})
        if path == "/_bench/reset":
            self.requests, self.first_request_at = 0, None
            return self._json({"ok": True})
        if path == "/_bench/stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return self._json(
                {
                    "requests": self.requests,
                    "first_request_at": self.first_request_at,
                    "cpu_seconds": usage.ru_utime + usage.ru_stime,
                    "telegram_received": self.telegram.received,
                    "telegram": self.telegram.messages_in,
                    "telegram_edits": self.telegram.edited,
                }
            )
        return self.not_found

    @staticmethod
    def _json(data: dict[str, Any]) -> bytes:
        return _response("200 OK", json.dumps(data).encode())


class CometProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive server for body-less GET requests."""

    def __init__(self, comet: Comet) -> None:
        self.comet = comet
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            try:
                _, target, _ = request_line.split(" ", 2)
            except ValueError:
                self.transport.close()
                return
            response, delay = self.comet.answer(target, head)
            close = b"\r\nconnection: close" in head.lower()
            if delay:
                asyncio.get_running_loop().call_later(delay, self._send, response, close)
            else:
                self._send(response, close)
            if close:
                return

    def _send(self, response: bytes, close: bool) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return
        self.transport.write(response)
        if close:
            self.transport.close()


async def serve(accounts: int, keys: int) -> None:
    telegram = TimedTelegram(TELEGRAM_TOKEN)
    await telegram.start()
    slack = FakeSlack(SLACK_BOT_TOKEN, SLACK_APP_TOKEN)
    slack.add_channel(SLACK_CHANNEL, "alerts")
    await slack.start()
    comet = Comet(accounts, keys, telegram)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CometProtocol(comet), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"comet": port, "telegram": telegram.port, "slack": slack.port}), flush=True)
    # Serve until the parent closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await telegram.stop()
    await slack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--keys", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(serve(args.accounts, args.keys))


if __name__ == "__main__":
    main()
