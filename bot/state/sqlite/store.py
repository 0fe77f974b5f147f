"""The SQLite StateStore: one state file, owned by one process at a time (an
exclusive flock), so two bots on one file can never both send the same alert.
Each concern is its own module; the store is all of them on one connection."""

from __future__ import annotations

from bot.state.sqlite.alerts import Alerts
from bot.state.sqlite.db import PRUNE_BATCH, explain
from bot.state.sqlite.marks import Marks
from bot.state.sqlite.outbox import Outbox

__all__ = ["PRUNE_BATCH", "Store", "explain"]


class Store(Alerts, Outbox, Marks):
    """alerts (engine state, snapshots, the cycle's commit), outbox, marks
    (snoozes, acks, sent messages, meta) and history (`history`, pruning)."""
