"""How the state's values are written as text: outbox payloads (events, and the
messages rendered ahead), and snapshots. Shared by every backend; a payload this
version cannot read raises EventFormatError and is failed, never sent."""

from __future__ import annotations

import json
from datetime import datetime
from sys import intern
from typing import Any, Protocol

import msgspec

from bot.engine.message import Message
from bot.engine.model import Event, EventFormatError, MessageKind, Snapshot
from bot.state.types import Layout, OutboxItem, OutboxRow, OutboxStatus, SentMessage

PAYLOAD_VERSION = 1  # of the outbox's `events` column: {"v": 1, "kind": ..., "events": [...]}

_encoder = msgspec.json.Encoder()


def encode(data: Any) -> str:
    """JSON text, as json.dumps would give it (up to spacing), several times faster."""
    return _encoder.encode(data).decode()


def snapshot_text(snapshot: Snapshot) -> str:
    """A snapshot as rows before frames held it (bot/state/snapshot_rows.py):
    Snapshot.to_dict() with each key as a [name, remain, used] array. Such rows are
    still read (snapshot_of); nothing writes this form any more but the tests."""
    return encode(
        {
            "account": snapshot.account,
            "username": snapshot.username,
            "total_quota": snapshot.total_quota,
            "total_used_quota": snapshot.total_used_quota,
            "request_count": snapshot.request_count,
            "keys": snapshot.keys,  # named tuples: encoded as arrays
            "fetched_at": snapshot.fetched_at.isoformat(),
            "currency": snapshot.currency,
            "used_derived": snapshot.used_derived,
            "available": snapshot.available,
            "unlimited": snapshot.unlimited,
        }
    )


def snapshot_of(text: str) -> Snapshot:
    return Snapshot.from_dict(json.loads(text))


def encode_payload(item: OutboxItem) -> str:
    data: dict[str, Any] = {
        "v": PAYLOAD_VERSION,
        "kind": item.kind,
        "events": [e.to_dict() for e in item.events],
    }
    if item.message is not None:
        data["message"] = item.message.to_dict()
    if item.edit_of is not None:
        data["edit_of"] = item.edit_of
    return json.dumps(data)


Payload = tuple[MessageKind, tuple[Event, ...], Message | None, int | None]


def decode_payload(text: str) -> Payload:
    """An outbox payload (the first release stored a bare list of events).
    Raises model.EventFormatError for a payload this version cannot read."""
    try:
        data: Any = json.loads(text)
        if isinstance(data, list):
            return MessageKind.ALERTS, tuple(Event.from_dict(e) for e in data), None, None
        if data.get("v", 0) > PAYLOAD_VERSION:
            raise EventFormatError(f"payload version {data.get('v')} is newer than this one")
        events = tuple(Event.from_dict(e) for e in data["events"])
        message = Message.from_dict(data["message"]) if data.get("message") else None
        edit_of = int(data["edit_of"]) if data.get("edit_of") is not None else None
        return MessageKind(data.get("kind", MessageKind.ALERTS)), events, message, edit_of
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, EventFormatError):
            raise
        raise EventFormatError(f"unreadable outbox payload ({type(exc).__name__}: {exc})") from None


def ts(value: datetime | None) -> str | None:
    """A time as stored (ISO 8601 text, in every backend)."""
    return value.isoformat() if value else None


def dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def outbox_params(item: OutboxItem, now: datetime) -> tuple[Any, ...]:
    """An outbox row's columns as both backends insert them: created_at,
    notifier, destination, events, next_attempt_at, status, hold_until."""
    status = OutboxStatus.PENDING if item.hold_until is None else OutboxStatus.HELD
    payload = encode_payload(item)
    return (ts(now), item.notifier, item.destination, payload, ts(now), status, ts(item.hold_until))


def message_params(sent: SentMessage, now: datetime) -> tuple[Any, ...]:
    """A sent message's columns as both backends insert them: notifier,
    destination, outbox_id, part, platform_id, events, created_at."""
    told = encode_payload(OutboxItem("", "", sent.events, sent.kind))
    return (
        sent.notifier,
        sent.destination,
        sent.outbox_id,
        sent.part,
        sent.platform_id,
        told,
        ts(now),
    )


def layout_of(rows: list[tuple[Any, ...]], layout_id: int) -> Layout | None:
    """A stored layout read back from its (account, names, since) row; None when
    it is missing or damaged (its samples' keys then go unread, nothing else)."""
    try:
        account, names, since = rows[0][0], json.loads(rows[0][1]), json.loads(rows[0][2])
    except (IndexError, ValueError, TypeError):
        return None
    # interned: the same strings as the snapshots' and ledgers' names
    return Layout(account, tuple(map(intern, map(str, names))), tuple(since), layout_id)


class ByName(Protocol):
    """A row read by column name (sqlite3.Row, a dict)."""

    def __getitem__(self, name: str) -> Any: ...


def outbox_row(r: ByName) -> OutboxRow:
    """An outbox row read back (by column name); an unreadable payload makes it a
    row to fail with its reason."""
    message, edit_of = None, None
    try:
        kind, events, message, edit_of = decode_payload(r["events"])
        problem = ""
    except EventFormatError as exc:
        kind, events, problem = MessageKind.ALERTS, (), str(exc)
    return OutboxRow(
        id=r["id"],
        created_at=datetime.fromisoformat(r["created_at"]),
        notifier=r["notifier"],
        destination=r["destination"],
        events=events,
        parts_sent=r["parts_sent"],
        attempts=r["attempts"],
        next_attempt_at=datetime.fromisoformat(r["next_attempt_at"]),
        kind=kind,
        problem=problem,
        message=message,
        edit_of=edit_of,
    )
