"""The outbox in PostgreSQL: rows to deliver per (notifier, destination), what
each destination was told of each alert, and the rows quiet hours hold. A
"delivered" mark is fenced: refused once another process took over."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg

from bot.engine.model import AlertKey
from bot.state.codec import outbox_params, outbox_row
from bot.state.codec import ts as _ts
from bot.state.postgres.fence import Fenced
from bot.state.types import LONG_AGO, OutboxItem, OutboxRow, OutboxStatus, Told, tells

_ROW = (
    "SELECT id, created_at, notifier, destination, events, parts_sent, attempts, "
    "next_attempt_at FROM outbox"
)


async def enqueue_rows(
    conn: psycopg.AsyncConnection[Any], items: Iterable[OutboxItem], now: datetime
) -> None:
    """Outbox rows, and the destinations they tell of each alert."""
    for item in items:
        held = item.hold_until is not None
        cursor = await conn.execute(
            "INSERT INTO outbox (created_at, notifier, destination, events, next_attempt_at, "
            "status, hold_until) VALUES (%s,%s,%s,%s,%s,%s,%s) RETURNING id",
            outbox_params(item, now),
        )
        (row_id,) = await cursor.fetchone() or (None,)
        told = item.told_rows(row_id)
        if held or not told:
            continue  # told only once released
        async with conn.cursor() as many:
            await many.executemany(
                "INSERT INTO told (rule, account, subject, notifier, destination, outbox_id) "
                "VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                told,
            )


class Outbox(Fenced):
    async def enqueue(
        self, items: Iterable[OutboxItem], now: datetime, meta: Mapping[str, str] | None = None
    ) -> None:
        async with self._fenced() as conn:
            await enqueue_rows(conn, items, now)
            for key, value in (meta or {}).items():
                await conn.execute(
                    "INSERT INTO meta (key, value) VALUES (%s,%s) "
                    "ON CONFLICT (key) DO UPDATE SET value=EXCLUDED.value",
                    (key, value),
                )

    async def told(self) -> set[Told]:
        rows = await self._rows("SELECT rule, account, subject, notifier, destination FROM told")
        return {(AlertKey(r[0], r[1], r[2]), r[3], r[4]) for r in rows}

    async def told_at(self) -> dict[Told, datetime]:
        rows = await self._rows(
            "SELECT t.rule, t.account, t.subject, t.notifier, t.destination, o.created_at "
            "FROM told t LEFT JOIN outbox o ON o.id = t.outbox_id"
        )
        return {
            (AlertKey(r[0], r[1], r[2]), r[3], r[4]): (
                datetime.fromisoformat(r[5]) if r[5] else LONG_AGO
            )
            for r in rows
        }

    async def holding(self) -> set[Told]:
        return tells(await self.held(None))

    async def pending(self, queue: tuple[str, str] | None = None) -> list[OutboxRow]:
        if queue is None:
            rows = await self._rows(f"{_ROW} WHERE status='pending' ORDER BY id")
        else:
            rows = await self._rows(
                f"{_ROW} WHERE status='pending' AND notifier=%s AND destination=%s ORDER BY id",
                queue,
            )
        return [outbox_row(_named(r)) for r in rows]

    async def queues(self) -> list[tuple[str, str]]:
        rows = await self._rows(
            "SELECT notifier, destination FROM outbox WHERE status='pending' "
            "GROUP BY notifier, destination ORDER BY min(id)"
        )
        return [(r[0], r[1]) for r in rows]

    async def mark_sent_parts(self, row_id: int, parts_sent: int) -> None:
        await self._write([("UPDATE outbox SET parts_sent=%s WHERE id=%s", [(parts_sent, row_id)])])

    async def mark_done(
        self, row_id: int, status: OutboxStatus, now: datetime, error: str = ""
    ) -> None:
        async with self._fenced(status is OutboxStatus.DELIVERED) as conn:
            await conn.execute(
                "UPDATE outbox SET status=%s, done_at=%s, last_error=%s WHERE id=%s",
                (status.value, _ts(now), error, row_id),
            )
            if status in (OutboxStatus.FAILED, OutboxStatus.DROPPED):
                await conn.execute("DELETE FROM told WHERE outbox_id=%s", (row_id,))

    async def mark_retry(self, row_id: int, attempts: int, next_at: datetime, error: str) -> None:
        await self._write(
            [
                (
                    "UPDATE outbox SET attempts=%s, next_attempt_at=%s, last_error=%s WHERE id=%s",
                    [(attempts, _ts(next_at), error, row_id)],
                )
            ]
        )

    async def reschedule(self, row_id: int, next_at: datetime) -> None:
        await self._write(
            [("UPDATE outbox SET next_attempt_at=%s WHERE id=%s", [(_ts(next_at), row_id)])]
        )

    async def backlog(self) -> dict[str, int]:
        rows = await self._rows(
            "SELECT notifier, count(*) FROM outbox WHERE status='pending' GROUP BY notifier"
        )
        return {r[0]: r[1] for r in rows}

    async def held(self, due: datetime | None) -> list[OutboxRow]:
        rows = await self._rows(
            f"{_ROW} WHERE status='held' AND hold_until <= %s ORDER BY id",
            (_ts(due) if due else "9999",),
        )
        return [outbox_row(_named(r)) for r in rows]

    async def release(
        self, held: Iterable[int], items: Iterable[OutboxItem], now: datetime
    ) -> None:
        async with self._fenced() as conn:
            for i in held:
                await conn.execute(
                    "UPDATE outbox SET status=%s, done_at=%s, last_error='released at the end "
                    "of quiet hours' WHERE id=%s",
                    (OutboxStatus.SUPERSEDED.value, _ts(now), i),
                )
            await enqueue_rows(conn, items, now)


_NAMES = (
    "id",
    "created_at",
    "notifier",
    "destination",
    "events",
    "parts_sent",
    "attempts",
    "next_attempt_at",
)


def _named(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(_NAMES, row, strict=True))
