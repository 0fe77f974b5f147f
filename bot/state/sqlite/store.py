"""The state the bot keeps across restarts: the StateStore protocol, and its
SQLite implementation (alert instances, account health, last good snapshots,
balance history and the outbox). Schema versioned with PRAGMA user_version.

One process owns a state file at a time (an exclusive flock), so two bots on
one file can never both send the same alert.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import msgspec

from bot.engine.model import (
    AccountHealth,
    Ack,
    AlertKey,
    AlertState,
    EngineState,
    Event,
    EventFormatError,
    EventKind,
    MessageKind,
    Silence,
    Snapshot,
)
from bot.notifiers.message import Message
from bot.state.sqlite import samples
from bot.state.sqlite.samples import Sample

OUTBOX_KEEP_DAYS = 30
LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)

# Each entry migrates from version i to i + 1: SQL, or a function run in the
# same transaction. Never edit a released entry: append a new one.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
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
    """
    -- the rule's target and kind an alert was set under ('' in older files)
    ALTER TABLE alerts ADD COLUMN shape TEXT NOT NULL DEFAULT '';
    -- which destinations were sent (or have queued) an alert's fire or a reminder;
    -- rule = subject = '' for an account's "data unavailable"
    CREATE TABLE told (
        rule TEXT NOT NULL, account TEXT NOT NULL, subject TEXT NOT NULL,
        notifier TEXT NOT NULL, destination TEXT NOT NULL, outbox_id INTEGER NOT NULL,
        PRIMARY KEY (rule, account, subject, notifier, destination)
    );
    CREATE INDEX told_by_row ON told (outbox_id);
    -- pruning deletes by time, in batches
    CREATE INDEX history_by_time ON history (at);
    CREATE INDEX key_history_by_time ON key_history (at);
    CREATE INDEX outbox_by_done ON outbox (done_at);
    """,
    lambda db: _seed_told(db),
    """
    -- small facts the bot keeps: the date of the last scheduled digest
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # per-account samples replace the per-key history rows (bot/state/sqlite/samples.py)
    lambda db: samples.migrate_history(db),
    """
    -- the engine's memory of who heard of a firing alert
    ALTER TABLE alerts ADD COLUMN announced INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE alerts ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
    -- snoozes: by pattern (a glob) or exactly some alerts (a button); who set them
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY, pattern TEXT NOT NULL, alerts TEXT NOT NULL,
        until TEXT NOT NULL, who TEXT NOT NULL, created_at TEXT NOT NULL
    );
    CREATE TABLE acks (
        rule TEXT NOT NULL, account TEXT NOT NULL, subject TEXT NOT NULL,
        who TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (rule, account, subject)
    );
    -- each message sent with buttons: the platform's id for it (to edit it), what
    -- it said (a payload as in outbox.events) and the alerts whose fire or reminder
    -- it carried (its buttons act on them; resolved_at once they resolve)
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY, notifier TEXT NOT NULL, destination TEXT NOT NULL,
        outbox_id INTEGER NOT NULL, part INTEGER NOT NULL, platform_id TEXT NOT NULL,
        events TEXT NOT NULL, created_at TEXT NOT NULL
    );
    CREATE INDEX messages_by_row ON messages (outbox_id, part);
    CREATE TABLE message_alerts (
        message_id INTEGER NOT NULL, rule TEXT NOT NULL, account TEXT NOT NULL,
        subject TEXT NOT NULL, resolved_at TEXT,
        PRIMARY KEY (message_id, rule, account, subject)
    );
    CREATE INDEX message_alerts_by_alert ON message_alerts (rule, account, subject);
    -- quiet hours: a held row waits for its release at hold_until
    ALTER TABLE outbox ADD COLUMN hold_until TEXT;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
PRUNE_BATCH = 1000  # rows per prune statement: the loop's writes never wait long for it
PRUNE_PAUSE = 0.1  # seconds between two of them: longer than SQLite's longest busy wait


class StoreError(Exception):
    """The state file cannot be used. The message names the file and the remedy."""


class StoreReplacedError(StoreError):
    """The state file was deleted or replaced while this process held it."""


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # failed for good; not retried
    DROPPED = "dropped"  # its notifier or destination is no longer configured
    SUPERSEDED = "superseded"  # only reminders that later rows made stale
    HELD = "held"  # quiet hours: released (or left out) at their end


PAYLOAD_VERSION = 1  # of the outbox's `events` column: {"v": 1, "kind": ..., "events": [...]}


# what tells a destination of an alert (and what ends that)
_TELLS = (EventKind.FIRE, EventKind.REMIND, EventKind.UNAVAILABLE)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    notifier: str
    destination: str
    events: tuple[Event, ...]
    kind: MessageKind = MessageKind.ALERTS
    message: Message | None = None  # rendered ahead (the digest, edits); else made from `events`
    edit_of: int | None = None  # an edit of this sent message (`messages.id`)
    hold_until: datetime | None = None  # quiet hours: held until then


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
    kind: MessageKind = MessageKind.ALERTS
    problem: str = ""  # why this version cannot read the row; it is then failed, not sent
    message: Message | None = None
    edit_of: int | None = None


Told = tuple[AlertKey, str, str]  # (alert, notifier, destination)


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message a platform accepted: where, which outbox row and part it was,
    the platform's id for it, and the alerts whose fire or reminder it carried
    (resolved when, if they have)."""

    notifier: str
    destination: str
    outbox_id: int
    part: int
    platform_id: str
    kind: MessageKind
    events: tuple[Event, ...]  # those it told of
    alerts: tuple[AlertKey, ...]
    resolved: Mapping[AlertKey, datetime | None] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Commit:
    """What one cycle leaves to persist."""

    old: EngineState  # the state the cycle started from
    new: EngineState
    snapshots: Sequence[Snapshot]  # this cycle's good polls
    outbox: Sequence[OutboxItem]
    now: datetime
    samples: Sequence[Sample] = ()  # their history rows


