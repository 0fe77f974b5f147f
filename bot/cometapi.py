"""The upstream client: fetch(account) -> Snapshot, or a typed FetchError.

Error texts are built here from the status, the host and the path only: the
query key travels in the URL, and aiohttp's own exception texts print URLs.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import repeat
from sys import intern
from types import MappingProxyType
from typing import Annotated, Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
import stamina
from aiohttp.helpers import get_env_proxy_for_url
from msgspec.structs import astuple
from stamina.instrumentation import RetryDetails
from yarl import URL

from bot.backoff import retry_after
from bot.forecast import DailyUse
from bot.logs import log_event
from bot.metrics import package_version
from bot.model import Account, FailureKind, KeyBalance, PollFailure, Snapshot, clean_name
from bot.secrets import MASK, redact

MAX_NAME = 200  # longer names from upstream are cut: a name is no place for a novel

logger = logging.getLogger(__name__)


def _log_retry(details: RetryDetails) -> None:
    log_event(  # DEBUG: a failed poll is one poll.failed line, whatever its retries
        logger,
        "poll.retry",
        logging.DEBUG,
        reason=redact(str(details.caused_by)),
        retry=details.retry_num,
        wait=round(details.wait_for, 2),
    )


# stamina's default hooks log through "stamina" and count in the global
# Prometheus registry; ours says which failure is being retried, redacted.
stamina.instrumentation.set_on_retry_hooks([_log_retry])

MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_REDIRECTS = 3  # on the configured host only
HINT_SOURCE = 4096  # bytes of an error body read for its hint (redacted, then cut to 120)
MAX_AMOUNT = 1e15  # any figure beyond is no balance: that account's poll failed
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


class CometClient:
    """One aiohttp session for every account of one process."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        request_timeout: float,
        retry: RetryPolicy = RetryPolicy(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._session = session
        self._timeout = request_timeout
        self._retry = retry
        self._clock = clock
        self._proxies: dict[str, tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    @staticmethod
    def new_session(concurrency: int = 16) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=300)
        return aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            raise_for_status=False,
            # HTTP(S)_PROXY/NO_PROXY are honoured, looked up once per URL (_proxy_for):
            # trust_env=True looks them and ~/.netrc up in a worker thread on every request.
            trust_env=False,
        )

    def now(self) -> datetime:
        return self._clock()

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._session

    def _proxy_for(self, url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The proxy the environment names for `url`, as aiohttp's trust_env finds it."""
        if url not in self._proxies:
            try:
                self._proxies[url] = get_env_proxy_for_url(URL(url))
            except LookupError:
                self._proxies[url] = (None, None)
        return self._proxies[url]

    async def poll(self, account: Account) -> Snapshot | PollFailure:
        """Like fetch, with the failure as a value."""
        try:
            return await self.fetch(account)
        except FetchError as exc:
            return PollFailure(account.name, exc.kind, exc.reason, self._clock())

    async def fetch(self, account: Account) -> Snapshot:
        policy = self._retry
        started = time.monotonic()

        def backoff_hook(exc: Exception) -> bool | float:
            """Retry transient failures, honouring Retry-After, within the deadline."""
            if not isinstance(exc, FetchError) or not exc.transient:
                return False
            left = policy.deadline - (time.monotonic() - started)
            if exc.retry_after is not None:
                return exc.retry_after if exc.retry_after + 1.0 < left else False
            # room for the longest wait plus a worthwhile attempt
            return left > policy.wait_max + policy.wait_jitter + min(1.0, self._timeout / 2)

        try:
            try:  # the first attempt runs on its own: the retry loop costs, and most succeed
                return await self._fetch_once(account, min(self._timeout, policy.deadline))
            except FetchError as exc:
                if policy.attempts < 2 or backoff_hook(exc) is False:
                    raise
                failed: FetchError | None = exc
            async for attempt in stamina.retry_context(
                on=backoff_hook,
                attempts=policy.attempts,
                timeout=None,  # the hook enforces the deadline, waits included
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
                wait_jitter=policy.wait_jitter,
            ):
                with attempt:
                    if failed is not None:  # stamina's first attempt is the one that failed:
                        first, failed = failed, None  # its wait and log line are stamina's own
                        raise first
                    left = policy.deadline - (time.monotonic() - started)
                    return await self._fetch_once(account, min(self._timeout, max(left, 0.1)))
        except FetchError as exc:
            # the upstream may echo the key in an error body
            exc.reason = redact(_safe_chars(exc.reason).replace(account.key, MASK))
            exc.args = (exc.reason,)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch_once(self, account: Account, seconds: float) -> Snapshot:
        body = await self._get(account, seconds)
        return parse_quota(account.name, body, self._clock(), _describe(account.url), account.key)

    async def daily(self, account: Account, first: date, last: date) -> list[DailyUse]:
        """CometAPI's optional daily_quota for the days first..last, one attempt;
        raises FetchError when the upstream does not offer it or answers garbage."""
        params = {"start_date": first.isoformat(), "end_date": last.isoformat()}
        try:
            body = await self._get(account, self._timeout, params)
            return parse_daily(body, first, last)
        except FetchError as exc:
            exc.reason = clean_text(exc.reason, account.key, 300)
            raise
        except (ValueError, TypeError, KeyError, RecursionError, OverflowError) as exc:
            raise FetchError(
                FailureKind.BAD_RESPONSE, f"daily_quota unreadable ({type(exc).__name__})"
            ) from None

    async def _get(
        self, account: Account, seconds: float, params: Mapping[str, str] | None = None
    ) -> bytes:
        """One request's body; its status mapped to a FetchError."""
        where = _describe(account.url)
        limits = _limits(seconds)
        proxy, proxy_auth = self._proxy_for(account.url)
        url = _url(account.url)
        query = _query(account.key) if params is None else {"key": account.key, **params}
        try:
            for _ in range(MAX_REDIRECTS + 1):
                # Redirects are followed by hand: only on the configured host, and
                # each request carries the key again (a Location may drop it).
                async with self._session.get(
                    url,
                    params=query,
                    timeout=limits,
                    proxy=proxy,
                    proxy_auth=proxy_auth,
                    allow_redirects=False,
                ) as resp:
                    status = resp.status
                    if status in (301, 302, 303, 307, 308):
                        url = _redirect(url, resp.headers.get("Location"), status, where)
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
                        hint = _hint(body, account.key)
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


@functools.lru_cache(maxsize=4096)
def _query(key: str) -> Mapping[str, str]:
    return MappingProxyType({"key": key})


@functools.lru_cache(maxsize=64)
def _limits(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds, connect=min(seconds, 5.0))


@functools.lru_cache(maxsize=4096)
def _describe(url: str) -> str:
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


def _hint(body: bytes, secret: str = "") -> str:
    """The start of a body (its first HINT_SOURCE bytes), for an error text:
    redacted first, then cut. The body is read on by the secret's length, so a
    secret that starts before the cut is masked whole, never shown in part."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    head = _safe_chars(decoder.decode(body[:HINT_SOURCE], final=len(body) <= HINT_SOURCE))
    if secret and len(body) > HINT_SOURCE:
        more = body[HINT_SOURCE : HINT_SOURCE + len(secret.encode("utf-8", "replace"))]
        head = _mask_before(head, _safe_chars(decoder.decode(more, final=True)), secret)
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


def _safe_chars(text: str) -> str:
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
    text = " ".join(_safe_chars(text).split())
    if secret:
        text = text.replace(secret, MASK)
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- parsing -------------------------------------------------------------------


def _number(value: Any, field: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{field} is not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{field} is not a number") from None
    if not isinstance(value, int | float):
        raise ValueError(f"{field} is not a number")
    if isinstance(value, int) and abs(value) > MAX_AMOUNT:  # float() of a 400-digit int overflows
        raise ValueError(f"{field} is out of range")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{field} is not a number")
    if abs(number) > MAX_AMOUNT:
        raise ValueError(f"{field} is out of range")
    return number


def parse_quota(
    account: str, body: bytes, now: datetime, where: str = "CometAPI", secret: str = ""
) -> Snapshot:
    """Tolerant parsing of a /user/quota body (README, "Polling"). Whatever the
    body holds, the outcome is a Snapshot or a FetchError whose text has no
    `secret` in it."""
    try:
        return _parse(account, body, now, where, secret)
    except FetchError:
        raise
    except (ValueError, UnicodeError) as exc:
        raise FetchError(FailureKind.BAD_RESPONSE, f"bad response from {where}: {exc}") from None
    except (RecursionError, MemoryError, OverflowError, TypeError) as exc:
        raise FetchError(
            FailureKind.BAD_RESPONSE,
            f"bad response from {where}: unreadable JSON ({type(exc).__name__})",
        ) from None


Amount = Annotated[float, msgspec.Meta(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]


class _Key(msgspec.Struct, gc=False):
    name: str
    remain_quota: Amount
    used_quota: Amount = 0.0


class _Quota(msgspec.Struct, gc=False):
    """The usual shape of a /user/quota body, typed: decoded and checked in one
    pass. Anything else (an envelope, numbers as strings, a key without a
    name, a lone surrogate, ...) takes the tolerant path, with the same outcome."""

    total_quota: Amount
    total_used_quota: Amount = 0.0
    request_count: Amount | None = None
    username: str | None = None
    keys: list[_Key] | None = None
    success: bool | None = None


_decode_quota = msgspec.json.Decoder(_Quota).decode
_tuple = tuple.__new__


def _parse_usual(account: str, body: bytes, now: datetime) -> Snapshot | None:
    """The fast path of parse_quota, or None where the tolerant one must decide."""
    try:
        quota = _decode_quota(body)
    except msgspec.DecodeError:  # ValidationError included
        return None
    if quota.success is False:
        return None
    rows = list(map(astuple, quota.keys or ()))  # (name, remain_quota, used_quota)
    names = [row[0] for row in rows]
    shown = [
        n if n.isascii() and n.isprintable() and len(n) <= MAX_NAME else clean_name(n)[:MAX_NAME]
        for n in names
    ]
    # interned: a name is kept once however many polls, ledgers and layouts hold it
    rows = [
        (intern(name), row[1], row[2])
        for name, row in zip(unique_subjects(shown), rows, strict=True)
    ]
    requests = quota.request_count
    return Snapshot(
        account=account,
        username=clean_name(quota.username)[:MAX_NAME] if quota.username is not None else "",
        total_quota=quota.total_quota,
        total_used_quota=quota.total_used_quota,
        request_count=int(requests) if requests is not None else None,
        keys=tuple(map(_tuple, repeat(KeyBalance), rows)),  # KeyBalance(*row), but faster
        fetched_at=now,
    )


def _parse(account: str, body: bytes, now: datetime, where: str, secret: str) -> Snapshot:
    usual = _parse_usual(account, body, now)
    if usual is not None:
        return usual
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FetchError(
            FailureKind.BAD_RESPONSE, f"response from {where} is not JSON{_hint(body, secret)}"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and "total_quota" not in data:
        data = data["data"]  # tolerate an envelope {"success": true, "data": {...}}
    if not isinstance(data, dict):
        raise FetchError(FailureKind.BAD_RESPONSE, f"response from {where} is not a JSON object")
    if data.get("success") is False or "total_quota" not in data:
        message = next(
            (str(data[k]) for k in ("message", "error", "msg") if data.get(k)), "no total_quota"
        )
        raise FetchError(
            FailureKind.BAD_RESPONSE, f"CometAPI answered: {clean_text(message, secret, 200)}"
        )
    total = _number(data["total_quota"], "total_quota")
    used = _number(data.get("total_used_quota", 0), "total_used_quota")
    requests = _number(data.get("request_count"), "request_count", optional=True)
    keys = _parse_keys(data.get("keys"))
    username = data.get("username")
    return Snapshot(
        account=account,
        username=clean_name(str(username))[:MAX_NAME] if username is not None else "",
        total_quota=total,  # type: ignore[arg-type]
        total_used_quota=used,  # type: ignore[arg-type]
        request_count=int(requests) if requests is not None else None,
        keys=keys,
        fetched_at=now,
    )


def _parse_keys(raw: Any) -> tuple[KeyBalance, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("keys is not a list")
    names: list[str] = []
    figures: list[tuple[float, float]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ValueError(f"keys[{i}] is not an object")
        name = item.get("name")
        if name is None:
            name = f"key #{i + 1}"
        elif isinstance(name, int | float) and not isinstance(name, bool):
            name = str(name)
        elif not isinstance(name, str):
            raise ValueError(f"keys[{i}].name is not a string")
        names.append(clean_name(name)[:MAX_NAME])
        remain = _number(item.get("remain_quota"), f"keys[{i}].remain_quota")
        used = _number(item.get("used_quota", 0), f"keys[{i}].used_quota")
        figures.append((remain, used))  # type: ignore[arg-type]
    return tuple(
        KeyBalance(name, remain, used)
        for name, (remain, used) in zip(unique_subjects(names), figures, strict=True)
    )


def parse_daily(body: bytes, first: date, last: date) -> list[DailyUse]:
    """The complete days first..last of a body's daily_quota: {"YYYY-MM-DD":
    [{token_name, quota_used, request_count}]}. A day not listed used nothing,
    but a daily_quota that lists none of them says nothing (a rate of $0 from it
    would read as "not depleting"); anything else unexpected raises."""
    data = json.loads(body)
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        data = data["data"]
    daily = data.get("daily_quota") if isinstance(data, dict) else None
    if not isinstance(daily, dict):
        raise FetchError(FailureKind.BAD_RESPONSE, "no daily_quota in the answer")
    asked = {(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}
    if not asked.intersection(daily):
        raise FetchError(
            FailureKind.BAD_RESPONSE, f"daily_quota lists no day from {first} to {last}"
        )
    days = []
    day = first
    while day <= last:
        entries = daily.get(day.isoformat(), [])
        if not isinstance(entries, list):
            raise ValueError(f"daily_quota[{day}] is not a list")
        tokens: dict[str, float] = {}
        duplicated: set[str] = set()
        total = 0.0
        for entry in entries:
            if not isinstance(entry, dict):
                raise ValueError(f"daily_quota[{day}] holds a non-object")
            used = _number(entry.get("quota_used"), "quota_used")
            assert used is not None
            if used < 0:
                raise ValueError("quota_used is negative")
            total += used
            name = clean_name(str(entry.get("token_name", "")))[:MAX_NAME]
            if name in tokens:
                duplicated.add(name)
            tokens[name] = used
        for name in duplicated:
            del tokens[name]
        days.append(DailyUse(day, total, tokens, frozenset(duplicated)))
        day += timedelta(days=1)
    return days


def unique_subjects(names: list[str]) -> list[str]:
    """Names made unique and stable across polls: in upstream order, the second and
    later keys of a name become `name #k`, k the smallest from 2 that is no real
    key's name and not given yet (README, "How alerts behave")."""
    real = set(names)
    if len(real) == len(names):
        return names
    taken: set[str] = set()
    # per name, the k its search starts from: every smaller one is real or taken,
    # and taken only grows, so 20,000 keys of one name cost 20,000 steps, not 2e8
    next_k: dict[str, int] = {}
    out: list[str] = []
    for name in names:
        if name in taken:
            k = next_k.get(name, 2)
            while (numbered := f"{name} #{k}") in real or numbered in taken:
                k += 1
            next_k[name] = k + 1
            name = numbered
        taken.add(name)
        out.append(name)
    return out


