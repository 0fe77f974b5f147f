"""The PostgreSQL schema, versioned in `balance_bot_schema`: each entry of
MIGRATIONS migrates from version i to i + 1, in one transaction under an
advisory lock (replicas starting together migrate once). Never edit a released
entry: append a new one. Times are ISO 8601 text as in the SQLite file, so that
both compare and read them alike (and `state import` copies them as they are)."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    """
    CREATE TABLE alerts (
        rule TEXT NOT NULL, account TEXT NOT NULL, subject TEXT NOT NULL,
        firing BOOLEAN NOT NULL, polls_below INTEGER NOT NULL, value DOUBLE PRECISION NOT NULL,
        fired_at TEXT, notified_at TEXT, shape TEXT NOT NULL DEFAULT '',
        announced BOOLEAN NOT NULL DEFAULT TRUE, held BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (rule, account, subject)
    );
    CREATE TABLE health (
        account TEXT PRIMARY KEY, failures INTEGER NOT NULL, failing_since TEXT,
        unavailable BOOLEAN NOT NULL, last_error TEXT NOT NULL, last_success TEXT
    );
    CREATE TABLE snapshots (account TEXT PRIMARY KEY, fetched_at TEXT NOT NULL, data TEXT NOT NULL);
    -- history: as in bot/state/sqlite/samples.py
    CREATE TABLE layouts (
        id BIGSERIAL PRIMARY KEY, account TEXT NOT NULL, names TEXT NOT NULL, since TEXT NOT NULL
    );
    CREATE TABLE samples (
        account TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
        total DOUBLE PRECISION NOT NULL, used DOUBLE PRECISION NOT NULL, requests BIGINT,
        spent DOUBLE PRECISION NOT NULL, layout BIGINT, keys BYTEA,
        PRIMARY KEY (account, at)
    );
    CREATE INDEX samples_by_time ON samples (at);
    CREATE TABLE outbox (
        id BIGSERIAL PRIMARY KEY,
        created_at TEXT NOT NULL,
        notifier TEXT NOT NULL,
        destination TEXT NOT NULL,
        events TEXT NOT NULL,
        parts_sent INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        last_error TEXT NOT NULL DEFAULT '',
        done_at TEXT,
        hold_until TEXT
    );
    CREATE INDEX outbox_pending ON outbox (status, notifier, destination, id);
    CREATE INDEX outbox_by_done ON outbox (done_at);
    CREATE TABLE told (
        rule TEXT NOT NULL, account TEXT NOT NULL, subject TEXT NOT NULL,
        notifier TEXT NOT NULL, destination TEXT NOT NULL, outbox_id BIGINT NOT NULL,
        PRIMARY KEY (rule, account, subject, notifier, destination)
    );
    CREATE INDEX told_by_row ON told (outbox_id);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE silences (
        id BIGSERIAL PRIMARY KEY, pattern TEXT NOT NULL, alerts TEXT NOT NULL,
        "until" TEXT NOT NULL, who TEXT NOT NULL, created_at TEXT NOT NULL
    );
    CREATE TABLE acks (
        rule TEXT NOT NULL, account TEXT NOT NULL, subject TEXT NOT NULL,
        who TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (rule, account, subject)
    );
    CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY, notifier TEXT NOT NULL, destination TEXT NOT NULL,
        outbox_id BIGINT NOT NULL, part INTEGER NOT NULL, platform_id TEXT NOT NULL,
        events TEXT NOT NULL, created_at TEXT NOT NULL
    );
    CREATE INDEX messages_by_row ON messages (outbox_id, part);
    CREATE TABLE message_alerts (
        message_id BIGINT NOT NULL, rule TEXT NOT NULL, account TEXT NOT NULL,
        subject TEXT NOT NULL, resolved_at TEXT,
        PRIMARY KEY (message_id, rule, account, subject)
    );
    CREATE INDEX message_alerts_by_alert ON message_alerts (rule, account, subject);
    -- the active process's epoch: raised at each takeover; its writes carry it (SPEC 7b)
    CREATE TABLE leader (id INTEGER PRIMARY KEY CHECK (id = 1), epoch BIGINT NOT NULL);
    INSERT INTO leader (id, epoch) VALUES (1, 0);
    """,
    """
    -- as in SQLite: a snapshot's figures, packed; `data` then holds its frame
    ALTER TABLE snapshots ADD COLUMN figures BYTEA;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
# pg_advisory_* keys (64-bit): migrations, and the active process's session lock
MIGRATE_LOCK = 0x62616C616E6365  # "balance"
ACTIVE_LOCK = 0x62616C616E6366


def statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
