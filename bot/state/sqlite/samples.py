"""Balance history in the state file: one compact row per account and poll.

A sample holds the account's balance, used figure and request count, the
total's *spent* counter, and every limited key's spent counter packed into one
blob, in the order of a *layout* (the key names and when each key's series
began) that rows share until the set of keys changes. Samples are downsampled
with age: full resolution for the last day, the last sample of each UTC hour to
14 days, the last of each UTC day to `history_days` (never an average: the
counters only grow). The SQL here runs inside the Store's connection and
transactions (bot/state/sqlite/store.py).
"""

from __future__ import annotations

import json
import sqlite3
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.state.codec import layout_of
from bot.state.types import Layout, Sample

HOUR, DAY = 3600.0, 86400.0
FULL_FOR = DAY  # samples younger than this keep full resolution
HOURLY_FOR = 14 * DAY  # then one per hour; older: one per day

SCHEMA = """
CREATE TABLE layouts (
    id INTEGER PRIMARY KEY, account TEXT NOT NULL,
    names TEXT NOT NULL,  -- JSON list of key names, the order of the values in samples.keys
    since TEXT NOT NULL   -- JSON list: when each key's series began (seconds since the epoch)
);
CREATE TABLE samples (
    account TEXT NOT NULL, at REAL NOT NULL,
    total REAL NOT NULL, used REAL NOT NULL, requests INTEGER,
    spent REAL NOT NULL,  -- the total's spent counter
    layout INTEGER, keys BLOB,  -- each key's spent counter, float64 in layout order
    PRIMARY KEY (account, at)
) WITHOUT ROWID;
CREATE INDEX samples_by_time ON samples (at);
"""


def write(db: sqlite3.Connection, samples: Iterable[Sample], fresh: list[Layout]) -> None:
    """Insert samples (and their new layouts), in the caller's transaction; the
    layouts given an id are added to `fresh` as they get it (the caller takes the
    ids back if the transaction fails, wherever it fails)."""
    rows = []
    for s in samples:
        layout = s.layout
        if layout is not None and layout.id is None:
            layout.id = db.execute(
                "INSERT INTO layouts (account, names, since) VALUES (?,?,?)",
                (s.account, json.dumps(layout.names), json.dumps(layout.since)),
            ).lastrowid
            fresh.append(layout)
        rows.append(s.row())
    db.executemany(
        "INSERT OR REPLACE INTO samples (account, at, total, used, requests, spent, layout, "
        "keys) VALUES (?,?,?,?,?,?,?,?)",
        rows,
    )