async def poll_all(
    client: CometClient, accounts: list[Account], concurrency: int
) -> dict[str, Snapshot | PollFailure]:
    """Poll every account concurrently, at most `concurrency` at a time."""
    return {name: result async for name, result in poll_each(client, accounts, concurrency)}


async def poll_each(
    client: CometClient,
    accounts: Sequence[Account],
    concurrency: int,
    gate: asyncio.Event | None = None,
) -> AsyncIterator[tuple[str, Snapshot | PollFailure]]:
    """Every account's poll result as soon as it is in, `concurrency` polls at a
    time; while `gate` is clear no new poll starts. Leaving the loop early
    cancels the polls still under way."""
    queue: asyncio.Queue[tuple[str, Snapshot | PollFailure]] = asyncio.Queue()
    pending = iter(accounts)

    async def worker() -> None:
        for account in pending:  # shared: each account is taken by one worker
            if gate is not None and not gate.is_set():
                await gate.wait()
            try:
                result = await client.poll(account)
            except Exception as exc:  # a bug must not leave the cycle waiting forever
                logger.error(
                    "poll.crashed", exc_info=exc, extra={"fields": {"account": account.name}}
                )
                reason = f"could not poll ({type(exc).__name__}); see the log"
                result = PollFailure(account.name, FailureKind.BAD_RESPONSE, reason, client.now())
            queue.put_nowait((account.name, result))

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(accounts)))]
    try:
        for _ in range(len(accounts)):
            yield await queue.get()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
