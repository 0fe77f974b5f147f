"""The plugin registries: installed notifiers and balance providers by name, from
the ``balance_bot.notifiers`` and ``balance_bot.providers`` entry-point groups.

Discovery only: nothing here imports a plugin module until it is loaded, so the
config can validate a section while knowing no plugin by name
(docs/architecture.md, "Add a notifier", "Add a provider").
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

ENTRY_POINT_GROUP = "balance_bot.notifiers"
PROVIDER_GROUP = "balance_bot.providers"

# The notifier used when no other is configured; it needs no section.
FALLBACK = "log"
# The provider of an account that names none.
DEFAULT_PROVIDER = "cometapi"


class UnknownNotifierError(LookupError):
    pass


class UnknownProviderError(LookupError):
    pass


@cache
def _group(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def available() -> dict[str, EntryPoint]:
    """Installed notifier entry points by name (loaded lazily)."""
    return _group(ENTRY_POINT_GROUP)


def load(name: str) -> Any:
    """The object the entry point `name` names (a Notifier subclass, if well made)."""
    points = available()
    if name not in points:
        raise UnknownNotifierError(f"unknown notifier (installed: {_known(points)})")
    return points[name].load()


def available_providers() -> dict[str, EntryPoint]:
    """Installed provider entry points by name (loaded lazily)."""
    return _group(PROVIDER_GROUP)


def load_provider(name: str) -> Any:
    """The object the provider entry point `name` names (a Provider class, if well made)."""
    points = available_providers()
    if name not in points:
        raise UnknownProviderError(f"unknown provider {name!r} (installed: {_known(points)})")
    return points[name].load()


def _known(points: dict[str, EntryPoint]) -> str:
    return ", ".join(sorted(points)) or "none"
