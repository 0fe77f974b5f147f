"""Every StateStore backend, for the contract suite: a fixture per backend
that opens its state (the same state each time it is called: a restart)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest

from bot.state.protocol import StateStore
from bot.state.sqlite.store import Store
from fakes.postgres import PostgresMissing, Server, server

Opener = Callable[[], Awaitable[StateStore]]
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture
def sqlite_opener(tmp_path) -> Opener:
    path = tmp_path / "state.db"

    async def open_() -> StateStore:
        return Store.open(path)

    return open_


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """One PostgreSQL server for the whole session (each test takes a fresh database)."""
    try:
        running = server()
        started = running.__enter__()
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield started
    finally:
        running.__exit__(None, None, None)


@pytest.fixture
def postgres_opener(pg_server: Server) -> Opener:
    url = pg_server.fresh()

    async def open_() -> StateStore:
        from bot.state.postgres.store import Store as PgStore

        return await PgStore.open(url)

    return open_
