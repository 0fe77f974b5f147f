"""Fencing: the writes that must come from the active process only (a cycle's
commit, what it enqueues, a "delivered" mark) check, in their own transaction,
that the epoch stored in the database is still the one this process took over
with; a newer one means another process is active, and the write is refused."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from bot.state.postgres.db import Db
from bot.state.types import FencedError


class Fenced(Db):
    epoch: int | None = None  # this process's, while it is active (None: no fencing)

    @contextlib.asynccontextmanager
    async def _fenced(self, check: bool = True) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A transaction that goes through only while this process's epoch is the
        stored one (`check` False: any process may do this write)."""
        async with self._transaction() as conn:
            if check and self.epoch is not None:
                # FOR SHARE: a takeover's UPDATE of the epoch waits for this transaction
                cursor = await conn.execute("SELECT epoch FROM leader WHERE id=1 FOR SHARE")
                row = await cursor.fetchone()
                if row is None or row[0] != self.epoch:
                    raise FencedError(
                        f"database {self.where}: another balance-bot process took over "
                        f"(epoch {row[0] if row else '?'}, this one had {self.epoch}); "
                        "this one stands by"
                    )
            yield conn
