"""The TOML document's sections as pydantic models: every key, its bounds and
its cross-field rules, each problem named by its TOML path."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.common import plugins
from bot.engine.kinds import Kind, kinds
from bot.engine.model import (
    Severity,
)
from bot.state.backends import SCHEMES

DEFAULT_CONFIG = "rules.toml"
CONFIG_ENV = "BALANCE_BOT_CONFIG"
# [bot] settings an image sets for every deployment; validated like the file's
STATE_ENV = "BALANCE_BOT_STATE_PATH"
ENV_OVERRIDES = {"BALANCE_BOT_HTTP_LISTEN": "http_listen", STATE_ENV: "state_path"}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_BARE_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")  # $VAR: sent literally, never meant
# after `$`, these start something meant for a shell ($VAR, ${VAR-x}, $(cmd)); "$5" is text
_SHELLISH = re.compile(r"\$[{(A-Za-z_]")
_ACCEPTED = "write ${VAR} or ${VAR:-default}"
# deeper than any real config; tomllib's recursion fails far deeper, dotted keys never
MAX_DEPTH = 32


class ConfigError(Exception):
    """The config cannot be used; `problems` are user-facing lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_duration(value: Any) -> float:
    """'30s', '5m', '2h', '1d' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as '30s', '5m', '2h', '1d' or seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    else:
        raise ValueError(
            f"must be a duration such as '30s', '5m', '2h', '1d' or seconds, not {value!r}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"must be a non-negative duration, not {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
# fnmatch translates any pattern to a valid regex, so only empty ones are rejected
Globs = list[Annotated[str, Field(min_length=1)]]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BotSection(_Section):
    interval: Duration = 300.0
    state_path: Path = Path("balance-bot.db")
    state_url: str = ""  # PostgreSQL instead (SPEC 7b)
    stale_after: int = Field(default=3, ge=1)
    request_timeout: Duration = 10.0
    http_listen: str = "127.0.0.1:9464"
    timezone: str = "UTC"
    log_format: Literal["human", "json"] = "human"
    max_concurrency: int = Field(default=16, ge=1, le=1000)
    burn_window: Duration = 86400.0
    history_days: int = Field(default=90, ge=1)
    quiet_hours: str = ""

    @field_validator("quiet_hours", "http_listen")
    @classmethod
    def _parses(cls, v: str, info: ValidationInfo) -> str:
        if v:  # "" is off; anything else must parse
            (parse_quiet_hours if info.field_name == "quiet_hours" else split_listen)(v)
        return v

    @field_validator("state_url")
    @classmethod
    def _postgres(cls, v: str) -> str:
        if v and v.partition("://")[0].lower() not in SCHEMES:
            known = " or ".join(f"{s}://" for s in SCHEMES)
            raise ValueError(
                f"must be a database URL ({known}), such as "
                "postgresql://user:password@host/database"
            )
        return v

    @model_validator(mode="after")
    def _one_state(self) -> BotSection:
        if self.state_url and "state_path" in self.model_fields_set:
            raise ValueError(
                "state_url and state_path: set only one (state_url: PostgreSQL, shared by "
                "replicas; state_path: an SQLite file)"
            )
        return self

    @field_validator("interval")
    @classmethod
    def _min_interval(cls, v: float) -> float:
        if v < 1:
            raise ValueError(f"must be at least 1s, not {v:g}s")
        return v

    @field_validator("request_timeout")
    @classmethod
    def _timeout(cls, v: float) -> float:
        if not 0 < v <= 30:
            raise ValueError(f"must be between 0s and 30s, not {v:g}s")
        return v

    @field_validator("burn_window")
    @classmethod
    def _burn_window(cls, v: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval")
        if interval is not None and v < interval:
            raise ValueError(f"must be at least interval ({interval:g}s)")
        return v

    @field_validator("history_days")
    @classmethod
    def _history(cls, v: int, info: ValidationInfo) -> int:
        window = info.data.get("burn_window")
        if window is not None and v * 86400 < window:
            raise ValueError(f"must cover burn_window ({window / 86400:g} days)")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name such as 'Europe/Berlin')"
            ) from None
        return v


def parse_quiet_hours(value: str) -> tuple[time, time]:
    """'22:00-07:00' -> (start, end): [start, end) in local time, wrapping midnight."""
    start, sep, end = value.partition("-")
    if not sep:
        raise ValueError(f"must be 'HH:MM-HH:MM' such as '22:00-07:00', not {value!r}")
    span = parse_time(start), parse_time(end)
    if span[0] == span[1]:
        raise ValueError(f"start and end are the same ({value!r}): quiet all day or never?")
    return span


def split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"must be 'host:port' (e.g. '0.0.0.0:9464') or '', not {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class AccountSection(_Section):
    name: str = Field(min_length=1)
    key: SecretStr
    url: str | None = None  # default: the provider's
    provider: str = plugins.DEFAULT_PROVIDER
    currency: str | None = None  # default USD (deepseek: USD if offered, else its first)

    @field_validator("provider")
    @classmethod
    def _provider(cls, v: str) -> str:
        try:
            plugins.load_provider(v)
        except plugins.UnknownProviderError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Z]{3}", v):
            raise ValueError(f"must be an ISO 4217 code such as USD, CNY or EUR, not {v!r}")
        return v

    @model_validator(mode="after")
    def _default_url(self) -> AccountSection:
        if self.url is None:
            default = plugins.load_provider(self.provider).default_url
            if not default:
                raise ValueError(
                    f"url: required for provider {self.provider!r} (the site's base URL, "
                    "e.g. https://api.example.com)"
                )
            object.__setattr__(self, "url", default)
        return self

    @field_validator("key")
    @classmethod
    def _key(cls, v: SecretStr) -> SecretStr:
        key = v.get_secret_value()
        if not key.strip():
            raise ValueError("must not be empty")
        if any(c.isspace() or not c.isprintable() for c in key):
            raise ValueError("must not contain spaces, newlines or control characters")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.match(r"^https?://[^/\s?#]+", v) or "?" in v or "#" in v:
            raise ValueError(f"must be an http(s) URL without a query string, not {v!r}")
        return v


@dataclass(frozen=True, slots=True)
class KindKeys:
    """The keys of one rule kind: its threshold, its recovery level and how that
    must relate to it, and the default recovery level."""

    threshold: str
    recovery: str
    rises: bool  # the recovery level is above the threshold (below, days left)
    default: Callable[[float], float]
    kind: type[Kind]


KINDS = tuple(
    KindKeys(k.config_key, k.recovery_key, not k.rising, k.default_recovery, k) for k in kinds()
)
_BY_RECOVERY = {k.recovery: k for k in KINDS}
_ONE_OF = "below (USD), below_percent, days_left_below or spend_above"


class RuleSection(_Section):
    name: str = Field(min_length=1)
    target: Literal["total", "key"]
    accounts: Globs = ["*"]
    keys: Globs = ["*"]
    exclude_keys: Globs = []
    below: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    below_percent: float | None = Field(default=None, ge=0, lt=100, allow_inf_nan=False)
    days_left_below: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    spend_above: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    recover_above: float | None = Field(default=None, allow_inf_nan=False)
    recover_above_percent: float | None = Field(default=None, le=100, allow_inf_nan=False)
    recover_above_days: float | None = Field(default=None, allow_inf_nan=False)
    recover_below: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    window: Duration | None = Field(default=None, validate_default=True)
    severity: Severity = Severity.WARNING
    for_polls: int = Field(default=1, ge=1)
    repeat: Duration | None = None
    notify: list[str] | None = None

    @field_validator(*(k.threshold for k in KINDS[1:]), mode="after")
    @classmethod
    def _one_threshold(cls, v: float | None, info: ValidationInfo) -> float | None:
        """At most one kind: a second threshold key is the error."""
        earlier = [k.threshold for k in KINDS if k.threshold in info.data]
        chosen = [k for k in earlier if info.data[k] is not None]
        if v is not None and chosen:
            raise ValueError(f"set {chosen[0]} or {info.field_name}, not both")
        return v

    @field_validator(*_BY_RECOVERY, mode="after")
    @classmethod
    def _recovery(cls, v: float | None, info: ValidationInfo) -> float | None:
        assert info.field_name is not None
        kind = _BY_RECOVERY[info.field_name]
        level = info.data.get(kind.threshold)
        if v is not None:
            if level is None and kind.threshold in info.data:
                chosen = next((k for k in KINDS if info.data.get(k.threshold) is not None), None)
                hint = f" (use {chosen.recovery} with {chosen.threshold})" if chosen else ""
                raise ValueError(f"needs {kind.threshold}{hint}")
            if level is not None and kind.rises and v <= level:
                raise ValueError(f"must be greater than {kind.threshold} ({level})")
            if level is not None and not kind.rises and v >= level:
                raise ValueError(f"must be less than {kind.threshold} ({level})")
        return v

    @field_validator("window", mode="after")
    @classmethod
    def _window(cls, v: float | None, info: ValidationInfo) -> float | None:
        if "spend_above" not in info.data:
            return v
        if info.data["spend_above"] is None:
            if v is not None:
                raise ValueError("only applies to spend_above")
            return v
        if not v:
            raise ValueError("required with spend_above (the time to sum spending over)")
        return v

    @field_validator("repeat")
    @classmethod
    def _repeat(cls, v: float | None) -> float | None:
        return v or None  # "0" means never

    @field_validator("accounts", "keys")
    @classmethod
    def _not_empty(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if not v:  # matches nothing: the rule could never fire
            every = "account" if info.field_name == "accounts" else "key"
            raise ValueError(f"must not be empty (leave it out for every {every})")
        return v

    @field_validator("keys", "exclude_keys")
    @classmethod
    def _key_only(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("target") == "total" and v != (["*"] if info.field_name == "keys" else []):
            raise ValueError('only applies to target = "key"')
        return v

    @model_validator(mode="after")
    def _default_recovery(self) -> RuleSection:
        if all(getattr(self, k.threshold) is None for k in KINDS):
            raise ValueError(f"set {_ONE_OF}")
        for kind in KINDS:
            level = getattr(self, kind.threshold)
            if level is not None and getattr(self, kind.recovery) is None:
                object.__setattr__(self, kind.recovery, kind.default(level))
        return self


class DigestSection(_Section):
    at: str
    charts: bool = False  # each account's 7-day chart after the text (6b)
    notify: list[str] | None = None

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        parse_time(v)
        return v


def parse_time(value: str) -> time:
    """'HH:MM' or 'HH:MM:SS', local time."""
    try:
        if not re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", value.strip()):
            raise ValueError(value)
        return time.fromisoformat(value.strip().zfill(5 if value.count(":") == 1 else 8))
    except ValueError:
        raise ValueError(f"must be a time such as '09:00' or '18:30:00', not {value!r}") from None


class WebSection(_Section):
    status_page: bool = False  # serve the status page at / on [bot].http_listen (6b)
    token: SecretStr | None = None  # then / and /chart/... need it

    @field_validator("token", mode="before")
    @classmethod
    def _no_token(cls, value: Any) -> Any:
        return None if value == "" else value  # "${STATUS_TOKEN:-}" left unset


class Document(_Section):
    bot: BotSection = BotSection()
    accounts: list[AccountSection] = Field(min_length=1)
    rules: list[RuleSection] = Field(min_length=1)
    digest: DigestSection | None = None
    web: WebSection = WebSection()
    notifiers: dict[str, Any] = {}

    @model_validator(mode="after")
    def _status_page_needs_a_server(self) -> Document:
        if self.web.status_page and not self.bot.http_listen:
            raise ValueError(
                'web.status_page: needs [bot].http_listen (it is ""): the page is served there'
            )
        return self
