"""TOML file -> validated -> plain frozen values for the rest of the program.

pydantic validates the document; everything downstream sees only `Config`,
`Settings`, `bot.engine.model.Account` and `bot.engine.model.Rule`. Every problem is
reported at once, each named by its TOML path, e.g.
``rules[1].recover_above: must be greater than below (5.0)``.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from pathlib import Path
from shlex import quote
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.common import plugins
from bot.common.secrets import MASK, MIN_LENGTH, redact
from bot.engine.kinds import Kind, kinds
from bot.engine.model import (
    Account,
    Rule,
    Severity,
    Target,
    globs,
)

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
    currency: str = "USD"

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
    def _currency(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", v):
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


class Document(_Section):
    bot: BotSection = BotSection()
    accounts: list[AccountSection] = Field(min_length=1)
    rules: list[RuleSection] = Field(min_length=1)
    digest: DigestSection | None = None
    notifiers: dict[str, Any] = {}


# --- the plain values the rest of the program sees ------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """[bot]"""

    interval: float = 300.0
    state_path: Path = Path("balance-bot.db")
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


@dataclass(frozen=True, slots=True)
class Config:
    bot: Settings
    accounts: tuple[Account, ...]
    rules: tuple[Rule, ...]
    # validated sections by notifier name: each plugin's own Config model
    notifiers: Mapping[str, Any] = field(default_factory=dict)
    digest: Digest | None = None

    def secrets(self) -> list[str]:
        """Every secret value in the config, for the redaction registry."""
        found = [a.key for a in self.accounts]
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
        Account(a.name, a.key.get_secret_value(), a.url or "", a.provider, a.currency)
        for a in doc.accounts
    )
    digest = None
    if doc.digest is not None:
        notify = tuple(doc.digest.notify) if doc.digest.notify is not None else None
        digest = Digest(parse_time(doc.digest.at), notify)
    rules = tuple(build_rule(r) for r in doc.rules)
    return Config(settings, accounts, rules, dict(sections), digest)


# --- loading -----------------------------------------------------------------


def resolve_path(cli_value: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    return Path(cli_value or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load(path: Path, environ: Mapping[str, str] = os.environ) -> Config:
    """Read, interpolate and validate; raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [
                f"{path}: file not found; `balance-bot init` writes a starter config there "
                f"(the config is -c/--config FILE, else ${CONFIG_ENV}, else ./{DEFAULT_CONFIG})"
            ]
        ) from None
    except IsADirectoryError:
        inside = quote(str(path / DEFAULT_CONFIG))
        raise ConfigError(
            [f"{path}: is a folder; name the config file in it (e.g. -c {inside})"]
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, MemoryError) as exc:
        raise ConfigError([f"{path}: cannot read: {_reason(exc)}"]) from None
    cfg = parse(text, environ, source=str(path))
    state = cfg.bot.state_path
    if not environ.get(STATE_ENV) and not state.is_absolute():
        # relative to the config file, wherever the command is run from (a `check`
        # from cron must find the state of `run`); $BALANCE_BOT_STATE_PATH as given
        state = path.parent / state
        cfg = replace(cfg, bot=replace(cfg.bot, state_path=state))
    if not state.parent.exists():  # the state file is created, its folder never
        setting = f"${STATE_ENV}" if environ.get(STATE_ENV) else "state_path"
        raise ConfigError(
            [
                f"bot.state_path: folder {state.parent} does not exist; create it "
                f"(mkdir -p {quote(str(state.parent))}) or point {setting} at an existing folder"
            ]
        )
    return cfg


