"""The state the bot keeps across restarts: the StateStore protocol, and its
SQLite implementation (alert instances, account health, last good snapshots,
balance history and the outbox). Schema versioned with PRAGMA user_version.

One process owns a state file at a time (an exclusive flock), so two bots on
one file can never both send the same alert.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from bot.model import AccountHealth, AlertKey, AlertState, EngineState, Event, Snapshot

HISTORY_DAYS = 90
OUTBOX_KEEP_DAYS = 30

# Each entry migrates from version i to i + 1. Never edit a released entry:
# append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE alerts (
        rule TEXT NOT NULL, account TEXT NOT NULL, subject TEXT NOT NULL,
        firing INTEGER NOT NULL, polls_below INTEGER NOT NULL, value REAL NOT NULL,
        fired_at TEXT, notified_at TEXT,
        PRIMARY KEY (rule, account, subject)
    );
    CREATE TABLE health (
        account TEXT PRIMARY KEY, failures INTEGER NOT NULL, failing_since TEXT,
        unavailable INTEGER NOT NULL, last_error TEXT NOT NULL, last_success TEXT
    );
    CREATE TABLE snapshots (account TEXT PRIMARY KEY, fetched_at TEXT NOT NULL, data TEXT NOT NULL);
    CREATE TABLE history (
        account TEXT NOT NULL, at TEXT NOT NULL, total_quota REAL NOT NULL,
        total_used_quota REAL NOT NULL, request_count INTEGER
    );
    CREATE INDEX history_by_account ON history (account, at);
    -- one row per key whose numbers changed since the account's previous poll
    CREATE TABLE key_history (
        account TEXT NOT NULL, at TEXT NOT NULL, key TEXT NOT NULL,
        remain_quota REAL NOT NULL, used_quota REAL NOT NULL
    );
    CREATE INDEX key_history_by_key ON key_history (account, key, at);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        notifier TEXT NOT NULL,
        destination TEXT NOT NULL,
        events TEXT NOT NULL,
        parts_sent INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed | dropped
        last_error TEXT NOT NULL DEFAULT '',
        done_at TEXT
    );
    CREATE INDEX outbox_pending ON outbox (status, notifier, destination, id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The state file cannot be used. The message names the file and the remedy."""


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # failed for good; not retried
    DROPPED = "dropped"  # its notifier or destination is no longer configured
    SUPERSEDED = "superseded"  # only reminders that later rows made stale


PAYLOAD_VERSION = 1  # of the outbox's `events` column: {"v": 1, "events": [...]}


@dataclass(frozen=True, slots=True)
class OutboxItem:
    notifier: str
    destination: str
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    created_at: datetime
    notifier: str
    destination: str
    events: tuple[Event, ...]
    parts_sent: int
    attempts: int
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class Commit:
    """What one cycle leaves to persist."""

    old: EngineState  # the state the cycle started from
    new: EngineState
    snapshots: Sequence[Snapshot]  # this cycle's good polls
    previous: Mapping[str, Snapshot]  # the last good poll of each account before them
    outbox: Sequence[OutboxItem]
    now: datetime


