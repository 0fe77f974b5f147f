"""What must never be printed, and the logging filter that enforces it.

The first line of defence is that our own messages never contain secrets (the
client builds its error texts without the URL). This module is the second: a
registry of known secret values plus patterns for token shapes, applied to any
text before it leaves the process.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

_PATTERNS = (
    # query strings: ?key=..., &token=...
    re.compile(r"(?i)([?&](?:key|token|access_token|api_key)=)[^&#\s'\"]+"),
    # Telegram bot tokens, also inside URLs (/bot123456:ABC-DEF/getMe)
    re.compile(r"\b(bot)?\d{6,}:[A-Za-z0-9_-]{30,}"),
    # Slack tokens
    re.compile(r"\bx(?:ox[abposre]|app)-[A-Za-z0-9-]{8,}"),
    # Authorization headers
    re.compile(r"(?i)(authorization:\s*(?:bearer|bot)\s+)\S+"),
)


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, secret: str) -> None:
        # Very short values would mask innocent text everywhere; they are too
        # weak to be real credentials, and the patterns still apply.
        if len(secret) < 6:
            return
        with self._lock:
            if secret not in self._secrets:
                # longest first, so a secret containing another is masked whole
                self._secrets = tuple(sorted((*self._secrets, secret), key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._secrets = ()

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(_mask_match, text)
        return text


def _mask_match(match: re.Match[str]) -> str:
    prefix = match.group(1) if match.lastindex else ""
    return f"{prefix or ''}{MASK}"


registry = _Registry()
register = registry.add
redact = registry.redact


class RedactingFilter(logging.Filter):
    """Renders each record's message and redacts it, and its traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        return True
