"""Reading a config: TOML, ${VAR} interpolation, env overrides, validation of
every section at once, and the cross-checks between sections."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from shlex import quote
from typing import Any

from pydantic import (
    ValidationError,
)

from bot.common import plugins
from bot.common.secrets import MASK, MIN_LENGTH, redact
from bot.config.sections import (
    _ACCEPTED,
    _BARE_VAR,
    _SHELLISH,
    _VAR,
    CONFIG_ENV,
    DEFAULT_CONFIG,
    ENV_OVERRIDES,
    MAX_DEPTH,
    STATE_ENV,
    ConfigError,
    Document,
    parse_duration,
)
from bot.config.values import Config, _build
from bot.engine.model import (
    globs,
)

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
    if not cfg.bot.state_url and not state.parent.exists():  # created, its folder never
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
        if key == "state_path" and bot.get("state_url"):
            continue  # the image's state file is not wanted beside a database
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
    found.extend(_mixed_currencies(data))
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


ABSOLUTE = ("below", "spend_above")  # thresholds in money: one currency per rule


def _mixed_currencies(data: dict[str, Any]) -> Problems:
    """A threshold in money over accounts of different currencies would compare
    $20 with ¥20 (SPEC 2b): an error naming the accounts and their currencies."""
    accounts, rules = data.get("accounts"), data.get("rules")
    if not isinstance(accounts, list) or not isinstance(rules, list):
        return []
    money = {
        a["name"]: a.get("currency") if isinstance(a.get("currency"), str) else "USD"
        for a in accounts
        if isinstance(a, dict) and isinstance(a.get("name"), str)
    }
    found: Problems = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        field = next((k for k in ABSOLUTE if k in rule), None)
        patterns = rule.get("accounts", ["*"])
        if field is None or not isinstance(patterns, list):
            continue
        match = globs(tuple(p for p in patterns if isinstance(p, str)))
        covered = {n: c for n, c in money.items() if match(n)}
        if len(set(covered.values())) > 1:
            spans = ", ".join(f"{n} ({c})" for n, c in covered.items())
            found.append(
                (
                    ("rules", i, field),
                    f"an amount, but the rule's accounts have different currencies: {spans}; "
                    "give each currency a rule of its own (rules.accounts)",
                )
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
