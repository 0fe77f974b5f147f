"""The plain frozen values the rest of the program sees, built from the
validated sections."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    SecretStr,
)

from bot.config.sections import KINDS, Document, RuleSection, parse_quiet_hours, parse_time
from bot.engine.model import (
    Account,
    Rule,
    Target,
)

# --- the plain values the rest of the program sees ------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """[bot]"""

    interval: float = 300.0
    state_path: Path = Path("balance-bot.db")
    state_url: str = ""  # PostgreSQL instead of the file (SPEC 7b)
    stale_after: int = 3
    request_timeout: float = 10.0
    http_listen: str = "127.0.0.1:9464"
    timezone: str = "UTC"
    log_format: str = "human"
    max_concurrency: int = 16
    burn_window: float = 86400.0
    history_days: int = 90
    quiet_hours: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def quiet(self) -> tuple[time, time] | None:
        """[start, end) of the quiet hours in local time, if any."""
        return parse_quiet_hours(self.quiet_hours) if self.quiet_hours else None


@dataclass(frozen=True, slots=True)
class Digest:
    """[digest]: a daily summary at `at`, local time."""

    at: time
    notify: tuple[str, ...] | None = None
    charts: bool = False  # each account's 7-day chart after the text


@dataclass(frozen=True, slots=True)
class Web:
    """[web]: the status page."""

    status_page: bool = False
    token: str = field(default="", repr=False)  # "" for none


@dataclass(frozen=True, slots=True)
class Config:
    bot: Settings
    accounts: tuple[Account, ...]
    rules: tuple[Rule, ...]
    # validated sections by notifier name: each plugin's own Config model
    notifiers: Mapping[str, Any] = field(default_factory=dict)
    digest: Digest | None = None
    web: Web = Web()

    def secrets(self) -> list[str]:
        """Every secret value in the config, for the redaction registry."""
        found = [*(a.key for a in self.accounts), self.web.token]
        if self.bot.state_url:
            found.append(urlsplit(self.bot.state_url).password or "")
        for section in self.notifiers.values():
            if isinstance(section, BaseModel):
                for name in type(section).model_fields:
                    value = getattr(section, name)
                    values = value if isinstance(value, list | tuple) else [value]
                    found.extend(v.get_secret_value() for v in values if isinstance(v, SecretStr))
        return [s for s in found if s]


def build_rule(section: RuleSection | Mapping[str, Any]) -> Rule:
    """One validated [[rules]] entry as the engine's plain value."""
    if not isinstance(section, RuleSection):
        section = RuleSection.model_validate(section)
    # exactly one kind's threshold is set, and its recovery level by _default_recovery
    keys = next(k for k in KINDS if getattr(section, k.threshold) is not None)
    levels = (getattr(section, k) for k in (keys.threshold, keys.recovery, *keys.kind.extra_keys))
    kind = keys.kind(*(_set(v) for v in levels))
    return Rule(
        name=section.name,
        target=Target(section.target),
        kind=kind,
        severity=section.severity,
        accounts=tuple(section.accounts),
        keys=tuple(section.keys),
        exclude_keys=tuple(section.exclude_keys),
        for_polls=section.for_polls,
        repeat=section.repeat,
        notify=tuple(section.notify) if section.notify is not None else None,
    )


def _set(value: float | None) -> float:
    assert value is not None
    return value


def _build(doc: Document, sections: Mapping[str, Any]) -> Config:
    settings = Settings(**doc.bot.model_dump())
    accounts = tuple(
        Account(
            a.name,
            a.key.get_secret_value(),
            a.url or "",
            a.provider,
            a.currency or "USD",
            a.currency is not None,
        )
        for a in doc.accounts
    )
    digest = None
    if doc.digest is not None:
        notify = tuple(doc.digest.notify) if doc.digest.notify is not None else None
        digest = Digest(parse_time(doc.digest.at), notify, doc.digest.charts)
    rules = tuple(build_rule(r) for r in doc.rules)
    token = doc.web.token.get_secret_value() if doc.web.token else ""
    web = Web(doc.web.status_page, token)
    return Config(settings, accounts, rules, dict(sections), digest, web)
