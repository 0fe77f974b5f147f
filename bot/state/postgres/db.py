"""The PostgreSQL database itself: a small pool of connections, the schema
created or migrated on open (under an advisory lock), transactions, and what
PostgreSQL errors mean to a user. The URL's password never appears in a message."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Self

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from bot.state.postgres.schema import MIGRATE_LOCK, MIGRATIONS, SCHEMA_VERSION, statements
from bot.state.types import SchemaTooNewError, StoreError

# the pool's reconnection attempts: the outage is the bot's to report (once), not
# a warning per attempt
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

CONNECT_TIMEOUT = 5  # seconds: a database that does not answer is reported, not waited for
POOL_SIZE = 4  # the cycle, delivery, chat actions, pruning
# a half-open TCP connection must not keep a dead peer's session (and its lock) for minutes
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 9000,  # ms: unacknowledged writes fail within this
}


def where(url: str) -> str:
    """The database a URL names, as messages show it: never its password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "(an unreadable state_url)"
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{host}{port}/{info.get('dbname') or info.get('user') or ''}"


def explain(url: str, exc: BaseException) -> StoreError:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, psycopg.OperationalError):
        remedy = (
            "check that PostgreSQL runs and is reachable from here, and the URL's host, "
            "port, user, password and database"
        )
    elif isinstance(exc, psycopg.errors.InsufficientPrivilege):
        remedy = "grant the URL's user the right to create and change tables in that database"
    else:
        remedy = "see the PostgreSQL error above"
    return StoreError(f"database {where(url)}: {text}: {remedy}")


async def connect(url: str, **options: Any) -> psycopg.AsyncConnection[Any]:
    """One connection of its own (the active lock's, a migration's)."""
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **KEEPALIVES, **options
        )
    except psycopg.Error as exc:
        raise explain(url, exc) from None


class Db:
    """The database: its pool and transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = where(url)
        self._pool: AsyncConnectionPool | None = None

    @classmethod
    async def open(cls, url: str) -> Self:
        store = cls(url)
        try:
            await store._open()
        except BaseException:
            await store.close()
            raise
        return store

    async def _open(self) -> None:
        conn = await connect(self.url)
        try:
            await migrate(conn, self.where)
        except psycopg.Error as exc:
            raise explain(self.url, exc) from None
        finally:
            await conn.close()
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            timeout=CONNECT_TIMEOUT * 2,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT, **KEEPALIVES},
            check=AsyncConnectionPool.check_connection,
            name="balance-bot",
        )
        try:
            await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
        except psycopg.Error as exc:
            raise explain(self.url, exc) from None

    @property
    def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise StoreError(f"database {self.where} is closed")
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                return await cursor.fetchall()
        except psycopg.Error as exc:
            raise explain(self.url, exc) from None

    async def _write(self, work: Iterable[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        """Statements in one transaction."""
        async with self._transaction() as conn, conn.cursor() as cursor:
            for sql, rows in work:
                if rows:
                    await cursor.executemany(sql, rows)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """All of it or nothing; PostgreSQL errors explained."""
        try:
            async with self.pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.Error as exc:
            raise explain(self.url, exc) from None


async def migrate(conn: psycopg.AsyncConnection[Any], name: str) -> None:
    """Create or migrate the schema, once however many processes start together."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS balance_bot_schema (version INTEGER)")
        cursor = await conn.execute("SELECT version FROM balance_bot_schema")
        row = await cursor.fetchone()
        version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"database {name} was written by a newer balance-bot (schema {version}, this "
                f"version knows {SCHEMA_VERSION}); upgrade balance-bot, or point state_url "
                "at another database"
            )
        for target in range(version, SCHEMA_VERSION):
            for statement in statements(MIGRATIONS[target]):
                await conn.execute(statement)
        if row is None:
            await conn.execute("INSERT INTO balance_bot_schema VALUES (%s)", (SCHEMA_VERSION,))
        elif version < SCHEMA_VERSION:
            await conn.execute("UPDATE balance_bot_schema SET version = %s", (SCHEMA_VERSION,))
