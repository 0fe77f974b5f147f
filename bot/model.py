"""Plain immutable values passed between the pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class FailureKind(StrEnum):
    REJECTED = "rejected"  # 401/403: the key is wrong or revoked; not retried
    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"  # 5xx, timeouts, connection errors
    BAD_RESPONSE = "bad_response"  # a 2xx whose body is not a balance


@dataclass(frozen=True, slots=True)
class KeyBalance:
    name: str
    remain_quota: float
    used_quota: float

    @property
    def unlimited(self) -> bool:
        """CometAPI marks unlimited keys with -1 in either field (SPEC section 2)."""
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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            account=data["account"],
            username=data["username"],
            total_quota=data["total_quota"],
            total_used_quota=data["total_used_quota"],
            request_count=data["request_count"],
            keys=tuple(KeyBalance(**k) for k in data["keys"]),
            fetched_at=datetime.fromisoformat(data["fetched_at"]),
        )


@dataclass(frozen=True, slots=True)
class PollFailure:
    """A poll that produced no usable data; `reason` is already redacted."""

    account: str
    kind: FailureKind
    reason: str
    at: datetime


PollResult = Snapshot | PollFailure


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


class EventKind(StrEnum):
    FIRE = "fire"
    REMIND = "remind"
    RESOLVE = "resolve"
    UNAVAILABLE = "unavailable"  # data unavailable after stale_after failed polls
    AVAILABLE = "available"  # data is back


@dataclass(frozen=True, slots=True)
class Event:
    """Something a human should hear about. Alert events carry rule fields;
    data-availability events only account, reason and since."""

    kind: EventKind
    account: str
    at: datetime
    severity: Severity = Severity.WARNING
    rule: str = ""
    target: str = ""  # "total" or "key"
    subject: str = ""
    unit: str = "usd"  # "usd" or "percent": the unit of value/threshold/recover_at
    value: float | None = None
    usd: float | None = None  # the remaining amount, whatever the unit
    threshold: float | None = None
    recover_at: float | None = None
    since: datetime | None = None  # when the alert or outage began
    reason: str = ""
    notify: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        # shallow, unlike asdict(): every field is immutable
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("at", "since"):
            if data[name] is not None:
                data[name] = data[name].isoformat()
        data["notify"] = list(self.notify)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        data = dict(data)
        data["kind"] = EventKind(data["kind"])
        data["severity"] = Severity(data["severity"])
        data["at"] = datetime.fromisoformat(data["at"])
        if data.get("since"):
            data["since"] = datetime.fromisoformat(data["since"])
        data["notify"] = tuple(data.get("notify", ()))
        return cls(**data)
