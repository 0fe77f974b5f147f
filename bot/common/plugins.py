"""The notifier registry: installed plugins by name, from the
``balance_bot.notifiers`` entry-point group.

Discovery only: nothing here imports a notifier module until `load()` is
asked for one, so the config can validate a plugin's section while knowing
no plugin by name (docs/architecture.md, "Adding a notifier").
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

ENTRY_POINT_GROUP = "balance_bot.notifiers"

# The notifier used when no other is configured; it needs no section.
FALLBACK = "log"


class UnknownNotifierError(LookupError):
    pass


@cache
def available() -> dict[str, EntryPoint]:
    """Installed notifier entry points by name (loaded lazily)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load(name: str) -> Any:
    """The object the entry point `name` names (a Notifier subclass, if well made)."""
    points = available()
    if name not in points:
        known = ", ".join(sorted(points)) or "none"
        raise UnknownNotifierError(f"unknown notifier (installed: {known})")
    return points[name].load()
