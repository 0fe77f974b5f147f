"""Snoozes, acks, the messages sent with buttons and meta facts, in PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from bot.engine.model import Ack, AlertKey, EventFormatError, MessageKind, Silence
from bot.state.codec import decode_payload, message_params
from bot.state.codec import dt as _dt
from bot.state.codec import ts as _ts
from bot.state.postgres.fence import Fenced
from bot.state.types import SentMessage


class Marks(Fenced):
    async def silences(self, now: datetime) -> list[Silence]:
        rows = await self._rows(
            'SELECT id, pattern, alerts, "until", who FROM silences WHERE "until" > %s ORDER BY id',
            (_ts(now),),
        )
        return [
            Silence(
                datetime.fromisoformat(r[3]),
                r[4],
                r[1],
                frozenset(AlertKey(*a) for a in json.loads(r[2])),
                r[0],
            )
            for r in rows
        ]

    async def add_silence(self, silence: Silence, now: datetime) -> int:
        alerts = json.dumps(sorted(list(k) for k in silence.alerts))
        async with self._transaction() as conn:
            cursor = await conn.execute(
                'INSERT INTO silences (pattern, alerts, "until", who, created_at) '
                "VALUES (%s,%s,%s,%s,%s) RETURNING id",
                (silence.pattern, alerts, _ts(silence.until), silence.who, _ts(now)),
            )
            row = await cursor.fetchone()
        return row[0] if row else 0

    async def end_silences(self, ids: Iterable[int], now: datetime) -> None:
        await self._write(
            [('UPDATE silences SET "until"=%s WHERE id=%s', [(_ts(now), i) for i in ids])]
        )

    async def acks(self) -> dict[AlertKey, Ack]:
        rows = await self._rows("SELECT rule, account, subject, who, at FROM acks")
        return {
            (key := AlertKey(r[0], r[1], r[2])): Ack(key, r[3], datetime.fromisoformat(r[4]))
            for r in rows
        }

    async def add_acks(self, acks: Iterable[Ack]) -> None:
        await self._write(
            [
                (
                    "INSERT INTO acks (rule, account, subject, who, at) VALUES (%s,%s,%s,%s,%s) "
                    "ON CONFLICT (rule, account, subject) DO UPDATE SET who=EXCLUDED.who, "
                    "at=EXCLUDED.at",
                    [(*a.key, a.who, _ts(a.at)) for a in acks],
                )
            ]
        )

    async def record_message(self, sent: SentMessage, now: datetime) -> int:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO messages (notifier, destination, outbox_id, part, platform_id, "
                "events, created_at) VALUES (%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                message_params(sent, now),
            )
            row = await cursor.fetchone()
            message_id = row[0] if row else 0
            if sent.alerts:
                async with conn.cursor() as many:
                    await many.executemany(
                        "INSERT INTO message_alerts (message_id, rule, account, subject) "
                        "VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                        [(message_id, *key) for key in sent.alerts],
                    )
        return int(message_id)

    async def sent_message(self, notifier: str, outbox_id: int, part: int) -> SentMessage | None:
        rows = await self._rows(
            "SELECT id FROM messages WHERE outbox_id=%s AND part=%s AND notifier=%s "
            "ORDER BY id DESC LIMIT 1",
            (outbox_id, part, notifier),
        )
        return await self.sent(rows[0][0]) if rows else None

    async def messages_of(self, alerts: Iterable[AlertKey]) -> list[SentMessage]:
        ids: set[int] = set()
        for key in alerts:
            rows = await self._rows(
                "SELECT message_id FROM message_alerts WHERE rule=%s AND account=%s AND subject=%s",
                tuple(key),
            )
            ids.update(r[0] for r in rows)
        return [m for i in sorted(ids) if (m := await self.sent(i)) is not None]

    async def sent(self, message_id: int) -> SentMessage | None:
        rows = await self._rows(
            "SELECT id, notifier, destination, outbox_id, part, platform_id, events "
            "FROM messages WHERE id=%s",
            (message_id,),
        )
        if not rows:
            return None
        r = rows[0]
        try:
            kind, events, _, _ = decode_payload(r[6])
        except EventFormatError:
            kind, events = MessageKind.ALERTS, ()
        alerts = {
            AlertKey(a[0], a[1], a[2]): _dt(a[3])
            for a in await self._rows(
                "SELECT rule, account, subject, resolved_at FROM message_alerts "
                "WHERE message_id=%s ORDER BY rule, account, subject",
                (message_id,),
            )
        }
        return SentMessage(r[1], r[2], r[3], r[4], r[5], kind, events, tuple(alerts), alerts, r[0])

    async def meta(self, key: str) -> str | None:
        rows = await self._rows("SELECT value FROM meta WHERE key=%s", (key,))
        return rows[0][0] if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._write(
            [
                (
                    "INSERT INTO meta (key, value) VALUES (%s,%s) "
                    "ON CONFLICT (key) DO UPDATE SET value=EXCLUDED.value",
                    [(key, value)],
                )
            ]
        )