class StateStore(Protocol):
    """What the rest of the program needs from the state file."""

    def load_state(self, accounts: Iterable[str]) -> EngineState: ...

    def load_snapshots(self) -> dict[str, Snapshot]: ...

    def commit_cycle(self, commit: Commit) -> None:
        """Persist one cycle atomically: either all of it or nothing."""
        ...

    def pending(self, queue: tuple[str, str] | None = None) -> list[OutboxRow]: ...

    def queues(self) -> list[tuple[str, str]]:
        """The (notifier, destination) pairs with undelivered rows, oldest first."""
        ...

    def mark_sent_parts(self, row_id: int, parts_sent: int) -> None: ...

    def mark_done(
        self, row_id: int, status: OutboxStatus, now: datetime, error: str = ""
    ) -> None: ...

    def mark_retry(self, row_id: int, attempts: int, next_at: datetime, error: str) -> None: ...

    def reschedule(self, row_id: int, next_at: datetime) -> None: ...

    def backlog(self) -> dict[str, int]: ...

    def told(self) -> set[Told]:
        """Which destinations were told of each alert still firing."""
        ...

    def enqueue(
        self, items: Iterable[OutboxItem], now: datetime, meta: Mapping[str, str] | None = None
    ) -> None:
        """Outbox rows outside a cycle, with facts to record in the same transaction."""
        ...

    def prune(self, now: datetime, history_days: int = 90) -> int:
        """Delete one batch of expired rows; the number deleted (0: done)."""
        ...

    def silences(self, now: datetime) -> list[Silence]: ...

    def add_silence(self, silence: Silence, now: datetime) -> int: ...

    def end_silences(self, ids: Iterable[int], now: datetime) -> None: ...

    def acks(self) -> dict[AlertKey, Ack]: ...

    def add_acks(self, acks: Iterable[Ack]) -> None: ...

    def record_message(self, sent: SentMessage, now: datetime) -> int: ...

    def sent(self, message_id: int) -> SentMessage | None: ...

    def sent_message(self, notifier: str, outbox_id: int, part: int) -> SentMessage | None: ...

    def messages_of(self, alerts: Iterable[AlertKey]) -> list[SentMessage]: ...

    def held(self, due: datetime | None) -> list[OutboxRow]: ...

    def told_at(self) -> dict[Told, datetime]: ...

    def holding(self) -> set[Told]: ...

    def release(self, held: Iterable[int], items: Iterable[OutboxItem], now: datetime) -> None: ...

    @property
    def history(self) -> samples.Reader: ...

    def meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def check_file(self) -> None:
        """Raise StoreReplacedError if the file was deleted or replaced under us."""
        ...

    def close(self) -> None: ...


_encoder = msgspec.json.Encoder()


def _encode(data: Any) -> str:
    """JSON text, as json.dumps would give it (up to spacing), several times faster."""
    return _encoder.encode(data).decode()


