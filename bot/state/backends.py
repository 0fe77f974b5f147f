"""Which backend holds the state: SQLite (a file, the default), or the one a
`state_url`'s scheme names (PostgreSQL). A backend's package is imported only
when chosen, so that a SQLite user pays nothing for another's driver. A new
server backend is its package (`store.Store`, `leader.Lease`) and its line in
SCHEMES."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from bot.state.protocol import Leadership, StateStore
from bot.state.types import StoreError

# state_url schemes -> (the package under bot/state/, what to install for it)
SCHEMES = {
    "postgresql": ("postgres", "cometapi-balance-bot[postgres]"),
    "postgres": ("postgres", "cometapi-balance-bot[postgres]"),
}


async def open_store(path: Path, url: str = "", epoch: int | None = None) -> StateStore:
    """The state at `url` if one is given, else in the file at `path`; opened
    (created or migrated as needed). `epoch`: the active process's (its writes
    are refused once another took over). Raises StoreError."""
    if url:
        store = await backend(url, "store").Store.open(url)
        store.epoch = epoch
        return store  # type: ignore[no-any-return]
    from bot.state.sqlite.store import Store

    return Store.open(path)


def lease(url: str) -> Leadership:
    """Who is active on the database at `url` (not taken yet)."""
    return backend(url, "leader").Lease(url)  # type: ignore[no-any-return]


def backend(url: str, module: str) -> ModuleType:
    """A module of the backend `url` names, imported now (its driver with it)."""
    scheme = url.partition("://")[0].lower()
    if scheme not in SCHEMES:
        raise StoreError(f"state_url: no state backend for {scheme}:// URLs")
    package, extra = SCHEMES[scheme]
    try:
        return importlib.import_module(f"bot.state.{package}.{module}")
    except ImportError as exc:
        raise StoreError(
            f"state_url needs the driver of its database ({exc.name} is missing): "
            f"pip install '{extra}'"
        ) from None
