"""The SQLite schema, versioned with PRAGMA user_version: each entry of MIGRATIONS
migrates from version i to i + 1 (SQL, or a function run in the same transaction).
Never edit a released entry: append a new one."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from bot.engine.model import AlertKey, EventFormatError
from bot.state.codec import decode_payload
from bot.state.sqlite import samples
from bot.state.types import TELLS

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
    """
    -- a snapshot's figures, packed (bot/state/snapshot_rows.py); `data` then holds
    -- the rest of it (its frame); NULL: `data` is the whole snapshot, as before
    ALTER TABLE snapshots ADD COLUMN figures BLOB;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


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
                if e.kind in TELLS and e.alert in firing
            ),
        )


def statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