def _snapshot_text(snapshot: Snapshot) -> str:
    """A snapshot as stored: Snapshot.to_dict() with each key as a [name, remain,
    used] array, half the size (this is written for every account on every poll)."""
    return _encode(
        {
            "account": snapshot.account,
            "username": snapshot.username,
            "total_quota": snapshot.total_quota,
            "total_used_quota": snapshot.total_used_quota,
            "request_count": snapshot.request_count,
            "keys": snapshot.keys,  # named tuples: encoded as arrays
            "fetched_at": snapshot.fetched_at.isoformat(),
        }
    )


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd = -1
        self._db: sqlite3.Connection | None = None
        self._pruner: sqlite3.Connection | None = None  # prune() runs in a worker thread
        self._pruning = threading.Lock()  # close() waits for a batch under way
        self._thinning = samples.Thinning()
        self._reader: samples.Reader | None = None

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
                    for statement in _statements(step):
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
        with self._pruning:
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

    def check_file(self) -> None:
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

    # --- engine state ------------------------------------------------------

    def load_state(self, accounts: Iterable[str]) -> EngineState:
        """State of the configured accounts; others' rows are ignored."""
        wanted = set(accounts)
        alerts: dict[AlertKey, AlertState] = {}
        for row in self._rows(
            "SELECT rule, account, subject, firing, polls_below, value, fired_at, notified_at, "
            "shape, announced, held FROM alerts"
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
                    shape=row["shape"],
                    announced=bool(row["announced"]),
                    held=bool(row["held"]),
                )
        health: dict[str, AccountHealth] = {}
        # a row is written when the account's failures change; its last success is
        # the newest of that row's and its snapshot's (written on every good poll)
        for row in self._rows(
            "SELECT h.account, h.failures, h.failing_since, h.unavailable, h.last_error, "
            "max(coalesce(h.last_success, ''), coalesce(s.fetched_at, '')) AS last_success "
            "FROM health h LEFT JOIN snapshots s ON s.account = h.account"
        ):
            if row["account"] in wanted:
                health[row["account"]] = AccountHealth(
                    row["account"],
                    failures=row["failures"],
                    failing_since=_dt(row["failing_since"]),
                    unavailable=bool(row["unavailable"]),
                    last_error=row["last_error"],
                    last_success=_dt(row["last_success"] or None),
                )
        return EngineState(alerts, health)

    def load_snapshots(self) -> dict[str, Snapshot]:
        return {
            row["account"]: Snapshot.from_dict(json.loads(row["data"]))
            for row in self._rows("SELECT account, data FROM snapshots")
        }

    def commit_cycle(self, commit: Commit) -> None:
        old, new, now, snapshots = commit.old, commit.new, commit.now, commit.snapshots
        gone = [k for k in old.alerts if k not in new.alerts]
        changed = [s for k, s in new.alerts.items() if old.alerts.get(k) != s]
        health = [h for a, h in new.health.items() if _failures(old.health.get(a)) != _failures(h)]
        ended = _ended(old, new)
        with self._transaction() as db:
            db.executemany("DELETE FROM alerts WHERE rule=? AND account=? AND subject=?", gone)
            db.executemany(
                "INSERT OR REPLACE INTO alerts (rule, account, subject, firing, polls_below, "
                "value, fired_at, notified_at, shape, announced, held) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    (
                        *s.key,
                        int(s.firing),
                        s.polls_below,
                        s.value,
                        _ts(s.fired_at),
                        _ts(s.notified_at),
                        s.shape,
                        int(s.announced),
                        int(s.held),
                    )
                    for s in changed
                ),
            )
            db.executemany(
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
            )
            db.executemany(
                "INSERT OR REPLACE INTO snapshots (account, fetched_at, data) VALUES (?,?,?)",
                ((s.account, _ts(s.fetched_at), _snapshot_text(s)) for s in snapshots),
            )
            samples.write(db, commit.samples)
            db.executemany("DELETE FROM told WHERE rule=? AND account=? AND subject=?", ended)
            db.executemany("DELETE FROM acks WHERE rule=? AND account=? AND subject=?", ended)
            db.executemany(
                "UPDATE message_alerts SET resolved_at=? WHERE rule=? AND account=? AND "
                "subject=? AND resolved_at IS NULL",
                # a rule or account removed from the config ends its alerts too
                ((_ts(now), *key) for key in {*ended, *gone}),
            )
            self._enqueue(db, commit.outbox, now)

    @staticmethod
    def _enqueue(db: sqlite3.Connection, items: Iterable[OutboxItem], now: datetime) -> None:
        """Outbox rows, and the destinations they tell of each alert."""
        for item in items:
            held = item.hold_until is not None
            row_id = db.execute(
                "INSERT INTO outbox (created_at, notifier, destination, events, "
                "next_attempt_at, status, hold_until) VALUES (?,?,?,?,?,?,?)",
                (
                    _ts(now),
                    item.notifier,
                    item.destination,
                    encode_payload(item),
                    _ts(now),
                    OutboxStatus.HELD if held else OutboxStatus.PENDING,
                    _ts(item.hold_until),
                ),
            ).lastrowid
            if held:
                continue  # told only once released
            db.executemany(  # the first message since it fired: quiet hours ask when that was
                "INSERT OR IGNORE INTO told (rule, account, subject, notifier, destination, "
                "outbox_id) VALUES (?,?,?,?,?,?)",
                (
                    (*e.alert, item.notifier, item.destination, row_id)
                    for e in item.events
                    if e.kind in _TELLS
                ),
            )

    def enqueue(
        self, items: Iterable[OutboxItem], now: datetime, meta: Mapping[str, str] | None = None
    ) -> None:
        with self._transaction() as db:
            self._enqueue(db, items, now)
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", (meta or {}).items()
            )

    def told(self) -> set[Told]:
        return {
            (AlertKey(r["rule"], r["account"], r["subject"]), r["notifier"], r["destination"])
            for r in self._rows("SELECT rule, account, subject, notifier, destination FROM told")
        }

    def told_at(self) -> dict[Told, datetime]:
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

    def holding(self) -> set[Told]:
        """The alerts that rows held for quiet hours will tell each destination of."""
        return {
            (e.alert, row.notifier, row.destination)
            for row in self.held(None)
            for e in row.events
            if e.kind in _TELLS
        }

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
        return [_outbox_row(r) for r in rows]

    def queues(self) -> list[tuple[str, str]]:
        rows = self._rows(
            "SELECT notifier, destination, min(id) AS first FROM outbox WHERE status='pending' "
            "GROUP BY notifier, destination ORDER BY first"
        )
        return [(r["notifier"], r["destination"]) for r in rows]

    def mark_sent_parts(self, row_id: int, parts_sent: int) -> None:
        self._write([("UPDATE outbox SET parts_sent=? WHERE id=?", [(parts_sent, row_id)])])

    def mark_done(self, row_id: int, status: OutboxStatus, now: datetime, error: str = "") -> None:
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

    def mark_retry(self, row_id: int, attempts: int, next_at: datetime, error: str) -> None:
        self._write(
            [
                (
                    "UPDATE outbox SET attempts=?, next_attempt_at=?, last_error=? WHERE id=?",
                    [(attempts, _ts(next_at), error, row_id)],
                )
            ]
        )

    def reschedule(self, row_id: int, next_at: datetime) -> None:
        self._write([("UPDATE outbox SET next_attempt_at=? WHERE id=?", [(_ts(next_at), row_id)])])

    def backlog(self) -> dict[str, int]:
        rows = self._rows(
            "SELECT notifier, count(*) AS n FROM outbox WHERE status='pending' GROUP BY notifier"
        )
        return {r["notifier"]: r["n"] for r in rows}

    def prune(self, now: datetime, history_days: int = 90) -> int:
        """Delete up to PRUNE_BATCH expired or downsampled rows per kind, on a
        connection of its own, so that it can run in a worker thread while the
        loop goes on."""
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

    # --- snoozes, acks and the messages that carry buttons ----------------------

    def silences(self, now: datetime) -> list[Silence]:
        """The snoozes still running."""
        rows = self._rows(
            "SELECT id, pattern, alerts, until, who FROM silences WHERE until > ? ORDER BY id",
            (_ts(now),),
        )
        return [
            Silence(
                datetime.fromisoformat(r["until"]),
                r["who"],
                r["pattern"],
                frozenset(AlertKey(*a) for a in json.loads(r["alerts"])),
                r["id"],
            )
            for r in rows
        ]

    def add_silence(self, silence: Silence, now: datetime) -> int:
        alerts = json.dumps(sorted(list(k) for k in silence.alerts))
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO silences (pattern, alerts, until, who, created_at) VALUES (?,?,?,?,?)",
                (silence.pattern, alerts, _ts(silence.until), silence.who, _ts(now)),
            )
        return cursor.lastrowid or 0

    def end_silences(self, ids: Iterable[int], now: datetime) -> None:
        self._write([("UPDATE silences SET until=? WHERE id=?", [(_ts(now), i) for i in ids])])

    def acks(self) -> dict[AlertKey, Ack]:
        rows = self._rows("SELECT rule, account, subject, who, at FROM acks")
        return {
            (key := AlertKey(r["rule"], r["account"], r["subject"])): Ack(
                key, r["who"], datetime.fromisoformat(r["at"])
            )
            for r in rows
        }

    def add_acks(self, acks: Iterable[Ack]) -> None:
        self._write(
            [
                (
                    "INSERT OR REPLACE INTO acks (rule, account, subject, who, at) "
                    "VALUES (?,?,?,?,?)",
                    [(*a.key, a.who, _ts(a.at)) for a in acks],
                )
            ]
        )

    def record_message(self, sent: SentMessage, now: datetime) -> int:
        """A message a platform accepted, with the alerts it announced."""
        with self._transaction() as db:
            message_id = db.execute(
                "INSERT INTO messages (notifier, destination, outbox_id, part, platform_id, "
                "events, created_at) VALUES (?,?,?,?,?,?,?)",
                (
                    sent.notifier,
                    sent.destination,
                    sent.outbox_id,
                    sent.part,
                    sent.platform_id,
                    encode_payload(OutboxItem("", "", sent.events, sent.kind)),
                    _ts(now),
                ),
            ).lastrowid
            db.executemany(
                "INSERT OR IGNORE INTO message_alerts (message_id, rule, account, subject) "
                "VALUES (?,?,?,?)",
                ((message_id, *key) for key in sent.alerts),
            )
        return message_id or 0

    def sent_message(self, notifier: str, outbox_id: int, part: int) -> SentMessage | None:
        """The message that part `part` of outbox row `outbox_id` became (a button's token)."""
        rows = self._rows(
            "SELECT id FROM messages WHERE outbox_id=? AND part=? AND notifier=? "
            "ORDER BY id DESC LIMIT 1",
            (outbox_id, part, notifier),
        )
        return self.sent(rows[0]["id"]) if rows else None

    def messages_of(self, alerts: Iterable[AlertKey]) -> list[SentMessage]:
        """Every message that announced one of `alerts`."""
        ids: set[int] = set()
        for key in alerts:
            ids.update(
                r["message_id"]
                for r in self._rows(
                    "SELECT message_id FROM message_alerts WHERE rule=? AND account=? AND "
                    "subject=?",
                    key,
                )
            )
        return [m for m in (self.sent(i) for i in sorted(ids)) if m is not None]

    def sent(self, message_id: int) -> SentMessage | None:
        rows = self._rows(
            "SELECT id, notifier, destination, outbox_id, part, platform_id, events "
            "FROM messages WHERE id=?",
            (message_id,),
        )
        if not rows:
            return None
        r = rows[0]
        try:
            kind, events, _, _ = decode_payload(r["events"])
        except EventFormatError:  # written by a newer version: no edits to it
            kind, events = MessageKind.ALERTS, ()
        alerts = {
            AlertKey(a["rule"], a["account"], a["subject"]): _dt(a["resolved_at"])
            for a in self._rows(
                "SELECT rule, account, subject, resolved_at FROM message_alerts WHERE message_id=?",
                (message_id,),
            )
        }
        return SentMessage(
            r["notifier"],
            r["destination"],
            r["outbox_id"],
            r["part"],
            r["platform_id"],
            kind,
            events,
            tuple(alerts),
            alerts,
            r["id"],
        )

    def held(self, due: datetime | None) -> list[OutboxRow]:
        """Rows held for quiet hours that end by `due` (all for None), oldest first."""
        rows = self._rows(
            "SELECT id, created_at, notifier, destination, events, parts_sent, attempts, "
            "next_attempt_at FROM outbox WHERE status='held' AND hold_until <= ? ORDER BY id",
            (_ts(due) if due else "9999",),
        )
        return [_outbox_row(r) for r in rows]

    def release(self, held: Iterable[int], items: Iterable[OutboxItem], now: datetime) -> None:
        """Held rows done (their events go out in `items`, or not at all)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET status=?, done_at=?, last_error='released at the end of "
                "quiet hours' WHERE id=?",
                ((OutboxStatus.SUPERSEDED, _ts(now), i) for i in held),
            )
            self._enqueue(db, items, now)

    # --- history and small facts ----------------------------------------------

    @property
    def history(self) -> samples.Reader:
        """Samples read back (on the event loop's connection)."""
        if self._reader is None:
            self._reader = samples.Reader(self._conn, lambda exc: explain(self.path, exc))
        return self._reader

    def meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._write([("INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", [(key, value)])])


def encode_payload(item: OutboxItem) -> str:
    data: dict[str, Any] = {
        "v": PAYLOAD_VERSION,
        "kind": item.kind,
        "events": [e.to_dict() for e in item.events],
    }
    if item.message is not None:
        data["message"] = item.message.to_dict()
    if item.edit_of is not None:
        data["edit_of"] = item.edit_of
    return json.dumps(data)


Payload = tuple[MessageKind, tuple[Event, ...], Message | None, int | None]


def decode_payload(text: str) -> Payload:
    """An outbox payload (the first release stored a bare list of events).
    Raises model.EventFormatError for a payload this version cannot read."""
    try:
        data: Any = json.loads(text)
        if isinstance(data, list):
            return MessageKind.ALERTS, tuple(Event.from_dict(e) for e in data), None, None
        if data.get("v", 0) > PAYLOAD_VERSION:
            raise EventFormatError(f"payload version {data.get('v')} is newer than this one")
        events = tuple(Event.from_dict(e) for e in data["events"])
        message = Message.from_dict(data["message"]) if data.get("message") else None
        edit_of = int(data["edit_of"]) if data.get("edit_of") is not None else None
        return MessageKind(data.get("kind", MessageKind.ALERTS)), events, message, edit_of
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, EventFormatError):
            raise
        raise EventFormatError(f"unreadable outbox payload ({type(exc).__name__}: {exc})") from None


