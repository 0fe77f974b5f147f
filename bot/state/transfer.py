"""`balance-bot state import FILE`: an SQLite state file copied into an empty
PostgreSQL database, every table as it is (ids, times, payloads), so that the
replicas carry on where the single process stopped: a firing alert stays
firing and told, an undelivered row is sent once, snoozes and acks hold."""

from __future__ import annotations

from pathlib import Path

from bot.state.backends import backend
from bot.state.types import StoreError


def existing(path: Path) -> Path:
    """`path`, if it is a state file (opening one that is not would create it)."""
    if not path.is_file():
        raise StoreError(f"state file {path} does not exist; name the file `run` used")
    return path


async def import_sqlite(path: Path, url: str) -> dict[str, int]:
    """Copy the state file at `path` into the database at `url` (which must hold
    no balance-bot data yet), in one transaction; the rows copied per table.
    The file is opened as `run` would (its lock: no process may be using it)."""
    from bot.state.sqlite.store import Store as Sqlite

    source = Sqlite.open(existing(path))
    try:
        module = backend(url, "store")
        target = await module.Store.open(url)
        try:
            counts: dict[str, int] = await target.load(source.export(module.TABLES))
        finally:
            await target.close()
    finally:
        await source.close()
    return counts
