"""Which of the processes sharing a database is active (SPEC 7b): the one that
holds a session-level advisory lock on a connection of its own. Taking the
lock raises the stored epoch, which fences the writes of any process that
held it before (bot/state/postgres/fence.py). The lock is the session's: the
server lets it go when the session ends, so both ends of that connection set
short TCP keepalives, and the holder checks it every CHECK_EVERY seconds and
before each send."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg

from bot.state.postgres.db import connect, explain, migrate, where
from bot.state.postgres.schema import ACTIVE_LOCK

CHECK_EVERY = 2.0  # seconds between two checks of the lock (and tries to take it)
CHECK_TIMEOUT = 2.0  # a check that takes longer means the connection is gone
# the server's end of the lock connection: a peer gone silent ends the session (and
# frees the lock) within about 10 s instead of the system's default two hours
SERVER_KEEPALIVES = (
    "-c tcp_keepalives_idle=4 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=2 "
    "-c tcp_user_timeout=8000"
)


class Lease:
    """The active lock of one process: `acquire()` tries to take it, `holding()`
    says whether it still has it (a round trip on its connection)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = where(url)
        self.epoch: int | None = None  # while held
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._using = asyncio.Lock()  # one statement at a time on the connection

    async def acquire(self) -> bool:
        """Take the lock if nobody holds it: True, with a new epoch. Raises
        StoreError when the database cannot be reached (or its schema is newer)."""
        if self.epoch is not None:
            return await self.holding()
        async with self._using:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await connect(self.url, options=SERVER_KEEPALIVES)
                    await migrate(self._conn, self.where)  # the epoch's table must be there
                conn = self._conn
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (ACTIVE_LOCK,))
                row = await cursor.fetchone()
                if not row or not row[0]:
                    return False
                cursor = await conn.execute(
                    "UPDATE leader SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch"
                )
                row = await cursor.fetchone()
                self.epoch = int(row[0]) if row else None
                return self.epoch is not None
            except psycopg.Error as exc:
                self._drop()
                raise explain(self.url, exc) from None

    async def holding(self) -> bool:
        """Whether this process still holds the lock: its connection answers
        within CHECK_TIMEOUT. A failed check lets the lock go for good."""
        conn = self._conn
        if self.epoch is None or conn is None or conn.closed:
            self._drop()
            return False
        try:
            async with asyncio.timeout(CHECK_TIMEOUT), self._using:
                await conn.execute("SELECT 1")
            return True
        except (psycopg.Error, TimeoutError):
            self._drop()
            return False

    async def release(self) -> None:
        """Let the lock go (at a clean stop: a standby takes over at once)."""
        conn, held = self._conn, self.epoch is not None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error, TimeoutError):
                async with asyncio.timeout(CHECK_TIMEOUT), self._using:
                    if held:
                        await conn.execute("SELECT pg_advisory_unlock(%s)", (ACTIVE_LOCK,))
                    await conn.close()
        self._drop()

    def _drop(self) -> None:
        """Forget the connection at once, without waiting on a dead peer."""
        self.epoch = None
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(Exception):
                conn.pgconn.finish()
