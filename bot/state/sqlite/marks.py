"""What people did and small facts: snoozes, acks, the messages sent with buttons
(to edit them as their alerts change), and meta facts such as the last digest."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from bot.engine.model import Ack, AlertKey, EventFormatError, MessageKind, Silence
from bot.state.codec import decode_payload, message_params
from bot.state.sqlite.db import Db, _dt, _ts
from bot.state.types import SentMessage


class Marks(Db):
    async def silences(self, now: datetime) -> list[Silence]:
        """The snoozes still running."""
        rows = self._rows(
            "SELECT id, pattern, alerts, until, who FROM silences WHERE until > ? ORDER BY id",
            (_ts(now),),
        )
        return [
            Silence(
                datetime.fromisoformat(r["until"]),
                r["who"],
                r["pattern"],
                frozenset(AlertKey(*a) for a in json.loads(r["alerts"])),
                r["id"],
            )
            for r in rows
        ]

    async def add_silence(self, silence: Silence, now: datetime) -> int:
        alerts = json.dumps(sorted(list(k) for k in silence.alerts))
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO silences (pattern, alerts, until, who, created_at) VALUES (?,?,?,?,?)",
                (silence.pattern, alerts, _ts(silence.until), silence.who, _ts(now)),
            )
        return cursor.lastrowid or 0

    async def end_silences(self, ids: Iterable[int], now: datetime) -> None:
        self._write([("UPDATE silences SET until=? WHERE id=?", [(_ts(now), i) for i in ids])])

    async def acks(self) -> dict[AlertKey, Ack]:
        rows = self._rows("SELECT rule, account, subject, who, at FROM acks")
        return {
            (key := AlertKey(r["rule"], r["account"], r["subject"])): Ack(
                key, r["who"], datetime.fromisoformat(r["at"])
            )
            for r in rows
        }

    async def add_acks(self, acks: Iterable[Ack]) -> None:
        self._write(
            [
                (
                    "INSERT OR REPLACE INTO acks (rule, account, subject, who, at) "
                    "VALUES (?,?,?,?,?)",
                    [(*a.key, a.who, _ts(a.at)) for a in acks],
                )
            ]
        )

    async def record_message(self, sent: SentMessage, now: datetime) -> int:
        """A message a platform accepted, with the alerts it announced."""
        with self._transaction() as db:
            message_id = db.execute(
                "INSERT INTO messages (notifier, destination, outbox_id, part, platform_id, "
                "events, created_at) VALUES (?,?,?,?,?,?,?)",
                message_params(sent, now),
            ).lastrowid
            db.executemany(
                "INSERT OR IGNORE INTO message_alerts (message_id, rule, account, subject) "
                "VALUES (?,?,?,?)",
                ((message_id, *key) for key in sent.alerts),
            )
        return message_id or 0

    async def sent_message(self, notifier: str, outbox_id: int, part: int) -> SentMessage | None:
        """The message that part `part` of outbox row `outbox_id` became (a button's token)."""
        rows = self._rows(
            "SELECT id FROM messages WHERE outbox_id=? AND part=? AND notifier=? "
            "ORDER BY id DESC LIMIT 1",
            (outbox_id, part, notifier),
        )
        return await self.sent(rows[0]["id"]) if rows else None

    async def messages_of(self, alerts: Iterable[AlertKey]) -> list[SentMessage]:
        """Every message that announced one of `alerts`."""
        ids: set[int] = set()
        for key in alerts:
            ids.update(
                r["message_id"]
                for r in self._rows(
                    "SELECT message_id FROM message_alerts WHERE rule=? AND account=? AND "
                    "subject=?",
                    key,
                )
            )
        return [m for i in sorted(ids) if (m := await self.sent(i)) is not None]

    async def sent(self, message_id: int) -> SentMessage | None:
        rows = self._rows(
            "SELECT id, notifier, destination, outbox_id, part, platform_id, events "
            "FROM messages WHERE id=?",
            (message_id,),
        )
        if not rows:
            return None
        r = rows[0]
        try:
            kind, events, _, _ = decode_payload(r["events"])
        except EventFormatError:  # written by a newer version: no edits to it
            kind, events = MessageKind.ALERTS, ()
        alerts = {
            AlertKey(a["rule"], a["account"], a["subject"]): _dt(a["resolved_at"])
            for a in self._rows(
                "SELECT rule, account, subject, resolved_at FROM message_alerts WHERE message_id=?",
                (message_id,),
            )
        }
        return SentMessage(
            r["notifier"],
            r["destination"],
            r["outbox_id"],
            r["part"],
            r["platform_id"],
            kind,
            events,
            tuple(alerts),
            alerts,
            r["id"],
        )

    async def meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0]["value"] if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        self._write([("INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", [(key, value)])])
