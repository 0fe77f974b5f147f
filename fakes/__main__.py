"""`python -m fakes cometapi|telegram|slack`: one loopback fake, by hand.

Run from the checkout (docs/offline.md). Each starts its fake on 127.0.0.1,
prints the `export` lines that point balance-bot at it (the starter config of
`balance-bot init` reads them) and the credentials it accepts, then reads stdin:

- cometapi: a number sets the balance it answers from the next poll on.
- telegram: a line is a message from the fake chat (`/balance`, `/status`,
  ...); `press <label>` presses a button of the bot's latest message that has it.
- slack: a line is the slash command (`/balance`, `/balance spend 7d`);
  `press <label>` as for Telegram.

What the bot sends prints as it arrives. Ctrl-C (or SIGTERM) ends it with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import os
import re
import signal
import stat
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fakes.cometapi import FakeCometAPI, quota
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram

PORTS = {"cometapi": 9801, "telegram": 9802, "slack": 9803}

QUERY_KEY = "fake-query-key-0123456789"
TELEGRAM_TOKEN = "123456789:AAFakeTokenForOfflineUse_abcdefghijk"
CHAT_ID = 111111  # a private chat with the fake user 111111
SLACK_BOT_TOKEN = "xoxb-0000000000-fake-bot-token"
SLACK_APP_TOKEN = "xapp-1-A0FAKE0001-fake-app-token"
CHANNEL = "C0FAKE0001"
SLACK_USER = "U0USER0001"
BALANCE = 15.0  # below the starter config's warning (20): a first alert at the first poll

Handler = Callable[[str], Awaitable[None]]


def say(text: str = "") -> None:
    print(text, flush=True)


def indented(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def plain_html(text: str) -> str:
    """Telegram HTML as a terminal shows it."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


# --- cometapi ---------------------------------------------------------------------------


class Balance:
    """The balance the fake answers; lowering it spends (the used figure grows)."""

    def __init__(self, total: float) -> None:
        self.total, self.used, self.polls = total, 21.5, 0

    def set(self, total: float) -> None:
        self.used += max(0.0, self.total - total)
        self.total = total

    async def respond(self, _: web.Request) -> web.StreamResponse:
        self.polls += 1
        say(f"poll {self.polls}: answered ${self.total:,.2f}")
        keys = [
            {"name": "prod-api", "remain_quota": round(self.total / 2, 6), "used_quota": 4.0},
            {"name": "balance-query", "remain_quota": 0, "used_quota": 0},
        ]
        body = quota(round(self.total, 6), keys, total_used_quota=round(self.used, 6))
        return web.json_response(body)


async def cometapi(port: int, balance: float) -> tuple[Callable[[], Awaitable[None]], Handler]:
    fake = await FakeCometAPI(QUERY_KEY).start(port)
    state = Balance(balance)
    fake.default = state.respond
    say(f"fake CometAPI on {fake.url}; for balance-bot:")
    say(f"  export COMETAPI_URL={fake.url}")
    say(f"  export COMETAPI_QUERY_KEY={QUERY_KEY}")
    say(f'  (in a config: url = "{fake.url}")')
    say(f"It answers a balance of ${balance:,.2f}. Type a new balance and Enter to change it.")

    async def line(text: str) -> None:
        try:
            total = float(text.removeprefix("$").replace(",", ""))
        except ValueError:
            say(f"not a number: {text!r}; type a balance such as 4.50")
            return
        state.set(total)
        say(f"the balance is now ${total:,.2f} (from the next poll on)")

    return fake.stop, line


# --- telegram ---------------------------------------------------------------------------