def parse(text: str, environ: Mapping[str, str] = os.environ, source: str = "config") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: invalid TOML: {exc}"]) from None
    except Exception as exc:  # RecursionError, ValueError (a 5,000-digit int), MemoryError...
        raise ConfigError([f"{source}: invalid TOML: {_reason(exc)}"]) from None
    if (deep := _too_deep(raw)) is not None:  # all that follows recurses
        raise ConfigError(
            [f"{format_path(deep)}: nested too deeply (more than {MAX_DEPTH} levels)"]
        )
    problems: dict[str, str] = {}
    injected: dict[str, str] = {}
    sources: dict[str, set[str]] = {}  # path -> the variables its value came from
    data = _interpolate(raw, (), environ, Interpolation(problems, injected, sources))
    for path, variable in _override(data, environ).items():
        sources.setdefault(path, set()).add(variable)
    bad_paths = set(problems)
    for secret in _literal_secrets(data):  # a key typed into the wrong field too
        injected.setdefault(secret, MASK)
    doc, sections, found = _validate(data)
    for loc, message in found:
        path = format_path(loc)
        if not any(path == p or path.startswith(p + ".") for p in bad_paths):
            problems.setdefault(path, message)
    if problems or doc is None:
        raise ConfigError(
            [
                f"{path}: {_explain(message, sources.get(path, ()), injected)}"
                for path, message in problems.items()
            ]
        )
    return _build(doc, sections)


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line for a user (no traceback, no Python advice)."""
    if isinstance(exc, RecursionError):
        return "values nested too deeply"
    if isinstance(exc, MemoryError):
        return "too large (out of memory)"
    text = " ".join(str(exc).split()).removesuffix(
        "; use sys.set_int_max_str_digits() to increase the limit"
    )
    return text or type(exc).__name__


def _too_deep(data: Any) -> tuple[Any, ...] | None:
    """The path of a value nested more than MAX_DEPTH levels, if any (iteratively:
    dotted keys such as `a.a.a...` make any depth without recursing in tomllib)."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, dict):
            items: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        if len(loc) >= MAX_DEPTH:
            return loc
        stack.extend(((*loc, k), v) for k, v in items)
    return None


SECRET_FIELDS = frozenset({"key", "token", "bot_token", "app_token", "secret", "urls"})


def _literal_secrets(data: Any) -> list[str]:
    """Every value of a secret-named field, wherever it is, to be masked in messages
    that quote another field (a key pasted into `url`, say)."""
    found: list[str] = []
    if isinstance(data, dict):
        for name, value in data.items():
            if name in SECRET_FIELDS:
                values = value if isinstance(value, list) else [value]
                found.extend(
                    v
                    for v in values
                    if isinstance(v, str) and len(v) >= MIN_LENGTH and "$" not in v
                )
            else:
                found.extend(_literal_secrets(value))
    elif isinstance(data, list):
        for value in data:
            found.extend(_literal_secrets(value))
    return found


