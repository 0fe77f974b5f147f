"""`balance-bot test-notify`: one short test message to every configured
destination, at once, one attempt each (README, "Commands"); neither the state file nor
the outbox is touched. One line per destination; exit 0 when all took it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from bot import notifiers as registry
from bot.app.fleet import active_notifier_names
from bot.common.secrets import redact
from bot.config import Config
from bot.engine.model import MessageKind
from bot.notifiers import Command, DeliveryError, Notifier, NotifierContext, Press
from bot.notifiers.message import Message, Section, Span
from bot.notify.render import clock

OVERALL = 30.0  # seconds for every destination together
MAX_RETRY_AFTER = 5.0  # a platform asking to wait longer counts as a failure
PER_SEND = 15.0


class _NoCommands:
    """test-notify answers no chat command."""

    def table(self) -> Sequence[Command]:
        return ()

    def refusal(self) -> Message:
        return Message("", ())

    async def press(self, press: Press) -> str:
        return ""


def _brand(config: Config) -> str:
    return "CometAPI" if {a.provider for a in config.accounts} <= {"cometapi"} else "AI credit"


def test_message(now: datetime, config: Config) -> Message:
    # no backticks: chats show them literally (message text is plain, escaped)
    line = (
        Span(f"This destination will get {_brand(config)} balance alerts. Sent by "),
        Span("balance-bot test-notify", bold=True),
        Span(f" at {clock(now, config.bot.zone)}."),
    )
    return Message("balance-bot test message", (Section("", (line,)),), kind=MessageKind.TEST)


async def test_notify(config: Config) -> int:
    context = NotifierContext(_NoCommands(), config.bot.zone)
    message = test_message(datetime.now(UTC), config)
    lines: list[tuple[str, bool]] = []
    plugins: list[Notifier] = []
    try:
        async with asyncio.timeout(OVERALL):
            for name in active_notifier_names(config):
                cls = registry.load(name)
                section = config.notifiers.get(name)
                plugin = cls(name, section if section is not None else cls.Config(), context)
                plugins.append(plugin)
                lines.extend(await _try(plugin, message))
    except TimeoutError:
        lines.append((f"test-notify: failed: no answer within {OVERALL:g}s", False))
    finally:
        for plugin in plugins:
            try:
                await plugin.stop()
            except Exception as exc:  # a line, never a traceback
                lines.append((f"{plugin.name}: stopping failed: {type(exc).__name__}", True))
    for line, _ in lines:
        print(redact(line))
    return 0 if all(ok for _, ok in lines) else 1


async def _try(plugin: Notifier, message: Message) -> list[tuple[str, bool]]:
    """One line per destination of `plugin` (the default ones and every group's)."""
    name = plugin.name
    targets = dict.fromkeys(
        [*plugin.destinations(), *(d for ds in plugin.groups().values() for d in ds)]
    )
    try:
        await asyncio.wait_for(plugin.start(listen=False), PER_SEND)
    except Exception as exc:  # one line per destination, never a traceback
        if isinstance(exc, TimeoutError):
            what, advice = f"no answer within {PER_SEND:g}s", ""
        else:
            what, advice = _parts(str(exc) or type(exc).__name__, [f"{name}: "])
        remedy = advice or f"check the network and [notifiers.{name}]"
        return [(f"{name} {plugin.label(d)}: failed: {what} — {remedy}", False) for d in targets]
    if name == registry.FALLBACK:
        await plugin.send("default", plugin.format(message)[0])
        return [(f"{name}: ok", True)]
    return [await _send(plugin, destination, message) for destination in targets]


async def _send(plugin: Notifier, destination: str, message: Message) -> tuple[str, bool]:
    where = f"{plugin.name} {plugin.label(destination)}"
    payload = plugin.format(message)[0]
    for attempt in (1, 2):
        try:
            await asyncio.wait_for(plugin.send(destination, payload), PER_SEND)
            return f"{where}: ok", True
        except DeliveryError as exc:
            wait = exc.retry_after
            if attempt == 1 and wait is not None and wait <= MAX_RETRY_AFTER:
                await asyncio.sleep(wait)  # the platform said when: one more try
                continue
            label = plugin.label(destination)
            marks = [f"{label}: ", f"{destination}: ", f"{label} ", f"{destination} "]
            what, _ = _parts(exc.reason, marks)  # the advice in it is what remedy() says
            return f"{where}: failed: {what} — {plugin.remedy(exc)}", False
        except TimeoutError:
            return f"{where}: failed: no answer within {PER_SEND:g}s — check the network", False
    raise AssertionError("unreachable")  # pragma: no cover


def _parts(text: str, marks: Sequence[str]) -> tuple[str, str]:
    """A failure text, `[<where>: ]<what>[; <advice>]`, as (what, advice): the
    line names the destination already, so the words up to the first of `marks`
    (a notifier's name, a label) in its first part go, and the advice after the
    first "; " is said once, as the remedy."""
    for mark in marks:
        at = text.lower().find(mark.lower())
        if at >= 0 and ": " not in text[:at] and text[at + len(mark) :].strip():
            text = text[at + len(mark) :]
            break
    what, _, advice = text.partition("; ")
    return what.strip(), advice.strip()
