"""Balance history in PostgreSQL: the rows and the downsampling of
bot/state/sqlite/samples.py (same layouts, same tiers), read and pruned with
async statements, so neither ever holds up the event loop."""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import psycopg

from bot.state.codec import layout_of
from bot.state.sqlite.samples import DAY, FULL_FOR, HOUR, HOURLY_FOR, SLICE, Thinning, remember
from bot.state.types import Layout, Sample

Rows = Callable[[str, Sequence[Any]], Coroutine[Any, Any, list[tuple[Any, ...]]]]
_COLUMNS = "s.account, s.at, s.total, s.used, s.requests, s.spent, s.layout, s.keys"


async def write(
    conn: psycopg.AsyncConnection[Any], samples: Iterable[Sample], fresh: list[Layout]
) -> None:
    """Insert samples (and their new layouts), in the caller's transaction; the
    layouts given an id are added to `fresh` as they get it (the caller takes the
    ids back if the transaction fails, wherever it fails)."""
    rows = []
    for s in samples:
        layout = s.layout
        if layout is not None and layout.id is None:
            cursor = await conn.execute(
                "INSERT INTO layouts (account, names, since) VALUES (%s,%s,%s) RETURNING id",
                (s.account, json.dumps(layout.names), json.dumps(layout.since)),
            )
            (layout.id,) = await cursor.fetchone() or (None,)
            fresh.append(layout)
        rows.append(s.row())
    if rows:
        async with conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO samples (account, at, total, used, requests, spent, layout, keys) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (account, at) DO UPDATE SET "
                "total=EXCLUDED.total, used=EXCLUDED.used, requests=EXCLUDED.requests, "
                "spent=EXCLUDED.spent, layout=EXCLUDED.layout, keys=EXCLUDED.keys",
                rows,
            )


class Reader:
    """Samples read back, their layouts loaded once."""

    def __init__(self, rows: Rows) -> None:
        self._rows = rows
        self._layouts: dict[int, Layout] = {}

    def remember(self, layouts: Iterable[Layout]) -> None:
        """As in SQLite: layouts just written, shared with what is read back."""
        remember(self._layouts, layouts)

    async def _layout(self, layout_id: int | None) -> Layout | None:
        if layout_id is None:
            return None
        if layout_id not in self._layouts:
            rows = await self._rows(
                "SELECT account, names, since FROM layouts WHERE id=%s", (layout_id,)
            )
            layout = layout_of(rows, layout_id)
            if layout is None:
                return None  # missing or damaged: the sample's keys go unread, nothing else
            remember(self._layouts, [layout])
        return self._layouts[layout_id]

    async def _samples(self, sql: str, params: Sequence[Any] = ()) -> list[Sample]:
        out = []
        for row in await self._rows(sql, params):
            layout = await self._layout(row[6])
            keys = array("d")
            if layout is not None and row[7] is not None:
                try:
                    keys.frombytes(bytes(row[7]))
                except ValueError:  # a damaged blob
                    layout = None
                if layout is not None and len(keys) != len(layout.names):
                    layout, keys = None, array("d")
            out.append(Sample(row[0], row[1], row[2], row[3], row[4], row[5], layout, keys))
        return out

    async def last(self, accounts: Iterable[str]) -> dict[str, Sample]:
        return await self.newest_before(float("inf"), accounts)

    async def first(self, accounts: Iterable[str]) -> dict[str, Sample]:
        found = await self._samples(
            f"SELECT DISTINCT ON (account) {_COLUMNS} FROM samples s ORDER BY account, at"
        )
        wanted = set(accounts)
        return {s.account: s for s in found if s.account in wanted}

    async def first_time_after(self, at: float) -> float | None:
        rows = await self._rows("SELECT min(at) FROM samples WHERE at > %s", (at,))
        return rows[0][0] if rows else None

    async def newest_before(
        self, at: float, accounts: Iterable[str] | None = None
    ) -> dict[str, Sample]:
        found = await self._samples(
            f"SELECT DISTINCT ON (account) {_COLUMNS} FROM samples s WHERE at <= %s "
            "ORDER BY account, at DESC",
            (at,),
        )
        wanted = set(accounts) if accounts is not None else None
        return {s.account: s for s in found if wanted is None or s.account in wanted}

    async def first_after(self, account: str, at: float) -> Sample | None:
        found = await self._samples(
            f"SELECT {_COLUMNS} FROM samples s WHERE account=%s AND at > %s ORDER BY at LIMIT 1",
            (account, at),
        )
        return found[0] if found else None

    async def between(self, after: float, upto: float) -> list[Sample]:
        return await self._samples(
            f"SELECT {_COLUMNS} FROM samples s WHERE at > %s AND at <= %s ORDER BY at, account",
            (after, upto),
        )

    async def of(self, account: str, since: float, until: float) -> list[Sample]:
        before = await self._samples(
            f"SELECT {_COLUMNS} FROM samples s WHERE account=%s AND at < %s "
            "ORDER BY at DESC LIMIT 1",
            (account, since),
        )
        return before + await self._samples(
            f"SELECT {_COLUMNS} FROM samples s WHERE account=%s AND at >= %s AND at <= %s "
            "ORDER BY at",
            (account, since, until),
        )


