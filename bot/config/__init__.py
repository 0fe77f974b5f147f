"""TOML file -> validated -> plain frozen values for the rest of the program.

pydantic validates the document; everything downstream sees only `Config`,
`Settings`, `bot.engine.model.Account` and `bot.engine.model.Rule`. Every problem is
reported at once, each named by its TOML path, e.g.
``rules[1].recover_above: must be greater than below (5.0)``.
"""

from bot.config.loading import format_path, load, parse, resolve_path
from bot.config.sections import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    KINDS,
    STATE_ENV,
    AccountSection,
    BotSection,
    ConfigError,
    DigestSection,
    KindKeys,
    RuleSection,
    parse_duration,
    parse_quiet_hours,
    parse_time,
    split_listen,
)
from bot.config.values import Config, Digest, Settings, Web, build_rule
from bot.engine.model import Account, Rule

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "KINDS",
    "STATE_ENV",
    "Account",
    "AccountSection",
    "BotSection",
    "Config",
    "ConfigError",
    "Digest",
    "DigestSection",
    "KindKeys",
    "Rule",
    "RuleSection",
    "Settings",
    "Web",
    "build_rule",
    "format_path",
    "load",
    "parse",
    "parse_duration",
    "parse_quiet_hours",
    "parse_time",
    "resolve_path",
    "split_listen",
]
