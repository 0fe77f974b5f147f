"""Plain immutable values passed between the pipeline stages.

The ground floor of the import graph: this module imports only the standard
library, and every other module may import it (docs/architecture.md).
"""

from __future__ import annotations

import fnmatch
import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple
from unicodedata import category

from bot.engine.units import Unit, days_left

if TYPE_CHECKING:
    from bot.engine.kinds import Kind

__all__ = ["Unit", "days_left"]  # re-exported: they read as part of the model


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class FailureKind(StrEnum):
    REJECTED = "rejected"  # 401/403: the key is wrong or revoked; not retried
    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"  # 5xx, timeouts, connection errors
    BAD_RESPONSE = "bad_response"  # a 2xx whose body is not a balance


class Target(StrEnum):
    TOTAL = "total"  # the account balance
    KEY = "key"  # each key's remain_quota


TOTAL = "total"  # the subject of a total rule


# --- configuration, as plain values ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    key: str = field(repr=False)  # the query key or API key: never printed
    url: str
    provider: str = "cometapi"  # how its balance is read (bot/upstream/)
    currency: str = "USD"  # ISO 4217 code of its money
    currency_set: bool = False  # the config names it (else a provider may pick one: deepseek)


@dataclass(frozen=True, slots=True)
class Rule:
    """One [[rules]] entry. What is measured and when it fires is `kind`."""

    name: str
    target: Target
    kind: Kind
    severity: Severity = Severity.WARNING
    accounts: tuple[str, ...] = ("*",)
    keys: tuple[str, ...] = ("*",)
    exclude_keys: tuple[str, ...] = ()
    for_polls: int = 1
    repeat: float | None = None  # seconds between reminders; None: never
    notify: tuple[str, ...] | None = None  # None: every configured notifier

    def matches_account(self, account: str) -> bool:
        return globs(self.accounts)(account) is not None

    def key_matcher(self) -> Callable[[str], bool]:
        """Whether a key name is in scope, with the globs compiled once for many keys."""
        include, exclude = globs(self.keys), globs(self.exclude_keys)
        return lambda key: include(key) is not None and exclude(key) is None


@functools.lru_cache(maxsize=1024)
def globs(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    """Matches a name against any of `patterns`, as fnmatchcase would, in one
    regex: the rule engine asks this for every key of every account and rule."""
    if not patterns:
        return lambda _: None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)).match


# --- what a poll brings ----------------------------------------------------------------


class KeyBalance(NamedTuple):  # a tuple: made for every key of every account on every poll
    name: str
    remain_quota: float
    used_quota: float

    @property
    def unlimited(self) -> bool:
        """CometAPI marks unlimited keys with -1 in either field (README, "How alerts behave")."""
        return self.remain_quota < 0 or self.used_quota < 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One successful poll of one account."""

    account: str
    username: str
    total_quota: float
    total_used_quota: float
    request_count: int | None
    keys: tuple[KeyBalance, ...]
    fetched_at: datetime
    currency: str = "USD"  # ISO 4217 code of every amount in it
    used_derived: bool = False  # the provider has no used figure: derived from balance drops
    available: bool = True  # False: the provider says the account cannot make API calls
    unlimited: bool = False  # no finite total (a new-api token without a limit)

    def to_dict(self) -> dict[str, Any]:
        # What asdict() gives, without its deep copy of every key: this runs
        # for every account on every poll.
        return {
            "account": self.account,
            "username": self.username,
            "total_quota": self.total_quota,
            "total_used_quota": self.total_used_quota,
            "request_count": self.request_count,
            "keys": [
                {"name": k.name, "remain_quota": k.remain_quota, "used_quota": k.used_quota}
                for k in self.keys
            ],
            "fetched_at": self.fetched_at.isoformat(),
            "currency": self.currency,
            "used_derived": self.used_derived,
            "available": self.available,
            "unlimited": self.unlimited,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            account=data["account"],
            username=data["username"],
            total_quota=data["total_quota"],
            total_used_quota=data["total_used_quota"],
            request_count=data["request_count"],
            # [name, remain, used] as stored since 0.3; {"name": ...} before
            keys=tuple(
                KeyBalance(**k) if isinstance(k, dict) else KeyBalance(*k) for k in data["keys"]
            ),
            fetched_at=datetime.fromisoformat(data["fetched_at"]),
            currency=data.get("currency", "USD"),  # stored before currencies: USD
            used_derived=data.get("used_derived", False),
            available=data.get("available", True),
            unlimited=data.get("unlimited", False),
        )


@dataclass(frozen=True, slots=True)
class PollFailure:
    """A poll that produced no usable data; `reason` is already redacted."""

    account: str
    kind: FailureKind
    reason: str
    at: datetime


PollResult = Snapshot | PollFailure


@dataclass(frozen=True, slots=True)
class Figures:
    """One figure for an account's total and for each of its limited keys; a
    subject that is missing, or None, is still gathering data."""

    total: float | None = None
    keys: Mapping[str, float | None] = field(default_factory=dict)

    def of(self, subject: str, target: Target) -> float | None:
        return self.total if target is Target.TOTAL else self.keys.get(subject)


@dataclass(frozen=True, slots=True)
class Flow:
    """What an account's history says, for the engine to compare (bot/engine/forecast.py
    computes it): burn rates in USD per day over `burn_window`, and the USD spent
    within each spend rule's window (seconds)."""

    burn: Figures = field(default_factory=Figures)
    spent: Mapping[float, Figures] = field(default_factory=dict)


# --- alert state -----------------------------------------------------------------------


class AlertKey(NamedTuple):
    rule: str
    account: str
    subject: str  # "total" or a key name


