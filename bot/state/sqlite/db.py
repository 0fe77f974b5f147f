"""The SQLite state file itself: the exclusive lock that makes one process its
owner, the connections (one for the event loop, one for pruning in a worker
thread), migrations on open, transactions, and what SQLite errors mean to a user."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self

from bot.state.codec import dt, ts
from bot.state.sqlite import samples
from bot.state.sqlite.schema import MIGRATIONS, SCHEMA_VERSION, statements
from bot.state.types import OUTBOX_KEEP_DAYS, StoreError, StoreReplacedError

Rows = tuple[str, list[str], list[Any]]  # a table, its columns, some of its rows
PRUNE_BATCH = 1000  # rows per prune statement: the loop's writes never wait long for it
PRUNE_PAUSE = 0.1  # seconds between two of them: longer than SQLite's longest busy wait


_ts, _dt = ts, dt  # times as every backend stores them


class Db:
    """The state file: its lock, its connections and their transactions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd = -1
        self._db: sqlite3.Connection | None = None
        self._pruner: sqlite3.Connection | None = None  # prune() runs in a worker thread
        self._pruning = threading.Lock()  # close() waits for a batch under way
        self._thinning = samples.Thinning()
        self._reader: samples.Reader | None = None

    @classmethod
    def open(cls, path: Path) -> Self:
        store = cls(path)
        try:
            store._open()
        except BaseException:
            store._close()
            raise
        return store

    def _open(self) -> None:
        path = self.path
        if path.parent and not path.parent.exists():
            raise StoreError(f"state file {path}: directory {path.parent} does not exist")
        try:
            self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot open state file {path}: {exc.strerror}; check that the file and "
                "its directory are writable by this user"
            ) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"state file {path} is in use by another balance-bot process; run one "
                "instance per state file (stop the other one, or give this one its own "
                "state_path)"
            ) from None
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
            self._pruner = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._pruner.execute("PRAGMA busy_timeout=5000")
        except sqlite3.DatabaseError as exc:
            raise explain(path, exc) from None

    def _migrate(self) -> None:
        db = self._conn
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"state file {self.path} was written by a newer balance-bot (schema "
                f"{version}, this version knows {SCHEMA_VERSION}); upgrade balance-bot, or "
                "point state_path at another file"
            )
        if version == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreError(
                f"state file {self.path} is an SQLite database but not balance-bot's; "
                "point state_path at another file"
            )
        for target in range(version, SCHEMA_VERSION):
            db.execute("BEGIN IMMEDIATE")
            try:
                step = MIGRATIONS[target]
                if callable(step):
                    step(db)
                else:
                    for statement in statements(step):
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target + 1}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"state file {self.path} is closed")
        return self._db

    async def close(self) -> None:
        with self._pruning:  # a prune batch is short: waiting for it does not stall the loop
            self._close()

    def _close(self) -> None:
        for name in ("_pruner", "_db"):
            db = getattr(self, name)
            if db is not None:
                setattr(self, name, None)
                with contextlib.suppress(sqlite3.Error):
                    db.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """A query's rows, read by column name; SQLite errors explained."""
        try:
            cursor = self._conn.cursor()
            cursor.row_factory = sqlite3.Row
            return cursor.execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise explain(self.path, exc) from None

    async def check_file(self) -> None:
        try:
            held, there = os.fstat(self._lock_fd), os.stat(self.path)
            same = (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)
        except OSError:
            same = False
        if not same:
            raise StoreReplacedError(
                f"state file {self.path} was deleted or replaced while balance-bot was "
                "running; stopping so that no second process alerts from another file "
                "(restore the file, then start balance-bot again)"
            )

    def _write(self, work: Iterable[tuple[str, Iterable[tuple]]]) -> None:
        """Run statements in one transaction."""
        with self._transaction() as db:
            for sql, rows in work:
                db.executemany(sql, rows)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """All of it or nothing; SQLite errors explained."""
        db = self._conn
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise explain(self.path, exc) from None

    async def prune(self, now: datetime, history_days: int = 90) -> int:
        """Delete up to PRUNE_BATCH expired or downsampled rows per kind, on a
        connection of its own, in a worker thread while the loop goes on."""
        return await asyncio.to_thread(self._prune_locked, now, history_days)

    def _prune_locked(self, now: datetime, history_days: int) -> int:
        with self._pruning:
            return self._prune(now, history_days)

    def _prune(self, now: datetime, history_days: int) -> int:
        db = self._pruner
        if db is None:
            raise StoreError(f"state file {self.path} is closed")
        outbox_cut = _ts(now - timedelta(days=OUTBOX_KEEP_DAYS))
        try:
            deleted = samples.prune_batch(  # pausing this thread: the loop's writes go between
                db, now.timestamp(), history_days, self._thinning, PRUNE_BATCH, _prune_pause
            )
            deleted += db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE done_at < ? "
                "AND status != 'pending' LIMIT ?)",
                (outbox_cut, PRUNE_BATCH),
            ).rowcount
            # messages whose alerts have all ended no longer change
            deleted += db.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages m WHERE created_at "
                "< ? AND NOT EXISTS (SELECT 1 FROM message_alerts a WHERE a.message_id = m.id "
                "AND a.resolved_at IS NULL) LIMIT ?)",
                (outbox_cut, PRUNE_BATCH),
            ).rowcount
            db.execute(
                "DELETE FROM message_alerts WHERE message_id NOT IN (SELECT id FROM messages)"
            )
            deleted += db.execute("DELETE FROM silences WHERE until < ?", (outbox_cut,)).rowcount
        except sqlite3.DatabaseError as exc:
            raise explain(self.path, exc) from None
        return deleted

    def export(self, tables: Iterable[str], batch: int = 5000) -> Iterator[Rows]:
        """Every row of `tables`, a batch at a time, with its column names (to copy
        the state elsewhere: `balance-bot state import`)."""
        for table in tables:
            try:
                cursor = self._conn.execute(f"SELECT * FROM {table}")
                columns = [d[0] for d in cursor.description]
                while rows := cursor.fetchmany(batch):
                    yield table, columns, rows
            except sqlite3.DatabaseError as exc:
                raise explain(self.path, exc) from None

    @property
    def history(self) -> samples.Reader:
        """Samples read back (on the event loop's connection)."""
        if self._reader is None:
            self._reader = samples.Reader(self._conn, lambda exc: explain(self.path, exc))
        return self._reader


def explain(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    text = str(exc)
    if "full" in text:
        remedy = "the disk is full; free space on the volume that holds it"
    elif "readonly" in text or "unable to open" in text or "permission" in text.lower():
        remedy = "check that the file and its directory are writable by this user"
    elif "not a database" in text or "malformed" in text:
        remedy = (
            "the file is corrupt or not an SQLite database; restore it from a backup, or "
            "move it away to start afresh (firing alerts will then be sent again)"
        )
    else:
        remedy = "see the SQLite error above"
    return StoreError(f"state file {path}: {text}: {remedy}")


def _prune_pause() -> None:
    time.sleep(PRUNE_PAUSE)
