"""Alert instances, account health and the latest good data, and the one
transaction that commits a cycle (refused when another process took over)."""

from __future__ import annotations

from collections.abc import Iterable

from bot.engine.model import AccountHealth, AlertKey, AlertState, EngineState, Snapshot
from bot.state.changes import Changes
from bot.state.codec import dt as _dt
from bot.state.codec import ts as _ts
from bot.state.postgres import samples
from bot.state.postgres.fence import Fenced
from bot.state.postgres.outbox import enqueue_rows
from bot.state.snapshot_rows import SnapshotRows, read_all
from bot.state.types import Commit, Layout, new_layouts


class Alerts(Fenced):
    _snapshot_rows: SnapshotRows | None = None
    _reader: samples.Reader | None = None

    @property
    def history(self) -> samples.Reader:
        if self._reader is None:
            self._reader = samples.Reader(self._rows)
        return self._reader

    async def load_state(self, accounts: Iterable[str]) -> EngineState:
        wanted = set(accounts)
        alerts: dict[AlertKey, AlertState] = {}
        for row in await self._rows(
            "SELECT rule, account, subject, firing, polls_below, value, fired_at, notified_at, "
            "shape, announced, held FROM alerts"
        ):
            key = AlertKey(row[0], row[1], row[2])
            if key.account in wanted:
                alerts[key] = AlertState(
                    key,
                    firing=row[3],
                    polls_below=row[4],
                    value=row[5],
                    fired_at=_dt(row[6]),
                    notified_at=_dt(row[7]),
                    shape=row[8],
                    announced=row[9],
                    held=row[10],
                )
        health: dict[str, AccountHealth] = {}
        for row in await self._rows(
            "SELECT h.account, h.failures, h.failing_since, h.unavailable, h.last_error, "
            "greatest(coalesce(h.last_success, ''), coalesce(s.fetched_at, '')) "
            "FROM health h LEFT JOIN snapshots s ON s.account = h.account"
        ):
            if row[0] in wanted:
                health[row[0]] = AccountHealth(
                    row[0],
                    failures=row[1],
                    failing_since=_dt(row[2]),
                    unavailable=row[3],
                    last_error=row[4],
                    last_success=_dt(row[5] or None),
                )
        return EngineState(alerts, health)

    async def load_snapshots(self) -> dict[str, Snapshot]:
        rows = await self._rows("SELECT account, data, figures, fetched_at FROM snapshots")
        return read_all(rows, self.where)

    async def commit_cycle(self, commit: Commit) -> None:
        with new_layouts(self.history.remember) as fresh:
            await self._write_cycle(commit, fresh)

    async def _write_cycle(self, commit: Commit, fresh: list[Layout]) -> None:
        now, change = commit.now, Changes.of(commit)
        async with self._fenced() as conn, conn.cursor() as db:
            await db.executemany(
                "DELETE FROM alerts WHERE rule=%s AND account=%s AND subject=%s",
                [tuple(k) for k in change.gone],
            )
            await db.executemany(
                "INSERT INTO alerts (rule, account, subject, firing, polls_below, value, "
                "fired_at, notified_at, shape, announced, held) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT (rule, account, subject) DO UPDATE SET firing=EXCLUDED.firing, "
                "polls_below=EXCLUDED.polls_below, value=EXCLUDED.value, "
                "fired_at=EXCLUDED.fired_at, notified_at=EXCLUDED.notified_at, "
                "shape=EXCLUDED.shape, announced=EXCLUDED.announced, held=EXCLUDED.held",
                [
                    (
                        *s.key,
                        s.firing,
                        s.polls_below,
                        s.value,
                        _ts(s.fired_at),
                        _ts(s.notified_at),
                        s.shape,
                        s.announced,
                        s.held,
                    )
                    for s in change.changed
                ],
            )
            await db.executemany(
                "INSERT INTO health (account, failures, failing_since, unavailable, last_error, "
                "last_success) VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (account) DO UPDATE SET "
                "failures=EXCLUDED.failures, failing_since=EXCLUDED.failing_since, "
                "unavailable=EXCLUDED.unavailable, last_error=EXCLUDED.last_error, "
                "last_success=EXCLUDED.last_success",
                [
                    (
                        h.account,
                        h.failures,
                        _ts(h.failing_since),
                        h.unavailable,
                        h.last_error,
                        _ts(h.last_success),
                    )
                    for h in change.health
                ],
            )
            if self._snapshot_rows is None:
                self._snapshot_rows = SnapshotRows()
            await db.executemany(
                "INSERT INTO snapshots (account, fetched_at, data, figures) "
                "VALUES (%s,%s,%s,%s) ON CONFLICT (account) DO UPDATE SET "
                "fetched_at=EXCLUDED.fetched_at, data=EXCLUDED.data, figures=EXCLUDED.figures",
                self._snapshot_rows.rows(commit.snapshots),
            )
            await samples.write(conn, commit.samples, fresh)
            ended = change.ended
            for table in ("told", "acks"):
                await db.executemany(
                    f"DELETE FROM {table} WHERE rule=%s AND account=%s AND subject=%s", ended
                )
            await db.executemany(
                "UPDATE message_alerts SET resolved_at=%s WHERE rule=%s AND account=%s AND "
                "subject=%s AND resolved_at IS NULL",
                [(_ts(now), *key) for key in change.resolved()],
            )
            await enqueue_rows(conn, commit.outbox, now)