def _outbox_row(r: sqlite3.Row) -> OutboxRow:
    message, edit_of = None, None
    try:
        kind, events, message, edit_of = decode_payload(r["events"])
        problem = ""
    except EventFormatError as exc:
        kind, events, problem = MessageKind.ALERTS, (), str(exc)
    return OutboxRow(
        id=r["id"],
        created_at=datetime.fromisoformat(r["created_at"]),
        notifier=r["notifier"],
        destination=r["destination"],
        events=events,
        parts_sent=r["parts_sent"],
        attempts=r["attempts"],
        next_attempt_at=datetime.fromisoformat(r["next_attempt_at"]),
        kind=kind,
        problem=problem,
        message=message,
        edit_of=edit_of,
    )


def _failures(health: AccountHealth | None) -> tuple[Any, ...] | None:
    """What a health row must be written for: not a good poll's time alone (the
    snapshot written with it has that)."""
    if health is None:
        return None
    return (health.failures, health.failing_since, health.unavailable, health.last_error)


def _ended(old: EngineState, new: EngineState) -> list[tuple[str, str, str]]:
    """Alerts (and data-unavailable alerts) that stopped firing in this commit."""
    ended = [
        tuple(k)
        for k, s in old.alerts.items()
        if s.firing and not (k in new.alerts and new.alerts[k].firing)
    ]
    ended += [
        ("", a, "")
        for a, h in old.health.items()
        if h.unavailable and not (a in new.health and new.health[a].unavailable)
    ]
    return ended  # type: ignore[return-value]


def _seed_told(db: sqlite3.Connection) -> None:
    """Files from before `told` existed: the destinations that were sent (or still
    have queued) an alert still firing were told of it."""
    firing = {
        AlertKey(*row)
        for row in db.execute("SELECT rule, account, subject FROM alerts WHERE firing=1")
    }
    firing |= {
        AlertKey("", row[0], "")
        for row in db.execute("SELECT account FROM health WHERE unavailable=1")
    }
    rows = db.execute(
        "SELECT id, notifier, destination, events FROM outbox "
        "WHERE status IN ('pending', 'delivered') ORDER BY id"
    ).fetchall()
    for row_id, notifier, destination, text in rows:
        try:
            _, events, _, _ = decode_payload(text)
        except EventFormatError:
            continue
        db.executemany(
            "INSERT OR REPLACE INTO told (rule, account, subject, notifier, destination, "
            "outbox_id) VALUES (?,?,?,?,?,?)",
            (
                (*e.alert, notifier, destination, row_id)
                for e in events
                if e.kind in _TELLS and e.alert in firing
            ),
        )


def _statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


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
