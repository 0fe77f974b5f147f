"""Messages that follow their alerts: the edit of a message sent with buttons,
saying which of its alerts resolved, who snoozed them until when, and who
acknowledged them (docs/telegram.md, docs/slack.md). Its buttons go once all have resolved.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.engine.model import Ack, AlertKey, Silence
from bot.notify.render import clock, followed_message, subject
from bot.state.types import OutboxItem, SentMessage

MAX_NAMED = 3  # alerts named in a note; beyond, "and N more"


def follow_up(
    sent: SentMessage,
    silences: Sequence[Silence],
    acks: Mapping[AlertKey, Ack],
    now: datetime,
    zone: ZoneInfo,
    resolving: Collection[AlertKey] = (),
) -> OutboxItem:
    """The edit of `sent` as things stand at `now`; `resolving`: alerts that
    resolve in the commit this edit is part of."""
    resolved = [k for k in sent.alerts if sent.resolved.get(k) or k in resolving]
    still = [k for k in sent.alerts if k not in resolved]
    names = _names(sent)
    notes: list[str] = []
    if resolved and not still:
        last = max((sent.resolved.get(k) or now for k in resolved), default=now)
        notes.append(f"✅ Resolved ({clock(last, zone)})")
    elif resolved:
        notes.append(f"✅ Resolved: {names(resolved)}")
    snoozed: dict[tuple[str, datetime], list[AlertKey]] = {}
    acked: dict[str, list[AlertKey]] = {}
    for key in still:
        covering = [s for s in silences if s.covers(key, now)]
        if covering:
            longest = max(covering, key=lambda s: s.until)
            snoozed.setdefault((longest.who, longest.until), []).append(key)
        if key in acks:
            acked.setdefault(acks[key].who, []).append(key)
    for (who, until), keys in snoozed.items():
        which = "" if len(keys) == len(still) else f": {names(keys)}"
        notes.append(f"🔕 Snoozed by {who} until {clock(until, zone)}{which}")
    for who, keys in acked.items():
        which = "" if len(keys) == len(still) else f": {names(keys)}"
        notes.append(f"☑️ Acknowledged by {who}{which}")
    ref = f"{sent.outbox_id}.{sent.part}"
    message = followed_message(sent.kind, sent.events, notes, bool(still), ref)
    return OutboxItem(sent.notifier, sent.destination, (), sent.kind, message, edit_of=sent.id)


def _names(sent: SentMessage) -> Callable[[Iterable[AlertKey]], str]:
    """How notes name some of the message's alerts: as its lines did."""
    said = {e.alert: subject(e) for e in sent.events}

    def names(keys: Iterable[AlertKey]) -> str:
        found = [said.get(k, f"{k.account} / {k.subject or 'total'}") for k in keys]
        more = len(found) - MAX_NAMED
        return ", ".join(found[:MAX_NAMED]) + (f" and {more} more" if more > 0 else "")

    return names
