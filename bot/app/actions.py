"""What people do to alerts from a chat (README, "How alerts behave"):
/snooze, /unsnooze and the buttons of alert messages. Silences and acks are
stored (they survive restarts and apply to every notifier); the engine reads
them at the next poll. A pressed message is edited through the outbox.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.common.logs import log_event
from bot.config import parse_duration
from bot.engine.model import Ack, AlertKey, EngineState, Silence, clean_name, matches
from bot.notifiers import Press
from bot.notifiers.message import Message
from bot.notify.followup import follow_up
from bot.notify.render import clock, duration, silence_name
from bot.state.protocol import StateStore
from bot.state.types import SentMessage

logger = logging.getLogger(__name__)

SNOOZE_BUTTONS = {"s1h": 3600.0, "s1d": 86400.0}
ACK = "ack"
VERBS = frozenset({*SNOOZE_BUTTONS, ACK})
# a button's token, message.piece_ref: "<outbox row>.<piece>", in ASCII digits
# (int() would also take spaces, underscores and other scripts' digits)
_TOKEN = re.compile(r"([0-9]{1,19})\.([0-9]{1,6})")
MAX_ROW = 2**63 - 1  # SQLite's largest integer: a larger one raises OverflowError
MAX_SNOOZE = 90 * 86400.0  # a longer silence is a rule to change, not a snooze
MAX_WHO = 64
MAX_PATTERN = 200


def _who(text: str) -> str:
    """Who did it, as stored and shown: a platform display name, made harmless."""
    return clean_name(text).strip()[:MAX_WHO] or "someone"


SNOOZE_USAGE = (
    "Usage: /snooze <pattern> <duration>, e.g. /snooze main/* 4h. A pattern is a glob "
    "on an account, account/subject or rule name."
)


class AlertSource(Protocol):
    """What actions read from the running bot (the monitor)."""

    @property
    def timezone(self) -> ZoneInfo: ...

    @property
    def state(self) -> EngineState: ...

    def now(self) -> datetime: ...


class AlertActions:
    def __init__(
        self,
        store: StateStore,
        source: AlertSource,
        changed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self._changed = changed  # an edit was queued or the silences changed

    async def changed(self) -> None:
        if self._changed is not None:
            await self._changed()

    # --- buttons --------------------------------------------------------------

    async def press(self, press: Press) -> str:
        """A button pressed on a message the bot sent: the short answer shown to
        whoever pressed it. The message is edited to say who did what. A client
        may send any button data: what is not a button balance-bot made does
        nothing, and a press acts only on a message sent to the chat it came from."""
        token = _TOKEN.fullmatch(press.token)
        if press.verb not in VERBS or token is None or int(token[1]) > MAX_ROW:
            return "Nothing to do: this is not a button balance-bot made."
        sent = await self.store.sent_message(press.notifier, int(token[1]), int(token[2]))
        if sent is None or (sent.notifier, sent.destination) != (press.notifier, press.destination):
            return "This message is too old for its buttons; use /snooze <pattern> <duration>."
        now, who = self.source.now(), _who(press.who)
        state = self.source.state.alerts
        open_ = [k for k in sent.alerts if not sent.resolved.get(k)]
        firing = [k for k in open_ if (s := state.get(k)) is not None and s.firing]
        if not firing:
            await self._follow(sent, now)
            return "Nothing to do: these alerts have resolved."
        if press.verb in SNOOZE_BUTTONS:
            until = now + timedelta(seconds=SNOOZE_BUTTONS[press.verb])
            await self.store.add_silence(Silence(until, who, alerts=frozenset(firing)), now)
            answer = f"Snoozed {_count(firing)} until {clock(until, self.source.timezone)}."
        else:
            await self.store.add_acks(Ack(k, who, now) for k in firing)
            answer = f"Acknowledged {_count(firing)}: no reminders until resolved."
        log_event(
            logger,
            "alert.action",
            verb=press.verb,
            who=who,
            notifier=press.notifier,
            alerts=len(firing),
        )
        await self._follow(sent, now)
        return answer

    async def _follow(self, sent: SentMessage, now: datetime) -> None:
        silences, acks = await self.store.silences(now), await self.store.acks()
        edit = follow_up(sent, silences, acks, now, self.source.timezone)
        await self.store.enqueue([edit], now)
        await self.changed()

    # --- commands -------------------------------------------------------------

    async def snooze(self, args: str, who: str) -> Message:
        """/snooze <pattern> <duration>: silence what matches, now and until then."""
        words = args.split()
        if len(words) < 2:
            return _note(SNOOZE_USAGE)
        pattern, text = clean_name(" ".join(words[:-1]))[:MAX_PATTERN], words[-1]
        try:
            seconds = parse_duration(text)
        except ValueError:
            return _note(f"{text!r} is not a duration such as 30m, 4h or 2d. {SNOOZE_USAGE}")
        if not 0 < seconds <= MAX_SNOOZE:
            return _note(f"A snooze lasts more than 0 and at most {duration(MAX_SNOOZE)}.")
        now = self.source.now()
        silence = Silence(now + timedelta(seconds=seconds), _who(who), pattern)
        matching = [
            k for k, s in self.source.state.alerts.items() if s.firing and silence.covers(k, now)
        ]
        await self.store.add_silence(silence, now)
        await self.changed()
        log_event(logger, "alert.snoozed", pattern=pattern, who=silence.who, seconds=seconds)
        until = clock(silence.until, self.source.timezone)
        if matching:
            said = f"{_count(matching)} firing now"
        else:
            said = "nothing firing matches it now; it will silence what does"
        return _note(f"Snoozed {pattern} until {until}: {said}.")

    async def unsnooze(self, args: str, who: str) -> Message:
        """/unsnooze <pattern|all>: end the snoozes of that pattern (or of alerts it
        matches, for those set with a button)."""
        pattern = args.strip()
        if not pattern:
            return _note("Usage: /unsnooze <pattern|all>; /status lists the snoozes.")
        now = self.source.now()
        running = await self.store.silences(now)
        ended = [s for s in running if pattern == "all" or _unsnoozes(pattern, s)]
        if not ended:
            listed = ", ".join(silence_name(s) for s in running) or "none"
            return _note(f"No snooze matches {pattern!r}. Snoozed: {listed}.")
        await self.store.end_silences([s.id for s in ended if s.id is not None], now)
        await self.changed()
        log_event(logger, "alert.unsnoozed", pattern=pattern, who=who, silences=len(ended))
        return _note(
            f"Ended {len(ended)} snooze{'s' if len(ended) > 1 else ''}: what still fires is "
            "announced at the next poll."
        )


def _unsnoozes(pattern: str, silence: Silence) -> bool:
    if not silence.alerts:
        return silence.pattern == pattern
    return all(matches(pattern, k) for k in silence.alerts)


def _count(keys: Sequence[AlertKey]) -> str:
    return f"{len(keys)} alert{'s' if len(keys) > 1 else ''}"


def _note(text: str) -> Message:
    return Message(text, ())
