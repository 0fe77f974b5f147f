"""The PostgreSQL StateStore: alerts, outbox, marks and history on a pool of
connections; pruning a batch at a time, awaited (it never blocks the loop)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import psycopg

from bot.state.codec import ts as _ts
from bot.state.postgres import samples
from bot.state.postgres.alerts import Alerts
from bot.state.postgres.db import explain
from bot.state.postgres.marks import Marks
from bot.state.postgres.outbox import Outbox
from bot.state.sqlite.samples import Thinning
from bot.state.types import OUTBOX_KEEP_DAYS, StoreError

# what `load` copies, in order, and how: the tables, their boolean columns (SQLite has
# integers), and those whose ids come from a sequence (set past the copied ones)
TABLES = (
    "alerts",
    "health",
    "snapshots",
    "layouts",
    "samples",
    "outbox",
    "told",
    "meta",
    "silences",
    "acks",
    "messages",
    "message_alerts",
)
BOOLEANS = {
    ("alerts", "firing"),
    ("alerts", "announced"),
    ("alerts", "held"),
    ("health", "unavailable"),
}
SERIAL = ("layouts", "outbox", "silences", "messages")
PRUNE_BATCH = 5000  # rows per statement: MVCC lets the cycle's writes go on meanwhile


class Store(Alerts, Outbox, Marks):
    """alerts, outbox, marks (snoozes, acks, sent messages, meta) and history."""

    _thinning: Thinning | None = None

    async def check_file(self) -> None:
        """Nothing to look at: a takeover shows as a newer epoch (the fenced writes)."""

    async def prune(self, now: datetime, history_days: int = 90) -> int:
        if self._thinning is None:
            self._thinning = Thinning()
        cut = _ts(now - timedelta(days=OUTBOX_KEEP_DAYS))
        try:
            async with self.pool.connection() as conn:
                deleted = await samples.prune_batch(
                    conn, now.timestamp(), history_days, self._thinning, PRUNE_BATCH
                )
                for sql in (
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE done_at < %s "
                    "AND status != 'pending' AND status != 'held' LIMIT %s)",
                    "DELETE FROM messages WHERE id IN (SELECT id FROM messages m WHERE "
                    "created_at < %s AND NOT EXISTS (SELECT 1 FROM message_alerts a WHERE "
                    "a.message_id = m.id AND a.resolved_at IS NULL) LIMIT %s)",
                ):
                    cursor = await conn.execute(sql, (cut, PRUNE_BATCH))
                    deleted += cursor.rowcount
                await conn.execute(
                    "DELETE FROM message_alerts a WHERE NOT EXISTS "
                    "(SELECT 1 FROM messages m WHERE m.id = a.message_id)"
                )
                cursor = await conn.execute('DELETE FROM silences WHERE "until" < %s', (cut,))
                deleted += cursor.rowcount
        except psycopg.Error as exc:
            raise explain(self.url, exc) from None
        return deleted

    async def load(self, batches: Iterable[tuple[str, list[str], list[Any]]]) -> dict[str, int]:
        """Rows of another state (`state import`), into this database while it
        holds no balance-bot data, all or nothing; the rows copied per table."""
        counts: dict[str, int] = {}
        async with self._transaction() as conn:
            for table in TABLES:
                cursor = await conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
                row = await cursor.fetchone()
                if row and row[0]:
                    raise StoreError(
                        f"database {self.where} already holds balance-bot data (table "
                        f"{table}); state import copies into an empty database only"
                    )
            for table, columns, rows in batches:
                flags = [i for i, c in enumerate(columns) if (table, c) in BOOLEANS]
                names = ", ".join(f'"{c}"' for c in columns)
                async with conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for values in rows:
                        if flags:
                            values = list(values)
                            for i in flags:
                                values[i] = bool(values[i])
                        await copy.write_row(values)
                counts[table] = counts.get(table, 0) + len(rows)
            for table in SERIAL:
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                )
        return counts