class Reader:
    """Samples read back, their layouts loaded once."""

    def __init__(
        self,
        db: sqlite3.Connection,
        explain: Callable[[sqlite3.DatabaseError], Exception] = lambda exc: exc,
    ) -> None:
        self._db = db
        self._explain = explain  # a damaged file: the error to raise instead
        self._layouts: dict[int, Layout] = {}

    def remember(self, layouts: Iterable[Layout]) -> None:
        """Layouts just written: samples read back share them (and their names)
        with the ledgers that made them, instead of a copy each."""
        remember(self._layouts, layouts)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None

    def _layout(self, layout_id: int | None) -> Layout | None:
        if layout_id is None:
            return None
        if layout_id not in self._layouts:
            rows = self._rows("SELECT account, names, since FROM layouts WHERE id=?", (layout_id,))
            layout = layout_of(rows, layout_id)
            if layout is None:
                return None  # missing or damaged: the sample's keys go unread, nothing else
            remember(self._layouts, [layout])
        return self._layouts[layout_id]

    def _sample(self, row: Sequence) -> Sample:
        layout = self._layout(row[6])
        keys = array("d")
        if layout is not None and isinstance(row[7], bytes):
            try:
                keys.frombytes(row[7])
            except ValueError:  # a damaged blob
                layout = None
            if layout is not None and len(keys) != len(layout.names):
                layout, keys = None, array("d")
        return Sample(row[0], row[1], row[2], row[3], row[4], row[5], layout, keys)

    async def last(self, accounts: Iterable[str]) -> dict[str, Sample]:
        """The newest sample of each account."""
        return await self.newest_before(float("inf"), accounts)

    async def first(self, accounts: Iterable[str]) -> dict[str, Sample]:
        """The oldest sample of each account."""
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM samples s JOIN (SELECT account AS a, min(at) AS m "
            "FROM samples GROUP BY account) t ON s.account = t.a AND s.at = t.m"
        )
        wanted = set(accounts)
        return {r[0]: self._sample(r) for r in rows if r[0] in wanted}

    async def first_time_after(self, at: float) -> float | None:
        """When the first sample of any account after `at` was taken."""
        rows = self._rows("SELECT min(at) FROM samples WHERE at > ?", (at,))
        return rows[0][0] if rows else None

    async def newest_before(
        self, at: float, accounts: Iterable[str] | None = None
    ) -> dict[str, Sample]:
        """The newest sample at or before `at`, by account."""
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM samples s JOIN (SELECT account AS a, max(at) AS m "
            "FROM samples WHERE at <= ? GROUP BY account) t ON s.account = t.a AND s.at = t.m",
            (at,),
        )
        wanted = set(accounts) if accounts is not None else None
        return {r[0]: self._sample(r) for r in rows if wanted is None or r[0] in wanted}

    async def first_after(self, account: str, at: float) -> Sample | None:
        """One account's first sample after `at`."""
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM samples s WHERE account=? AND at > ? ORDER BY at LIMIT 1",
            (account, at),
        )
        return self._sample(rows[0]) if rows else None

    async def between(self, after: float, upto: float) -> list[Sample]:
        """Every account's samples with after < at <= upto, oldest first."""
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM samples s WHERE at > ? AND at <= ? ORDER BY at",
            (after, upto),
        )
        return [self._sample(r) for r in rows]

    async def of(self, account: str, since: float, until: float) -> list[Sample]:
        """One account's samples from `since` to `until`, oldest first, with the
        newest before `since` first as the baseline."""
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM samples s WHERE account=? AND at < ? ORDER BY at DESC LIMIT 1",
            (account, since),
        )
        rows += self._rows(
            f"SELECT {_COLUMNS} FROM samples s WHERE account=? AND at >= ? AND at <= ? ORDER BY at",
            (account, since, until),
        )
        return [self._sample(r) for r in rows]


_COLUMNS = "s.account, s.at, s.total, s.used, s.requests, s.spent, s.layout, s.keys"
MAX_LAYOUTS = 50_000  # layouts a reader keeps; beyond, it reads them again as needed


def remember(known: dict[int, Layout], layouts: Iterable[Layout]) -> None:
    """Layouts into a reader's cache, by id (a bounded one: an upstream whose key
    names change at every poll makes a layout per poll)."""
    for layout in layouts:
        if layout.id is not None:
            if len(known) >= MAX_LAYOUTS:
                known.clear()
            known[layout.id] = layout


@dataclass(slots=True)
class Thinning:
    """Where downsampling left off, so that each pass looks only at rows that
    have aged into the next resolution since the last one."""

    hourly_from: float = 0.0
    daily_from: float = 0.0
    layouts_at: float = 0.0  # when unused layouts were last looked for


# how much of a tier one call looks at: after a start, thinning begins at the
# tier's old end, and one statement over all of it would hold the write lock long
SLICE = {HOUR: 6 * HOUR, DAY: 2 * DAY}