async def prune_batch(
    conn: psycopg.AsyncConnection[Any],
    now: float,
    history_days: int,
    thinning: Thinning,
    batch: int,
) -> int:
    """As bot/state/sqlite/samples.prune_batch: up to `batch` samples that aged out
    of their resolution (one slice of each tier), and once a day the layouts no
    sample uses; the number deleted (0: nothing left to do)."""
    deleted = await _delete(
        conn, "SELECT account, at FROM samples WHERE at < %s", (now - history_days * DAY,), batch
    )
    behind = False
    for bucket, young, old, attr in (
        (HOUR, now - FULL_FOR, now - HOURLY_FOR, "hourly_from"),
        (DAY, now - HOURLY_FOR, now - history_days * DAY, "daily_from"),
    ):
        start = max(old, getattr(thinning, attr) - bucket)
        cursor = await conn.execute("SELECT min(at) FROM samples WHERE at >= %s", (start,))
        (oldest,) = await cursor.fetchone() or (None,)
        if oldest is None or oldest >= young:
            setattr(thinning, attr, young)
            continue
        start = max(start, oldest // bucket * bucket)
        end = min(young, start + SLICE[bucket])
        first = (
            "AND EXISTS (SELECT 1 FROM samples f WHERE f.account = s.account AND f.at < s.at) "
            if bucket == HOUR
            else ""
        )
        gone = await _delete(
            conn,
            "SELECT s.account, s.at FROM samples s WHERE s.at >= %s AND s.at < %s AND EXISTS "
            "(SELECT 1 FROM samples t WHERE t.account = s.account AND t.at > s.at AND "
            f"t.at < (floor(s.at / %s) + 1) * %s) {first}",
            (start, end, bucket, bucket),
            batch,
        )
        deleted += gone
        if gone < batch:
            setattr(thinning, attr, end)
            behind = behind or end < young
    if not deleted and not behind and now - thinning.layouts_at >= DAY:
        await conn.execute(
            "DELETE FROM layouts WHERE id NOT IN (SELECT DISTINCT layout FROM samples "
            "WHERE layout IS NOT NULL)"
        )
        thinning.layouts_at = now
    return deleted or int(behind)


async def _delete(
    conn: psycopg.AsyncConnection[Any], rows: str, params: tuple[Any, ...], batch: int
) -> int:
    cursor = await conn.execute(
        f"DELETE FROM samples WHERE (account, at) IN ({rows} LIMIT %s)", (*params, batch)
    )
    return cursor.rowcount
