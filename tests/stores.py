"""Every StateStore backend, for the contract suite: a fixture per backend
that opens its state (the same state each time it is called: a restart)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from bot.state.protocol import StateStore
from bot.state.sqlite.store import Store

Opener = Callable[[], Awaitable[StateStore]]
BACKENDS = ["sqlite"]


@pytest.fixture
def sqlite_opener(tmp_path) -> Opener:
    path = tmp_path / "state.db"

    async def open_() -> StateStore:
        return Store.open(path)

    return open_
