"""The `webhook` notifier: every message as one signed JSON POST (docs/notifiers.md).

The body is data, not chat text: what the message is (`kind`), its plain text,
the events it tells of, each with every field present (`null` where it does
not apply), and when this attempt was made (`sent_at`). With a `secret`,
`X-Balance-Bot-Timestamp` carries that time in unix seconds and
`X-Balance-Bot-Signature: sha256=<hex>` is the HMAC-SHA256 of "<timestamp>."
followed by the exact bytes sent (Stripe's and Slack's scheme): a receiver
refuses an old timestamp, so a captured request cannot be replayed later, and
each retry is stamped and signed anew.

The URL may carry a token in its path or query, so it is a secret like the
signing secret: both are registered for redaction, the label is the host
alone, and error texts are built from the status and the host, never from
aiohttp's exception texts (they print URLs). Redirects are not followed: a
POST must not wander to another address with its signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from pydantic import AfterValidator, SecretStr

from bot.common.backoff import retry_after
from bot.common.secrets import register
from bot.common.version import package_version
from bot.engine.model import Event, EventKind
from bot.notifiers import DeliveryError, Notifier, NotifierConfig, NotifierContext
from bot.notifiers.message import Message

logger = logging.getLogger(__name__)

VERSION = 1  # of the body's format; bumped only if a field changes meaning or goes away
REQUEST_TIMEOUT = 15.0  # one POST, connecting included
USER_AGENT = f"balance-bot/{package_version()}"  # no project URL: there is none to name
SIGNATURE_HEADER = "X-Balance-Bot-Signature"
TIMESTAMP_HEADER = "X-Balance-Bot-Timestamp"
DESTINATION = "default"
ALERT_EVENTS = frozenset({EventKind.FIRE, EventKind.REMIND, EventKind.RESOLVE})


def _http_url(value: SecretStr) -> SecretStr:
    """An http(s) URL with a host; the value itself is never shown."""
    try:
        parts = urlsplit(value.get_secret_value())
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        raise ValueError(
            "is not a valid URL (check the port, and the brackets of an IPv6 host)"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "must be an http:// or https:// URL with a host, "
            "e.g. https://ops.example.com/hooks/balance"
        )
    return value


class WebhookConfig(NotifierConfig):
    url: Annotated[SecretStr, AfterValidator(_http_url)]
    # signs each body; empty (as `${WEBHOOK_SECRET:-}` gives when unset): unsigned
    secret: SecretStr | None = None


def host_of(url: str) -> str:
    """The host and port of `url` as written, without user or password."""
    return urlsplit(url).netloc.rpartition("@")[2]


def url_secrets(url: str) -> list[str]:
    """What of `url` may be a credential: all of it, its path and query (where
    tokens live), each query value, and the password of a user:password@host."""
    parts = urlsplit(url)
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    found = [url, tail, parts.path, parts.password or ""]
    found.extend(value for _, value in parse_qsl(parts.query))
    return [s for s in dict.fromkeys(found) if s and s != "/"]


def signature(secret: str, sent_at: int, body: bytes) -> str:
    """`sha256=` and the lowercase hex HMAC of "<sent_at>.<body>": the time is
    signed with the body, so that neither can be replayed with another."""
    signed = f"{sent_at}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def stamped(payload: bytes, sent_at: int) -> bytes:
    """The body `format()` made, with `sent_at`: the time of this attempt."""
    data = json.loads(payload)
    data["sent_at"] = timestamp(datetime.fromtimestamp(sent_at, UTC))
    return json.dumps(data, ensure_ascii=False).encode()


def timestamp(when: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, to the second (a naive time is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float | None) -> float | None:
    """JSON has no infinity (days left when nothing is spent): null instead."""
    return value if value is not None and math.isfinite(value) else None


def event_data(event: Event) -> dict[str, Any]:
    """One event as the body carries it: every field, null where it does not apply
    (a data outage has no rule, severity, subject or figures)."""
    alert = event.kind in ALERT_EVENTS
    return {
        "kind": str(event.kind),
        "severity": str(event.severity) if alert else None,
        "rule": event.rule if alert else None,
        "account": event.account,
        "subject": event.subject if alert else None,
        "value": _number(event.value) if alert else None,
        "threshold": _number(event.threshold) if alert else None,
        "recover_at": _number(event.recover_at) if alert else None,
        "unit": str(event.unit) if alert else None,
        "at": timestamp(event.at),
    }


def body(message: Message) -> bytes:
    """The JSON body for `message`, as UTF-8 bytes, but for `sent_at`: each
    attempt adds it when it sends (`stamped`)."""
    data = {
        "version": VERSION,
        "kind": message.kind,
        "text": "\n".join(message.plain_lines()),
        "events": [event_data(e) for e in message.events],
    }
    return json.dumps(data, ensure_ascii=False).encode()


class WebhookNotifier(Notifier):
    Config = WebhookConfig
    config: WebhookConfig

    def __init__(self, name: str, config: WebhookConfig, context: NotifierContext) -> None:
        super().__init__(name, config, context)
        self._url = config.url.get_secret_value()
        self._secret = config.secret.get_secret_value() if config.secret else ""
        for secret in [*url_secrets(self._url), self._secret]:
            register(secret)
        self._host = host_of(self._url)
        self._session: aiohttp.ClientSession | None = None
        self.clock: Callable[[], float] = time.time  # the time of an attempt: the real one

    def destinations(self) -> Sequence[str]:
        return (DESTINATION,)

    def label(self, destination: str) -> str:
        return self._host

    def format(self, message: Message) -> list[bytes]:
        # one POST per message, however long: a receiver has no length limit to respect
        return [body(message)]

    async def send(self, destination: str, payload: bytes) -> None:
        sent_at = int(self.clock())
        payload = stamped(payload, sent_at)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self._secret:
            headers[TIMESTAMP_HEADER] = str(sent_at)
            headers[SIGNATURE_HEADER] = signature(self._secret, sent_at, payload)
        where = f"{self.name} {self._host}"
        try:
            async with self._http().post(
                self._url, data=payload, headers=headers, allow_redirects=False
            ) as response:
                status, wait = response.status, response.headers.get("Retry-After")
        except TimeoutError:
            raise DeliveryError(f"{where}: no answer within {REQUEST_TIMEOUT:g}s") from None
        except aiohttp.ClientError as exc:
            # never str(exc): aiohttp's texts carry the URL, path and query included
            why = type(exc).__name__
            if isinstance(exc, OSError) and exc.strerror:
                why += f" ({exc.strerror})"
            raise DeliveryError(f"{where}: not sent: {why}") from None
        if 200 <= status < 300:
            return None
        raise self._refused(where, status, retry_after(wait))

    def _refused(self, where: str, status: int, wait: float | None) -> DeliveryError:
        """The error for an answer other than 2xx: retried for 429 and 5xx, else for good."""
        try:
            what = f"HTTP {status} {HTTPStatus(status).phrase}"
        except ValueError:
            what = f"HTTP {status}"
        setting = f"notifiers.{self.name}.url"
        if status == 429 or status >= 500:
            return DeliveryError(f"{where}: {what}; retrying", retry_after=wait)
        if 300 <= status < 400:
            remedy = f"redirects are not followed: set {setting} to the address it redirects to"
        elif status in (401, 403):
            remedy = f"the receiver refused us: check {setting} and notifiers.{self.name}.secret"
        elif status in (404, 405, 410):
            remedy = f"nothing takes POSTs there: check {setting}"
        elif status in (400, 413, 415, 422):
            remedy = "the receiver rejected the body: it must accept balance-bot's JSON "
            remedy += "(docs/notifiers.md)"
        else:
            remedy = f"check {setting} and the receiver"
        return DeliveryError(f"{where}: {what}; {remedy}", permanent=True)

    def remedy(self, error: DeliveryError) -> str:
        if error.permanent:  # _refused's advice, after "; "
            return error.reason.partition("; ")[2] or super().remedy(error)
        if error.retry_after is None:
            return f"check that the receiver is up and notifiers.{self.name}.url"
        return super().remedy(error)

    def _http(self) -> aiohttp.ClientSession:
        """The notifier's one session, made on the running loop when first needed."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            )
        return self._session

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
