"""Log setup: one line per event on stderr, human or JSON, always redacted.

Our own code logs an event name plus fields::

    log_event(logger, "poll.failed", account="main", reason="HTTP 502")
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from bot.common.secrets import RedactingFilter

LOG_FORMATS = ("human", "json")


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"{record.levelname:<7}", record.getMessage()]
        fields = getattr(record, "fields", None) or {}
        parts.extend(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.name and not record.name.startswith("bot"):
            parts.append(f"logger={record.name}")
        line = " ".join(parts)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        for key, value in (getattr(record, "fields", None) or {}).items():
            data.setdefault(key, value)
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


# where the exceptions of expected upstream trouble come from: a network error,
# a platform's odd answer. A library logging one gets one line, no traceback.
UPSTREAM_MODULES = frozenset({"aiohttp", "httpx", "httpcore", "telegram", "slack_sdk", "json"})
MAX_LIBRARY_LINE = 300


class OneLineFilter(logging.Filter):
    """A library's record of expected upstream trouble (connection reset, timeout,
    an answer that is not JSON) becomes one line naming the exception: the
    traceback says nothing an operator can act on. Our own records keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or record.name.startswith("bot"):
            return True
        origin = type(exc).__module__.split(".")[0]
        if isinstance(exc, OSError | TimeoutError) or origin in UPSTREAM_MODULES:
            text = record.getMessage()
            if len(text) > MAX_LIBRARY_LINE:
                text = text[: MAX_LIBRARY_LINE - 1] + "…"
            record.msg, record.args = f"{text} ({type(exc).__name__}: {exc})", ()
            record.exc_info, record.exc_text = None, None
        return True


def setup_logging(fmt: str = "human", level: str = "INFO", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    handler.addFilter(OneLineFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and PTB's URLs carry the bot token.
    for noisy in (
        "httpx",
        "httpcore",
        "apscheduler",
        "telegram.ext",
        "slack_sdk",
        "stamina",
        "apprise",
        "urllib3",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # a run skipped while a slow poll is still under way is expected (the poll is
    # bounded and logs its own outcome): one line per interval would be noise
    logging.getLogger("apscheduler.scheduler").setLevel(max(logging.ERROR, root.level))
