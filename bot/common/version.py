"""The installed package's version (User-Agents, --version, the build metric)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version


@cache
def package_version() -> str:
    try:
        return version("cometapi-balance-bot")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"
