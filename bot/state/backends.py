"""Which backend holds the state: SQLite (a file, the default) or PostgreSQL (a
URL). A backend's package is imported only when chosen, so that a SQLite user
pays nothing for the other's driver."""

from __future__ import annotations

from pathlib import Path

from bot.state.protocol import StateStore
from bot.state.types import StoreError


async def open_store(path: Path, url: str = "") -> StateStore:
    """The state at `url` if one is given, else in the file at `path`; opened
    (created or migrated as needed). Raises StoreError."""
    if url:
        try:
            from bot.state.postgres.store import Store as Postgres
        except ImportError as exc:
            raise StoreError(
                f"state_url needs the PostgreSQL driver ({exc.name} is missing): "
                "pip install 'cometapi-balance-bot[postgres]'"
            ) from None
        return await Postgres.open(url)
    from bot.state.sqlite.store import Store

    return Store.open(path)
