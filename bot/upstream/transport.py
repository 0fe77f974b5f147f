"""The HTTP transport every provider shares: one aiohttp session per process,
bounded time and body size, redirects followed by hand on the configured host
only, statuses mapped to typed failures, and error texts built from the status,
host and path alone: a key travels in a query string or a header, and aiohttp's
own exception texts print URLs.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from bot.common.backoff import retry_after
from bot.common.secrets import MASK, redact
from bot.common.version import package_version
from bot.engine.model import FailureKind, clean_name

MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_REDIRECTS = 3  # on the configured host only
HINT_SOURCE = 4096  # bytes of an error body read for its hint (redacted, then cut to 120)
USER_AGENT = f"balance-bot/{package_version()}"  # no project URL: there is none to name


class FetchError(Exception):
    """A poll that produced no usable data. The message is safe to show."""

    def __init__(self, kind: FailureKind, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.kind in (FailureKind.UNREACHABLE, FailureKind.RATE_LIMITED)


class NotOffered(FetchError):
    """The upstream (or provider) does not offer something optional that was asked
    for, such as CometAPI's daily_quota: no anomaly, just absent."""

    def __init__(self, reason: str) -> None:
        super().__init__(FailureKind.BAD_RESPONSE, reason)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds for one account's poll; `deadline` covers every attempt and wait."""

    attempts: int = 4
    deadline: float = 30.0
    wait_initial: float = 1.0
    wait_max: float = 8.0
    wait_jitter: float = 1.0

    @classmethod
    def for_schedule(cls, interval: float, request_timeout: float) -> RetryPolicy:
        """Retries scaled to the poll interval: a 1 s interval cannot wait 8 s between
        attempts, a 5 min one can. The deadline never exceeds 30 s (README, "Polling")."""
        return cls(
            deadline=min(30.0, max(request_timeout, 0.8 * interval)),
            wait_initial=min(1.0, interval / 10),
            wait_max=min(8.0, interval / 4),
            wait_jitter=min(1.0, interval / 10),
        )


def new_session(concurrency: int = 16) -> aiohttp.ClientSession:
    """The one session of a process for every provider and account."""
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        raise_for_status=False,
        # HTTP(S)_PROXY/NO_PROXY are honoured, looked up once per URL (_proxy_for):
        # trust_env=True looks them and ~/.netrc up in a worker thread on every request.
        trust_env=False,
    )


