"""The outbox: rows to deliver per (notifier, destination), what each destination
was told of each alert, and the rows quiet hours hold."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime

from bot.engine.model import AlertKey
from bot.state.codec import outbox_params, outbox_row
from bot.state.sqlite.db import Db, _ts
from bot.state.types import LONG_AGO, OutboxItem, OutboxRow, OutboxStatus, Told, tells


def enqueue_rows(db: sqlite3.Connection, items: Iterable[OutboxItem], now: datetime) -> None:
    """Outbox rows, and the destinations they tell of each alert."""
    for item in items:
        held = item.hold_until is not None
        row_id = db.execute(
            "INSERT INTO outbox (created_at, notifier, destination, events, "
            "next_attempt_at, status, hold_until) VALUES (?,?,?,?,?,?,?)",
            outbox_params(item, now),
        ).lastrowid
        if held:
            continue  # told only once released
        db.executemany(  # the first message since it fired: quiet hours ask when that was
            "INSERT OR IGNORE INTO told (rule, account, subject, notifier, destination, "
            "outbox_id) VALUES (?,?,?,?,?,?)",
            item.told_rows(row_id),
        )


class Outbox(Db):
    async def enqueue(
        self, items: Iterable[OutboxItem], now: datetime, meta: Mapping[str, str] | None = None
    ) -> None:
        with self._transaction() as db:
            enqueue_rows(db, items, now)
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", (meta or {}).items()
            )

    async def told(self) -> set[Told]:
        return {
            (AlertKey(r["rule"], r["account"], r["subject"]), r["notifier"], r["destination"])
            for r in self._rows("SELECT rule, account, subject, notifier, destination FROM told")
        }

    async def told_at(self) -> dict[Told, datetime]:
        """told(), with when each destination's first message of the alert was
        queued (long ago, once pruning has taken that row: the alert is still told)."""
        return {
            (
                AlertKey(r["rule"], r["account"], r["subject"]),
                r["notifier"],
                r["destination"],
            ): datetime.fromisoformat(r["created_at"]) if r["created_at"] else LONG_AGO
            for r in self._rows(
                "SELECT t.rule, t.account, t.subject, t.notifier, t.destination, o.created_at "
                "FROM told t LEFT JOIN outbox o ON o.id = t.outbox_id"
            )
        }

    async def holding(self) -> set[Told]:
        """The alerts that rows held for quiet hours will tell each destination of."""
        return tells(await self.held(None))

    async def pending(self, queue: tuple[str, str] | None = None) -> list[OutboxRow]:
        """Undelivered rows in order; only those for (notifier, destination) if given."""
        sql = (
            "SELECT id, created_at, notifier, destination, events, parts_sent, attempts, "
            "next_attempt_at FROM outbox WHERE status='pending'"
        )
        if queue is None:
            rows = self._rows(sql + " ORDER BY id")
        else:
            rows = self._rows(sql + " AND notifier=? AND destination=? ORDER BY id", queue)
        return [outbox_row(r) for r in rows]

    async def queues(self) -> list[tuple[str, str]]:
        rows = self._rows(
            "SELECT notifier, destination, min(id) AS first FROM outbox WHERE status='pending' "
            "GROUP BY notifier, destination ORDER BY first"
        )
        return [(r["notifier"], r["destination"]) for r in rows]

    async def mark_sent_parts(self, row_id: int, parts_sent: int) -> None:
        self._write([("UPDATE outbox SET parts_sent=? WHERE id=?", [(parts_sent, row_id)])])

    async def mark_done(
        self, row_id: int, status: OutboxStatus, now: datetime, error: str = ""
    ) -> None:
        work: list[tuple[str, Iterable[tuple]]] = [
            (
                "UPDATE outbox SET status=?, done_at=?, last_error=? WHERE id=?",
                [(status, _ts(now), error, row_id)],
            )
        ]
        if status in (OutboxStatus.FAILED, OutboxStatus.DROPPED):
            # that destination was not told after all: it hears at the next start
            work.append(("DELETE FROM told WHERE outbox_id=?", [(row_id,)]))
        self._write(work)

    async def mark_retry(self, row_id: int, attempts: int, next_at: datetime, error: str) -> None:
        self._write(
            [
                (
                    "UPDATE outbox SET attempts=?, next_attempt_at=?, last_error=? WHERE id=?",
                    [(attempts, _ts(next_at), error, row_id)],
                )
            ]
        )

    async def reschedule(self, row_id: int, next_at: datetime) -> None:
        self._write([("UPDATE outbox SET next_attempt_at=? WHERE id=?", [(_ts(next_at), row_id)])])

    async def backlog(self) -> dict[str, int]:
        rows = self._rows(
            "SELECT notifier, count(*) AS n FROM outbox WHERE status='pending' GROUP BY notifier"
        )
        return {r["notifier"]: r["n"] for r in rows}

    async def held(self, due: datetime | None) -> list[OutboxRow]:
        """Rows held for quiet hours that end by `due` (all for None), oldest first."""
        rows = self._rows(
            "SELECT id, created_at, notifier, destination, events, parts_sent, attempts, "
            "next_attempt_at FROM outbox WHERE status='held' AND hold_until <= ? ORDER BY id",
            (_ts(due) if due else "9999",),
        )
        return [outbox_row(r) for r in rows]

    async def release(
        self, held: Iterable[int], items: Iterable[OutboxItem], now: datetime
    ) -> None:
        """Held rows done (their events go out in `items`, or not at all)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET status=?, done_at=?, last_error='released at the end of "
                "quiet hours' WHERE id=?",
                ((OutboxStatus.SUPERSEDED, _ts(now), i) for i in held),
            )
            enqueue_rows(db, items, now)