@dataclass(frozen=True, slots=True)
class AlertState:
    """An alert instance that is firing or on its way to firing.

    Subjects above their threshold have no state at all.
    """

    key: AlertKey
    firing: bool
    polls_below: int
    value: float  # last value, in the rule's unit
    fired_at: datetime | None = None
    notified_at: datetime | None = None  # last fire or reminder
    shape: str = ""  # the rule's target and kind when it was set ("" from old state files)
    announced: bool = True  # its fire went out (False while snoozed or inhibited since firing)
    held: bool = False  # snoozed or inhibited at the last poll: one message when that ends


@dataclass(frozen=True, slots=True)
class Silence:
    """A snooze: no fire or reminder until `until` for the alerts it covers, by
    `pattern` (a glob on the account, "account/subject" or the rule name) or
    exactly `alerts` (those a message announced, snoozed with its button)."""

    until: datetime
    who: str
    pattern: str = ""
    alerts: frozenset[AlertKey] = frozenset()
    id: int | None = None

    def covers(self, key: AlertKey, now: datetime) -> bool:
        if now >= self.until:
            return False
        return key in self.alerts if self.alerts else matches(self.pattern, key)


def matches(pattern: str, key: AlertKey) -> bool:
    """Whether a glob names the alert: by its account, "account/subject" or rule."""
    names = (key.account, f"{key.account}/{key.subject}", key.rule)
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)


@dataclass(frozen=True, slots=True)
class Ack:
    """An alert acknowledged: no reminders until it resolves."""

    key: AlertKey
    who: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AccountHealth:
    """Poll outcomes of one account, for stale-data alerts and /healthz."""

    account: str
    failures: int = 0
    failing_since: datetime | None = None
    unavailable: bool = False  # a "data unavailable" alert has been raised
    last_error: str = ""
    last_success: datetime | None = None


@dataclass(frozen=True, slots=True)
class EngineState:
    alerts: dict[AlertKey, AlertState] = field(default_factory=dict)
    health: dict[str, AccountHealth] = field(default_factory=dict)


# --- events ----------------------------------------------------------------------------


class EventKind(StrEnum):
    FIRE = "fire"
    REMIND = "remind"
    RESOLVE = "resolve"
    UNAVAILABLE = "unavailable"  # data unavailable after stale_after failed polls
    AVAILABLE = "available"  # data is back


class MessageKind(StrEnum):
    """What an outbox row holds."""

    ALERTS = "alerts"  # a cycle's events
    STILL_FIRING = "still_firing"  # what a destination missed: the alerts firing now
    DIGEST = "digest"  # the daily summary, rendered when it was due
    CHART = "chart"  # a picture after the digest (its PNG in the message): 6b
    TEST = "test"  # `balance-bot test-notify` (never queued)


class EventFormatError(ValueError):
    """A stored event this version cannot read (written by another version)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something a human should hear about. Alert events carry rule fields;
    data-availability events only account, reason and since.

    Stored in the outbox as `to_dict()`, which carries VERSION; fields are
    only ever added, with defaults, so older rows stay readable.
    """

    VERSION: ClassVar[int] = 3

    kind: EventKind
    account: str
    at: datetime
    severity: Severity = Severity.WARNING
    rule: str = ""
    target: str = ""  # "total" or "key"
    subject: str = ""
    unit: str = Unit.USD  # the unit of value, threshold and recover_at
    value: float | None = None
    usd: float | None = None  # the remaining amount, whatever the unit
    threshold: float | None = None
    recover_at: float | None = None
    since: datetime | None = None  # when the alert or outage began
    reason: str = ""
    notify: tuple[str, ...] = ()
    # v2: the forecast where known (USD/day; days) and a spend rule's window (s)
    rate: float | None = None
    days: float | None = None
    window: float | None = None
    gathering: bool = False  # a forecast or spend rule without enough history yet
    # v3: the ISO 4217 code of its money (rows written before read as USD)
    currency: str = "USD"

    @property
    def alert(self) -> AlertKey:
        """The alert this is about; ("", account, "") for an account's data outage."""
        return AlertKey(self.rule, self.account, self.subject)

    def to_dict(self) -> dict[str, Any]:
        # shallow, unlike asdict(): every field is immutable
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("at", "since"):
            if data[name] is not None:
                data[name] = data[name].isoformat()
        if data["days"] == math.inf:  # JSON has no infinity
            data["days"] = "inf"
        data["notify"] = list(self.notify)
        data["v"] = self.VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Raises EventFormatError for data this version cannot read."""
        data = dict(data)
        version = data.pop("v", 1)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if version > cls.VERSION or unknown:
            what = f"fields {', '.join(unknown)}" if unknown else f"version {version}"
            raise EventFormatError(f"event written by another balance-bot version ({what})")
        try:
            data["kind"] = EventKind(data["kind"])
            data["severity"] = Severity(data.get("severity", Severity.WARNING))
            data["at"] = datetime.fromisoformat(data["at"])
            if data.get("since"):
                data["since"] = datetime.fromisoformat(data["since"])
            data["notify"] = tuple(data.get("notify", ()))
            if data.get("days") == "inf":
                data["days"] = math.inf
            return cls(**data)
        except (KeyError, TypeError, ValueError) as exc:
            raise EventFormatError(f"unreadable event: {exc}") from None


# bidi formatting (embeddings, overrides, isolates, marks): a name could flip the text
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean_name(value: str) -> str:
    """A name from upstream, safe to show and store: control characters, line
    separators and bidi formatting removed (a name must not forge a line or
    flip the text), lone surrogates (legal in JSON) replaced by U+FFFD."""
    if value.isascii() and value.isprintable():
        return value
    kept = "".join(
        "\ufffd" if category(c) == "Cs" else c
        for c in value
        if category(c) not in ("Cc", "Zl", "Zp") and c not in _BIDI
    )
    return kept
