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
from collections.abc import Sequence

MASK = "***"

_PATTERNS = (
    # query strings: ?key=..., &token=...
    re.compile(r"(?i)([?&](?:key|token|access_token|api_key)=)[^&#\s'\"]+"),
    # Telegram bot tokens, also inside URLs (/bot123456:ABC-DEF/getMe)
    re.compile(r"\b(bot)?\d{6,}:[A-Za-z0-9_-]{30,}"),
    # Slack tokens
    re.compile(r"\bx(?:ox[abposre]|app)-[A-Za-z0-9-]{8,}"),
    # API keys in the sk-... form CometAPI (like OpenAI) hands out
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
    # Authorization headers
    re.compile(r"(?i)(authorization:\s*(?:bearer|bot)\s+)\S+"),
)


MIN_LENGTH = 6
INDEX_FROM = 32  # with fewer secrets, searching the text for each one is faster


class _Index:
    """The secrets by their first MIN_LENGTH characters. With one query key per
    account there can be thousands, and every log line is redacted: looking up
    each position of a line costs the same however many there are."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = secrets  # what it was built from
        self.rank = {s: i for i, s in enumerate(secrets)}
        self.by_prefix: dict[str, dict[int, set[str]]] = {}  # prefix -> length -> secrets
        for secret in secrets:
            lengths = self.by_prefix.setdefault(secret[:MIN_LENGTH], {})
            lengths.setdefault(len(secret), set()).add(secret)
        # a secret containing the mask could appear by masking another: search for each
        self.usable = not any(MASK[0] in s for s in secrets)

    def candidates(self, text: str) -> list[str]:
        """The secrets that occur in `text`, in registry order."""
        found: set[str] = set()
        for i in range(len(text) - MIN_LENGTH + 1):
            lengths = self.by_prefix.get(text[i : i + MIN_LENGTH])
            if lengths:
                for length, group in lengths.items():
                    if text[i : i + length] in group:
                        found.add(text[i : i + length])
        return sorted(found, key=self.rank.__getitem__)


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._index: _Index | None = None

    def add(self, secret: str) -> None:
        # Very short values would mask innocent text everywhere; they are too
        # weak to be real credentials, and the patterns still apply.
        if len(secret) < MIN_LENGTH:
            return
        with self._lock:
            if secret not in self._secrets:
                # longest first, so a secret containing another is masked whole
                self._secrets = tuple(sorted((*self._secrets, secret), key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._secrets = ()

    def _candidates(self, text: str) -> Sequence[str]:
        secrets, index = self._secrets, self._index
        if len(secrets) < INDEX_FROM:
            return secrets
        if index is None or index.secrets is not secrets:
            index = self._index = _Index(secrets)
        return index.candidates(text) if index.usable else secrets

    def redact(self, text: str) -> str:
        for secret in self._candidates(text):
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