def prune_batch(
    db: sqlite3.Connection,
    now: float,
    history_days: int,
    thinning: Thinning,
    batch: int,
    pause: Callable[[], None] = lambda: None,
) -> int:
    """Delete up to `batch` samples that aged out of their resolution (looking at
    one slice of each tier), and once a day the layouts no sample uses; the
    number deleted (0: nothing left to do)."""
    deleted = _delete(
        db, "SELECT account, at FROM samples WHERE at < ?", (now - history_days * DAY,), batch
    )
    if deleted:
        pause()  # between two statements that wrote: others' writes get the lock
    behind = False
    for bucket, young, old, attr in (
        (HOUR, now - FULL_FOR, now - HOURLY_FOR, "hourly_from"),
        (DAY, now - HOURLY_FOR, now - history_days * DAY, "daily_from"),
    ):
        start = max(old, getattr(thinning, attr) - bucket)
        (oldest,) = db.execute("SELECT min(at) FROM samples WHERE at >= ?", (start,)).fetchone()
        if oldest is None or oldest >= young:  # nothing to look at in this tier yet
            setattr(thinning, attr, young)
            continue
        start = max(start, oldest // bucket * bucket)  # skip the empty slices before it
        end = min(young, start + SLICE[bucket])
        # a sample is thinned out if a later one of its account falls in the same
        # bucket; in the hourly tier an account's first sample stays: /spend 7d
        # begins there, not at the end of the account's first hour
        first = (
            "AND EXISTS (SELECT 1 FROM samples f WHERE f.account = s.account AND f.at < s.at) "
            if bucket == HOUR
            else ""
        )
        gone = _delete(
            db,
            "SELECT s.account, s.at FROM samples s WHERE s.at >= ? AND s.at < ? AND EXISTS "
            "(SELECT 1 FROM samples t WHERE t.account = s.account AND t.at > s.at AND "
            f"t.at < (CAST(s.at / ? AS INTEGER) + 1) * ?) {first}",
            (start, end, bucket, bucket),
            batch,
        )
        if gone:
            pause()
        deleted += gone
        if gone < batch:
            setattr(thinning, attr, end)  # this slice is done
            behind = behind or end < young
    if not deleted and not behind and now - thinning.layouts_at >= DAY:
        db.execute(
            "DELETE FROM layouts WHERE id NOT IN (SELECT DISTINCT layout FROM samples "
            "WHERE layout IS NOT NULL)"
        )
        thinning.layouts_at = now
    return deleted or int(behind)  # slices left to look at count as work to do


def _delete(db: sqlite3.Connection, rows: str, params: tuple[Any, ...], batch: int) -> int:
    """Delete up to `batch` of the samples the SELECT `rows` finds (account, at).
    It is read first: in WAL mode a read takes no lock, and a DELETE that finds
    nothing would still hold the write lock while it looks."""
    if db.execute(f"{rows} LIMIT 1", params).fetchone() is None:
        return 0
    return db.execute(
        f"DELETE FROM samples WHERE (account, at) IN ({rows} LIMIT ?)", (*params, batch)
    ).rowcount


def migrate_history(db: sqlite3.Connection) -> None:
    """Files from before samples existed: each old history row becomes a sample
    of the account's total (the spent counter rebuilt from the used figures);
    the old per-key rows are dropped, so key burn rates gather data afresh."""
    for statement in (s for s in SCHEMA.split(";") if s.strip()):
        db.execute(statement)
    last: dict[str, tuple[float, float]] = {}  # account -> (used, spent)
    rows = db.execute(
        "SELECT account, at, total_quota, total_used_quota, request_count FROM history "
        "ORDER BY account, at"
    )
    batch: list[tuple] = []
    for account, at, total, used, requests in rows:
        prev_used, spent = last.get(account, (used, 0.0))
        spent += max(0.0, used - prev_used)
        last[account] = (used, spent)
        when = _epoch(at)
        batch.append((account, when, total, used, requests, spent))
        if len(batch) >= 10_000:
            _insert_totals(db, batch)
            batch = []
    _insert_totals(db, batch)
    for statement in (
        "DROP INDEX IF EXISTS history_by_account",
        "DROP INDEX IF EXISTS history_by_time",
        "DROP INDEX IF EXISTS key_history_by_key",
        "DROP INDEX IF EXISTS key_history_by_time",
        "DROP TABLE history",
        "DROP TABLE key_history",
    ):
        db.execute(statement)


def _insert_totals(db: sqlite3.Connection, rows: list[tuple]) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO samples (account, at, total, used, requests, spent) "
        "VALUES (?,?,?,?,?,?)",
        rows,
    )


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
