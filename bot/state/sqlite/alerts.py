"""Alert instances, account health and the latest good data, and the one
transaction that commits a cycle."""

from __future__ import annotations

from collections.abc import Iterable

from bot.engine.model import AccountHealth, AlertKey, AlertState, EngineState, Snapshot
from bot.state.changes import Changes
from bot.state.snapshot_rows import SnapshotRows, read_all
from bot.state.sqlite import samples
from bot.state.sqlite.db import Db, _dt, _ts
from bot.state.sqlite.outbox import enqueue_rows
from bot.state.types import Commit, Layout, new_layouts


class Alerts(Db):
    _snapshot_rows: SnapshotRows | None = None

    async def load_state(self, accounts: Iterable[str]) -> EngineState:
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

    async def load_snapshots(self) -> dict[str, Snapshot]:
        rows = self._rows("SELECT account, data, figures, fetched_at FROM snapshots")
        return read_all((tuple(row) for row in rows), str(self.path))

    async def commit_cycle(self, commit: Commit) -> None:
        with new_layouts(self.history.remember) as fresh:
            self._write_cycle(commit, fresh)

    def _write_cycle(self, commit: Commit, fresh: list[Layout]) -> None:
        now, change = commit.now, Changes.of(commit)
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM alerts WHERE rule=? AND account=? AND subject=?", change.gone
            )
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
                    for s in change.changed
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
                    for h in change.health
                ),
            )
            if self._snapshot_rows is None:
                self._snapshot_rows = SnapshotRows()
            db.executemany(
                "INSERT OR REPLACE INTO snapshots (account, fetched_at, data, figures) "
                "VALUES (?,?,?,?)",
                self._snapshot_rows.rows(commit.snapshots),
            )
            samples.write(db, commit.samples, fresh)
            ended = change.ended
            db.executemany("DELETE FROM told WHERE rule=? AND account=? AND subject=?", ended)
            db.executemany("DELETE FROM acks WHERE rule=? AND account=? AND subject=?", ended)
            db.executemany(
                "UPDATE message_alerts SET resolved_at=? WHERE rule=? AND account=? AND "
                "subject=? AND resolved_at IS NULL",
                ((_ts(now), *key) for key in change.resolved()),
            )
            enqueue_rows(db, commit.outbox, now)
