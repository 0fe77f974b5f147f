"""The PostgreSQL StateStore: alerts, outbox, marks and history on a pool of
connections; pruning a batch at a time, awaited (it never blocks the loop)."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from bot.state.codec import ts as _ts
from bot.state.postgres import samples
from bot.state.postgres.alerts import Alerts
from bot.state.postgres.db import explain
from bot.state.postgres.marks import Marks
from bot.state.postgres.outbox import Outbox
from bot.state.sqlite.samples import Thinning
from bot.state.types import OUTBOX_KEEP_DAYS

PRUNE_BATCH = 5000  # rows per statement: MVCC lets the cycle's writes go on meanwhile


class Store(Alerts, Outbox, Marks):
    """alerts, outbox, marks (snoozes, acks, sent messages, meta) and history."""

    _thinning: Thinning | None = None
    _reader: samples.Reader | None = None

    @property
    def history(self) -> samples.Reader:
        if self._reader is None:
            self._reader = samples.Reader(self._rows)
        return self._reader

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