class Transport:
    """GETs for providers on one session; `now()` is the clock snapshots are
    stamped with."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.session = session
        self.now = clock
        self._proxies: dict[str, tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    def _proxy_for(self, url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The proxy the environment names for `url`, as aiohttp's trust_env finds it."""
        if url not in self._proxies:
            try:
                self._proxies[url] = get_env_proxy_for_url(URL(url))
            except LookupError:
                self._proxies[url] = (None, None)
        return self._proxies[url]

    async def get(
        self,
        url: str,
        seconds: float,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        secret: str = "",
    ) -> bytes:
        """One request's body; its status mapped to a FetchError. `params` and
        `headers` go with every request (a redirect's Location may drop them);
        `secret` is masked in the hint of an error body that echoes it."""
        where = describe(url)
        limits = _limits(seconds)
        proxy, proxy_auth = self._proxy_for(url)
        target = _url(url)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with self.session.get(
                    target,
                    params=params,
                    headers=headers,
                    timeout=limits,
                    proxy=proxy,
                    proxy_auth=proxy_auth,
                    allow_redirects=False,
                ) as resp:
                    status = resp.status
                    if status in (301, 302, 303, 307, 308):
                        target = _redirect(target, resp.headers.get("Location"), status, where)
                        continue
                    if status in (401, 403):
                        raise FetchError(
                            FailureKind.REJECTED, f"key rejected (HTTP {status} from {where})"
                        )
                    if status == 429:
                        wait = retry_after(resp.headers.get("Retry-After"))
                        raise FetchError(
                            FailureKind.RATE_LIMITED, f"rate limited (HTTP 429 from {where})", wait
                        )
                    if status >= 500:
                        raise FetchError(FailureKind.UNREACHABLE, f"HTTP {status} from {where}")
                    body = await _read_bounded(resp)
                    if status >= 300:
                        hint = hint_of(body, secret)
                        raise FetchError(
                            FailureKind.BAD_RESPONSE, f"HTTP {status} from {where}{hint}"
                        )
                    return body
            raise FetchError(
                FailureKind.BAD_RESPONSE, f"too many redirects ({where}): check accounts.url"
            )
        except FetchError:
            raise
        except TimeoutError:
            raise FetchError(
                FailureKind.UNREACHABLE, f"timed out after {seconds:g}s ({where})"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise FetchError(
                FailureKind.UNREACHABLE, f"cannot connect to {where}: {_os_reason(exc)}"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise FetchError(
                FailureKind.UNREACHABLE, f"connection error ({where}): {type(exc).__name__}"
            ) from None


def _redirect(url: URL, location: str | None, status: int, where: str) -> URL:
    """Where a redirect leads, if it stays on the configured host (and scheme)."""
    if not location:
        raise FetchError(FailureKind.BAD_RESPONSE, f"HTTP {status} without a Location ({where})")
    target = url.join(URL(location)).with_query(None)
    if target.origin() != url.origin():
        raise FetchError(
            FailureKind.BAD_RESPONSE,
            f"HTTP {status} from {where} redirects to another host ({target.host}); "
            "balance-bot follows redirects only on the configured host: check accounts.url",
        )
    return target


@functools.lru_cache(maxsize=4096)
def _url(url: str) -> URL:
    return URL(url)


@functools.lru_cache(maxsize=64)
def _limits(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds, connect=min(seconds, 5.0))


@functools.lru_cache(maxsize=4096)
def describe(url: str) -> str:
    """host[:port]/path: never the query string (the key) nor any userinfo."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname}{port}{parts.path}"


def _os_reason(exc: aiohttp.ClientConnectorError) -> str:
    err = exc.os_error
    return err.strerror or type(err).__name__ if err else "connection failed"


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise FetchError(FailureKind.BAD_RESPONSE, f"response too large ({declared} bytes)")
    if declared is not None and not resp.headers.get("Content-Encoding"):
        return await resp.read()  # its size is known and within bounds
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise FetchError(
                FailureKind.BAD_RESPONSE, f"response larger than {MAX_BODY_BYTES} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def hint_of(body: bytes, secret: str = "") -> str:
    """The start of a body (its first HINT_SOURCE bytes), for an error text:
    redacted first, then cut. The body is read on by the secret's length, so a
    secret that starts before the cut is masked whole, never shown in part."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    head = safe_chars(decoder.decode(body[:HINT_SOURCE], final=len(body) <= HINT_SOURCE))
    if secret and len(body) > HINT_SOURCE:
        more = body[HINT_SOURCE : HINT_SOURCE + len(secret.encode("utf-8", "replace"))]
        head = _mask_before(head, safe_chars(decoder.decode(more, final=True)), secret)
    return f": {clean_text(head, secret, 120)}"


def _mask_before(head: str, tail: str, secret: str) -> str:
    """`head` with every `secret` that starts in it masked, in `head + tail`."""
    text = head + tail
    out: list[str] = []
    pos = 0
    while (found := text.find(secret, pos)) != -1 and found < len(head):
        out += (text[pos:found], MASK)
        pos = found + len(secret)
    out.append(text[pos : len(head)])
    return "".join(out)


def safe_chars(text: str) -> str:
    """`text` with each whitespace character a space, then cleaned like a name:
    lone surrogates replaced, control, line-separator and bidi characters removed.
    One character in, at most one out: nothing is moved across a cut."""
    if text.isascii() and text.isprintable():
        return text
    return clean_name("".join(" " if c.isspace() else c for c in text))


def clean_text(text: str, secret: str, limit: int) -> str:
    """`text` from upstream on one line, cleaned like a name (README, "Chat"),
    without `secret` or anything shaped like a token, then cut to `limit`
    characters: cut after redacting, so no part of a key survives."""
    text = " ".join(safe_chars(text).split())
    if secret:
        text = text.replace(secret, MASK)
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- parsing -------------------------------------------------------------------