def _override(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Apply ENV_OVERRIDES to `data`; returns the overridden paths and their variables."""
    found: dict[str, str] = {}
    bot = data.setdefault("bot", {})
    if not isinstance(bot, dict):
        return found
    for variable, key in ENV_OVERRIDES.items():
        if environ.get(variable):
            bot[key] = environ[variable]
            found[f"bot.{key}"] = variable
    return found


def _explain(message: str, variables: Iterable[str], injected: Mapping[str, str]) -> str:
    """A message may quote a bad value: show `${VAR}` instead of what the
    environment put there (it may be a token in the wrong field), and mask
    token-shaped text such as a `?key=` typed into a URL. A value that came from
    the environment names its variable."""
    for value in sorted(injected, key=len, reverse=True):
        message = message.replace(value, injected[value])
    unnamed = [v for v in sorted(variables) if v not in message]
    if unnamed:
        message += " (from " + ", ".join(f"${v}" for v in unnamed) + ")"
    return redact(message)


@dataclass(slots=True)
class Interpolation:
    """What substituting the environment found."""

    problems: dict[str, str]  # path -> problem
    injected: dict[str, str]  # each value taken from the environment -> its ${VAR}
    sources: dict[str, set[str]]  # path -> the variables its value came from


def _interpolate(
    value: Any, loc: tuple[Any, ...], env: Mapping[str, str], found: Interpolation
) -> Any:
    """Substitute ${VAR} and ${VAR:-default} (the default when VAR is unset or
    empty, as in POSIX). An unset or empty ${VAR} is a problem that names the
    variable; so is any other shell form ($VAR, ${VAR-x}, ${VAR:=x}, $(cmd), an
    unclosed ${), which would be sent literally. What the environment puts in is
    taken verbatim, `$` and all."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, k), env, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), env, found) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value
    path = format_path(loc)
    problem = _unreplaced(value)
    if problem:
        found.problems[path] = problem
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match[1], match[2]
        found.sources.setdefault(path, set()).add(name)
        if env.get(name):
            if len(env[name]) >= MIN_LENGTH:  # shorter ones are no secrets, and too common
                found.injected[env[name]] = f"${{{name}}}"
            return env[name]
        if default is not None:
            return default
        state = "empty" if name in env else "not set"
        found.problems[path] = f"environment variable {name} is {state}"
        return match[0]

    return _VAR.sub(substitute, value)


def _unreplaced(value: str) -> str | None:
    """The first `$` form in `value` that is not a valid ${VAR} or ${VAR:-default}
    (whose default holds no such form either), as a problem; None if there is none."""
    at = 0
    while (start := _SHELLISH.search(value, at)) is not None:
        i = start.start()
        token = _VAR.match(value, i)
        if token and not (token[2] and _SHELLISH.search(token[2])):
            at = token.end()
            continue
        if bare := _BARE_VAR.match(value, i):
            return (
                f"${bare[1]} is not replaced by the environment: write ${{{bare[1]}}} (with braces)"
            )
        snippet = _bracketed(value, i)
        if snippet is None:
            closing = "brace" if value[i + 1] == "{" else "parenthesis"
            return f"{_clip(value[i:])} has no closing {closing}: {_ACCEPTED}"
        hint = ""
        if value[i + 1] == "(":
            hint = " (no command substitution)"
        elif token or re.match(r"\$\{[A-Za-z_]\w*:-", snippet):
            hint = " (a default cannot hold another $ form)"
        elif dash := re.fullmatch(r"\$\{([A-Za-z_]\w*)-(.*)\}", snippet, re.DOTALL):
            hint = f" (did you mean ${{{dash[1]}:-{dash[2]}}}?)"
        return f"{_clip(snippet)} is not replaced by the environment{hint}: {_ACCEPTED}"
    return None


def _bracketed(value: str, i: int) -> str | None:
    """`${...}` or `$(...)` starting at `i`, nesting counted; None if unclosed."""
    opening = value[i + 1]
    closing = "}" if opening == "{" else ")"
    depth = 0
    for j in range(i + 1, len(value)):
        if value[j] == opening:
            depth += 1
        elif value[j] == closing:
            depth -= 1
            if depth == 0:
                return value[i : j + 1]
    return None


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


Problems = list[tuple[tuple[Any, ...], str]]


def _validate(data: dict[str, Any]) -> tuple[Document | None, dict[str, Any], Problems]:
    """The validated document (None if invalid), the validated notifier
    sections by name, and every problem found."""
    found: Problems = []
    doc = None
    try:
        doc = Document.model_validate(data)
    except ValidationError as exc:
        found.extend((err["loc"], _message(err)) for err in exc.errors())
    found.extend(_cross_checks(data))
    sections, problems = _validate_notifiers(data)
    return doc, sections, found + problems


def _message(err: Any) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see rules.example.toml)"
    if kind == "missing":
        return "required"
    return msg[0].lower() + msg[1:] if msg else kind


def _cross_checks(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    found: list[tuple[tuple[Any, ...], str]] = []
    for section in ("accounts", "rules"):
        items = data.get(section)
        if not isinstance(items, list):
            continue
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str):
                if name in seen:
                    found.append(
                        (
                            (section, i, "name"),
                            f"duplicate name {name!r} (also {section}[{seen[name]}])",
                        )
                    )
                seen.setdefault(name, i)
    found.extend(_unmatched_accounts(data))
    found.extend(_short_windows(data))
    sections, rule_list = data.get("notifiers"), data.get("rules")
    configured: dict[str, Any] = sections if isinstance(sections, dict) else {}
    rules: list[Any] = rule_list if isinstance(rule_list, list) else []
    where: list[tuple[tuple[Any, ...], Any]] = [(("rules", i), r) for i, r in enumerate(rules)]
    where.append((("digest",), data.get("digest")))
    for loc, section in where:
        names = section.get("notify") if isinstance(section, dict) else None
        if not isinstance(names, list):
            continue
        for j, entry in enumerate(names):
            if not isinstance(entry, str):
                continue
            name, _, group = entry.partition(":")
            if name not in configured and name != plugins.FALLBACK:
                have = ", ".join(sorted(configured)) or "none"
                problem = f"no notifier {name!r} is configured (configured: {have})"
                found.append(((*loc, "notify", j), problem))
            elif group:
                declared = configured.get(name)
                groups = declared.get("groups") if isinstance(declared, dict) else None
                known = sorted(groups) if isinstance(groups, dict) else []
                if group not in known:
                    have = ", ".join(known) or "none"
                    problem = f"notifier {name!r} has no group {group!r} (groups: {have})"
                    found.append(((*loc, "notify", j), problem))
    return found


def _short_windows(data: dict[str, Any]) -> Problems:
    """A spend rule's window shorter than the poll interval holds at most one sample."""
    bot, rules = data.get("bot"), data.get("rules")
    try:
        interval = parse_duration(bot.get("interval", 300.0) if isinstance(bot, dict) else 300.0)
    except ValueError:
        return []
    found: Problems = []
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        try:
            window = parse_duration(rule.get("window")) if isinstance(rule, dict) else None
        except ValueError:
            continue
        if window is not None and 0 < window < interval:
            found.append(
                (("rules", i, "window"), f"must be at least [bot].interval ({interval:g}s)")
            )
    return found


def _unmatched_accounts(data: dict[str, Any]) -> Problems:
    """A rule's account glob that matches no account could never fire: a typo."""
    accounts, rules = data.get("accounts"), data.get("rules")
    if not isinstance(accounts, list) or not isinstance(rules, list):
        return []
    names = [a["name"] for a in accounts if isinstance(a, dict) and isinstance(a.get("name"), str)]
    found: Problems = []
    for i, rule in enumerate(rules):
        patterns = rule.get("accounts") if isinstance(rule, dict) else None
        for j, pattern in enumerate(patterns if isinstance(patterns, list) else []):
            if (
                isinstance(pattern, str)
                and pattern
                and not any(globs((pattern,))(n) for n in names)
            ):
                found.append(
                    (
                        ("rules", i, "accounts", j),
                        f"matches no account (accounts: {', '.join(names)})",
                    )
                )
    return found


def _validate_notifiers(data: dict[str, Any]) -> tuple[dict[str, Any], Problems]:
    """Each [notifiers.<name>] section, validated by the plugin's own Config model."""
    sections = data.get("notifiers")
    if not isinstance(sections, dict):
        return {}, []
    valid: dict[str, Any] = {}
    found: Problems = []
    for name, section in sections.items():
        loc = ("notifiers", name)
        try:
            model = plugins.load(name).Config
        except plugins.UnknownNotifierError as exc:
            found.append((loc, str(exc)))
            continue
        try:
            valid[name] = model.model_validate(section)
        except ValidationError as exc:
            found.extend(((*loc, *err["loc"]), _message(err)) for err in exc.errors())
    return valid, found


def format_path(loc: tuple[Any, ...]) -> str:
    """('rules', 1, 'below') -> 'rules[1].below'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "config"
