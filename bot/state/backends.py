"""Which backend holds the state: SQLite (a file, the default) or PostgreSQL (a
URL). A backend's package is imported only when chosen, so that a SQLite user
pays nothing for the other's driver."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from bot.state.protocol import Leadership, StateStore
from bot.state.types import StoreError


async def open_store(path: Path, url: str = "", epoch: int | None = None) -> StateStore:
    """The state at `url` if one is given, else in the file at `path`; opened
    (created or migrated as needed). `epoch`: the active process's (its writes
    are refused once another took over). Raises StoreError."""
    if url:
        store = await postgres_module("store").Store.open(url)
        store.epoch = epoch
        return store  # type: ignore[no-any-return]
    from bot.state.sqlite.store import Store

    return Store.open(path)


def lease(url: str) -> Leadership:
    """Who is active on the database at `url` (not taken yet)."""
    return postgres_module("leader").Lease(url)  # type: ignore[no-any-return]


def postgres_module(module: str) -> ModuleType:
    """A module of the PostgreSQL backend, imported now (its driver with it)."""
    try:
        return importlib.import_module(f"bot.state.postgres.{module}")
    except ImportError as exc:
        raise StoreError(
            f"state_url needs the PostgreSQL driver ({exc.name} is missing): "
            "pip install 'cometapi-balance-bot[postgres]'"
        ) from None