def telegram_buttons(markup: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = (markup or {}).get("inline_keyboard") or []
    return [b for row in rows for b in row if isinstance(b, dict)]


async def telegram(port: int) -> tuple[Callable[[], Awaitable[None]], Handler]:
    fake = await FakeTelegram(TELEGRAM_TOKEN).start(port)
    say(f"fake Telegram Bot API on {fake.url}; for balance-bot:")
    say(f"  export TELEGRAM_API_URL={fake.url}")
    say(f"  export TELEGRAM_BOT_TOKEN={TELEGRAM_TOKEN}")
    say(f"  export TELEGRAM_CHAT_ID={CHAT_ID}")
    say(f'  (in a config: api_url = "{fake.url}", chat_ids = [{CHAT_ID}])')
    say(
        "Type a message for the bot as the fake chat (/balance, /status, /help) and Enter;"
        " 'press Ack' presses a button of its latest message."
    )
    printer = asyncio.create_task(print_telegram(fake))

    async def line(text: str) -> None:
        if text.lower().startswith("press "):
            await press_telegram(fake, text[len("press ") :].strip())
            return
        await fake.message(CHAT_ID, text)
        say(f"you → bot: {text}")

    async def stop() -> None:
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
        await fake.stop()

    return stop, line


async def print_telegram(fake: FakeTelegram) -> None:
    sent = edits = answers = 0

    def changed(seen: tuple[int, int, int]) -> bool:
        return (len(fake.sent), len(fake.edits), len(fake.answers)) != seen

    while True:
        async with fake._changed:
            await fake._changed.wait_for(lambda seen=(sent, edits, answers): changed(seen))
        for message in fake.sent[sent:]:
            say(f"bot → chat {message.chat_id}:")
            say(indented(plain_html(message.text)))
            labels = [str(b.get("text")) for b in telegram_buttons(message.reply_markup)]
            if labels:
                say("  " + " ".join(f"[{label}]" for label in labels))
        for edit in fake.edits[edits:]:
            what = plain_html(edit.text) if edit.text is not None else "(its buttons changed)"
            say(f"bot edited its message {edit.message_id}:")
            say(indented(what))
        for answer in list(fake.answers.values())[answers:]:
            say(f"bot answered the press: {answer.text or '(nothing to show)'}")
        sent, edits, answers = len(fake.sent), len(fake.edits), len(fake.answers)


async def press_telegram(fake: FakeTelegram, label: str) -> None:
    for stored in sorted(fake.messages.values(), key=lambda m: -m.message_id):
        for button in telegram_buttons(stored.reply_markup):
            if str(button.get("text", "")).lower() == label.lower() and "callback_data" in button:
                await fake.callback(stored.chat_id, stored.message_id, button["callback_data"])
                say(f"you pressed [{button['text']}] on message {stored.message_id}")
                return
    say(f"no message of the bot has a button {label!r}")


# --- slack ------------------------------------------------------------------------------


def slack_text(blocks: list[dict[str, Any]], fallback: str) -> tuple[str, list[dict[str, Any]]]:
    """The text of the blocks (or the fallback) and their buttons."""
    lines: list[str] = []
    buttons: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") == "actions":
            buttons += [e for e in block.get("elements", []) if e.get("type") == "button"]
            continue
        text = block.get("text")
        if isinstance(text, dict) and isinstance(text.get("text"), str):
            lines.append(text["text"])
        for element in block.get("elements") or block.get("fields") or []:
            if isinstance(element, dict) and isinstance(element.get("text"), str):
                lines.append(element["text"])
    shown = "\n".join(lines) if lines else fallback
    return html.unescape(shown), buttons


def show_slack(heading: str, blocks: list[dict[str, Any]], fallback: str) -> None:
    text, buttons = slack_text(blocks, fallback)
    say(heading)
    say(indented(text))
    if buttons:
        say("  " + " ".join(f"[{b.get('text', {}).get('text', '?')}]" for b in buttons))


async def slack(port: int) -> tuple[Callable[[], Awaitable[None]], Handler]:
    fake = FakeSlack(SLACK_BOT_TOKEN, SLACK_APP_TOKEN)
    fake.scopes.add("channels:read")
    fake.add_channel(CHANNEL, "general")
    await fake.start(port)
    say(f"fake Slack on {fake.url}; for balance-bot:")
    say(f"  export SLACK_API_URL={fake.url}")
    say(f"  export SLACK_BOT_TOKEN={SLACK_BOT_TOKEN}")
    say(f"  export SLACK_APP_TOKEN={SLACK_APP_TOKEN}")
    say(f"  export SLACK_CHANNEL={CHANNEL}")
    say(f'  (in a config: api_url = "{fake.url}", channel = "{CHANNEL}")')
    say(
        "Type the slash command as someone in the channel (/balance, /balance status) and"
        " Enter; 'press Ack' presses a button of the bot's latest message."
    )
    printer = asyncio.create_task(print_slack(fake))

    async def line(text: str) -> None:
        if text.lower().startswith("press "):
            await press_slack(fake, text[len("press ") :].strip())
            return
        if not fake._open():
            say("balance-bot is not connected over Socket Mode yet (is it running?)")
            return
        await fake.slash(text.removeprefix("/balance").strip(), CHANNEL, SLACK_USER)
        say(f"you → bot: {text}")

    async def stop() -> None:
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
        await fake.stop()

    return stop, line


async def print_slack(fake: FakeSlack) -> None:
    posted = updated = connections = 0
    answered: dict[str, int] = {}

    def counts() -> tuple[int, int, int, dict[str, int]]:
        responses = {e: len(r) for e, r in fake.responses.items()}
        return len(fake.posted), len(fake.updated), fake.connections, responses

    while True:
        async with fake._changed:
            seen = (posted, updated, connections, answered)
            await fake._changed.wait_for(lambda seen=seen: counts() != seen)
        if fake.connections > connections:
            say("balance-bot connected over Socket Mode: slash commands reach it now")
        for message in fake.posted[posted:]:
            show_slack(f"bot → {message.channel}:", message.blocks, message.text)
        for update in fake.updated[updated:]:
            show_slack(f"bot edited its message {update.ts}:", update.blocks, update.text)
        for envelope, bodies in fake.responses.items():
            for body in bodies[answered.get(envelope, 0) :]:
                if body.get("delete_original") in (True, "true"):
                    continue
                blocks = body.get("blocks") or []
                show_slack("bot answered you:", blocks, str(body.get("text") or ""))
        posted, updated, connections, answered = counts()


async def press_slack(fake: FakeSlack, label: str) -> None:
    for stored in sorted(fake.messages.values(), key=lambda m: m.ts, reverse=True):
        _, buttons = slack_text(stored.blocks, "")
        for button in buttons:
            if str(button.get("text", {}).get("text", "")).lower() == label.lower():
                await fake.block_action(
                    stored.channel,
                    stored.ts,
                    str(button["action_id"]),
                    str(button.get("value", "")),
                    user_id=SLACK_USER,
                )
                say(f"you pressed [{button['text']['text']}] on message {stored.ts}")
                return
    say(f"no message of the bot has a button {label!r}")


# --- the loop ---------------------------------------------------------------------------


async def read_lines(handle: Handler) -> None:
    """Each line of stdin to `handle`; at its end, nothing more (the fake serves on)."""
    mode = os.fstat(sys.stdin.fileno()).st_mode
    if not (sys.stdin.isatty() or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return  # /dev/null or a file: nobody types there
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while raw := await reader.readline():
            text = raw.decode(errors="replace").strip()
            if text:
                await handle(text)
    finally:
        with contextlib.suppress(OSError, ValueError):  # closed at its end already
            os.set_blocking(sys.stdin.fileno(), True)  # the terminal is the shell's again


async def serve(kind: str, port: int, balance: float) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        if kind == "cometapi":
            stop, handle = await cometapi(port, balance)
        elif kind == "telegram":
            stop, handle = await telegram(port)
        else:
            stop, handle = await slack(port)
    except OSError as exc:
        say(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; try --port 0 (any free port)"
        )
        return 1
    say("Ctrl-C stops it.")
    reading = asyncio.create_task(read_lines(handle))
    await stopping.wait()
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reading
    await stop()
    say(f"fake {kind} stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fakes",
        description="A loopback fake of CometAPI, Telegram or Slack, to try balance-bot "
        "without credentials (docs/offline.md).",
    )
    p.add_argument("kind", choices=sorted(PORTS))
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: 9801, 9802, 9803)")
    p.add_argument(
        "--balance",
        type=float,
        default=BALANCE,
        help=f"cometapi: the balance (default {BALANCE:g})",
    )
    args = p.parse_args(argv)
    port = PORTS[args.kind] if args.port is None else args.port
    return asyncio.run(serve(args.kind, port, args.balance))


if __name__ == "__main__":
    sys.exit(main())