class StateStore(Protocol):
    """What the rest of the program needs from the state file."""

    def load_state(self, accounts: Iterable[str]) -> EngineState: ...

    def load_snapshots(self) -> dict[str, Snapshot]: ...

    def commit_cycle(self, commit: Commit) -> None:
        """Persist one cycle atomically: either all of it or nothing."""
        ...

    def pending(self, queue: tuple[str, str] | None = None) -> list[OutboxRow]: ...

    def mark_sent_parts(self, row_id: int, parts_sent: int) -> None: ...

    def mark_done(
        self, row_id: int, status: OutboxStatus, now: datetime, error: str = ""
    ) -> None: ...

    def mark_retry(self, row_id: int, attempts: int, next_at: datetime, error: str) -> None: ...

    def backlog(self) -> dict[str, int]: ...

    def prune(self, now: datetime) -> None: ...

    def close(self) -> None: ...


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd = -1
        self._db: sqlite3.Connection | None = None

    @classmethod
    def open(cls, path: Path) -> Store:
        store = cls(path)
        try:
            store._open()
        except BaseException:
            store.close()
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
        except sqlite3.DatabaseError as exc:
            raise _explain(path, exc) from None

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
                for statement in _statements(MIGRATIONS[target]):
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

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            finally:
                self._db = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        """A query whose rows are read by column name."""
        cursor = self._conn.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, tuple(params))

    def _write(self, work: Iterable[tuple[str, Iterable[tuple]]]) -> None:
        """Run statements in one transaction; translate SQLite errors."""
        db = self._conn
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in work:
                    db.executemany(sql, rows)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise _explain(self.path, exc) from None

    # --- engine state ------------------------------------------------------

    def load_state(self, accounts: Iterable[str]) -> EngineState:
        """State of the configured accounts; others' rows are ignored."""
        wanted = set(accounts)
        alerts: dict[AlertKey, AlertState] = {}
        for row in self._rows(
            "SELECT rule, account, subject, firing, polls_below, value, fired_at, notified_at "
            "FROM alerts"
        ):
            key = AlertKey(row["rule"], row["account"], row["subject"])
            if key.account in wanted:
                alerts[key] = AlertState(
                    key,
                    firing=bool(row["firing"]),
                    polls_below=row["polls_below"],
                    value=row["value"],
                    fired_at=_dt(row["fired_at"]),
                    notified_at=_dt(row["notified_at"]),
                )
        health: dict[str, AccountHealth] = {}
        for row in self._rows(
            "SELECT account, failures, failing_since, unavailable, last_error, last_success "
            "FROM health"
        ):
            if row["account"] in wanted:
                health[row["account"]] = AccountHealth(
                    row["account"],
                    failures=row["failures"],
                    failing_since=_dt(row["failing_since"]),
                    unavailable=bool(row["unavailable"]),
                    last_error=row["last_error"],
                    last_success=_dt(row["last_success"]),
                )
        return EngineState(alerts, health)

    def load_snapshots(self) -> dict[str, Snapshot]:
        return {
            row["account"]: Snapshot.from_dict(json.loads(row["data"]))
            for row in self._rows("SELECT account, data FROM snapshots")
        }

    def commit_cycle(self, commit: Commit) -> None:
        old, new, now = commit.old, commit.new, commit.now
        snapshots, previous, outbox = commit.snapshots, commit.previous, commit.outbox
        gone = [k for k in old.alerts if k not in new.alerts]
        changed = [s for k, s in new.alerts.items() if old.alerts.get(k) != s]
        health = [h for a, h in new.health.items() if old.health.get(a) != h]
        self._write(
            [
                ("DELETE FROM alerts WHERE rule=? AND account=? AND subject=?", gone),
                (
                    "INSERT OR REPLACE INTO alerts (rule, account, subject, firing, polls_below, "
                    "value, fired_at, notified_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        (
                            *s.key,
                            int(s.firing),
                            s.polls_below,
                            s.value,
                            _ts(s.fired_at),
                            _ts(s.notified_at),
                        )
                        for s in changed
                    ),
                ),
                (
                    "INSERT OR REPLACE INTO health (account, failures, failing_since, "
                    "unavailable, last_error, last_success) VALUES (?,?,?,?,?,?)",
                    (
                        (
                            h.account,
                            h.failures,
                            _ts(h.failing_since),
                            int(h.unavailable),
                            h.last_error,
                            _ts(h.last_success),
                        )
                        for h in health
                    ),
                ),
                (
                    "INSERT OR REPLACE INTO snapshots (account, fetched_at, data) VALUES (?,?,?)",
                    ((s.account, _ts(s.fetched_at), json.dumps(s.to_dict())) for s in snapshots),
                ),
                (
                    "INSERT INTO history (account, at, total_quota, total_used_quota, "
                    "request_count) VALUES (?,?,?,?,?)",
                    (
                        (
                            s.account,
                            _ts(s.fetched_at),
                            s.total_quota,
                            s.total_used_quota,
                            s.request_count,
                        )
                        for s in snapshots
                    ),
                ),
                (
                    "INSERT INTO key_history (account, at, key, remain_quota, used_quota) "
                    "VALUES (?,?,?,?,?)",
                    _key_changes(snapshots, previous),
                ),
                (
                    "INSERT INTO outbox (created_at, notifier, destination, events, "
                    "next_attempt_at) VALUES (?,?,?,?,?)",
                    (
                        (
                            _ts(now),
                            i.notifier,
                            i.destination,
                            encode_events(i.events),
                            _ts(now),
                        )
                        for i in outbox
                    ),
                ),
            ]
        )

    # --- outbox ------------------------------------------------------------

    def pending(self, queue: tuple[str, str] | None = None) -> list[OutboxRow]:
        """Undelivered rows in order; only those for (notifier, destination) if given."""
        sql = (
            "SELECT id, created_at, notifier, destination, events, parts_sent, attempts, "
            "next_attempt_at FROM outbox WHERE status='pending'"
        )
        if queue is None:
            rows = self._rows(sql + " ORDER BY id")
        else:
            rows = self._rows(sql + " AND notifier=? AND destination=? ORDER BY id", queue)
        return [
            OutboxRow(
                id=r["id"],
                created_at=datetime.fromisoformat(r["created_at"]),
                notifier=r["notifier"],
                destination=r["destination"],
                events=decode_events(r["events"]),
                parts_sent=r["parts_sent"],
                attempts=r["attempts"],
                next_attempt_at=datetime.fromisoformat(r["next_attempt_at"]),
            )
            for r in rows
        ]

    def mark_sent_parts(self, row_id: int, parts_sent: int) -> None:
        self._write([("UPDATE outbox SET parts_sent=? WHERE id=?", [(parts_sent, row_id)])])

    def mark_done(self, row_id: int, status: OutboxStatus, now: datetime, error: str = "") -> None:
        self._write(
            [
                (
                    "UPDATE outbox SET status=?, done_at=?, last_error=? WHERE id=?",
                    [(status, _ts(now), error, row_id)],
                )
            ]
        )

    def mark_retry(self, row_id: int, attempts: int, next_at: datetime, error: str) -> None:
        self._write(
            [
                (
                    "UPDATE outbox SET attempts=?, next_attempt_at=?, last_error=? WHERE id=?",
                    [(attempts, _ts(next_at), error, row_id)],
                )
            ]
        )

    def backlog(self) -> dict[str, int]:
        rows = self._rows(
            "SELECT notifier, count(*) AS n FROM outbox WHERE status='pending' GROUP BY notifier"
        )
        return {r["notifier"]: r["n"] for r in rows}

    def prune(self, now: datetime) -> None:
        history_cut = _ts(now - timedelta(days=HISTORY_DAYS))
        outbox_cut = _ts(now - timedelta(days=OUTBOX_KEEP_DAYS))
        self._write(
            [
                ("DELETE FROM history WHERE at < ?", [(history_cut,)]),
                ("DELETE FROM key_history WHERE at < ?", [(history_cut,)]),
                (
                    "DELETE FROM outbox WHERE status != ? AND done_at < ?",
                    [(OutboxStatus.PENDING, outbox_cut)],
                ),
            ]
        )


def encode_events(events: Iterable[Event]) -> str:
    return json.dumps({"v": PAYLOAD_VERSION, "events": [e.to_dict() for e in events]})


def decode_events(text: str) -> tuple[Event, ...]:
    """An outbox payload; the first release stored a bare list of events.
    Raises model.EventFormatError for a payload this version cannot read."""
    data: Any = json.loads(text)
    if isinstance(data, dict):
        data = data.get("events", [])
    return tuple(Event.from_dict(e) for e in data)


def _statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _key_changes(
    snapshots: Sequence[Snapshot], previous: Mapping[str, Snapshot]
) -> Iterable[tuple]:
    for snap in snapshots:
        before = previous.get(snap.account)
        old = {k.name: (k.remain_quota, k.used_quota) for k in before.keys} if before else {}
        at = _ts(snap.fetched_at)
        for key in snap.keys:
            if old.get(key.name) != (key.remain_quota, key.used_quota):
                yield (snap.account, at, key.name, key.remain_quota, key.used_quota)


def _explain(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
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
