"""OpenRouter (SPEC 2b): a *management* key as `Authorization: Bearer <key>`.
`GET {url}/credits` gives the total (total_credits - total_usage, used =
total_usage); `GET {url}/keys?offset=N` pages of up to 100 keys, read until one
holds fewer (at most MAX_PAGES); disabled keys are skipped, `limit: null` is
unlimited, a key's remain is `limit_remaining` and its used `usage`.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from typing import Any, ClassVar

from bot.engine.forecast import DailyUse
from bot.engine.model import Account, FailureKind, KeyBalance, Snapshot
from bot.upstream.newapi import bearer, both
from bot.upstream.parse import amount, error_of, json_object, name_of, number, unique_subjects
from bot.upstream.transport import FetchError, NotOffered, Transport, clean_text, describe

DEFAULT_URL = "https://openrouter.ai/api/v1"
PAGE = 100  # keys per page
MAX_PAGES = 100  # a listing that never ends is a bad answer, not a hang


class OpenRouter:
    """The `openrouter` provider."""

    name: ClassVar[str] = "openrouter"
    default_url: ClassVar[str] = DEFAULT_URL
    keys: ClassVar[bool] = True
    used: ClassVar[bool] = True
    seeds: ClassVar[bool] = False

    async def fetch(self, account: Account, http: Transport, seconds: float) -> Snapshot:
        base = account.url.rstrip("/")
        deadline = time.monotonic() + seconds  # the attempt's bound covers every page
        credits, first = await both(
            http.get(f"{base}/credits", seconds, headers=bearer(account.key), secret=account.key),
            _page(account, http, seconds, 0),
        )
        pages = [first]
        while _count(pages[-1], account) >= PAGE:
            if len(pages) >= MAX_PAGES:
                raise FetchError(
                    FailureKind.BAD_RESPONSE,
                    f"{describe(base + '/keys')} lists more than {MAX_PAGES} pages of keys",
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise FetchError(
                    FailureKind.UNREACHABLE,
                    f"timed out after {seconds:g}s reading {len(pages)} pages of keys "
                    f"({describe(base + '/keys')})",
                )
            pages.append(await _page(account, http, left, len(pages) * PAGE))
        return parse_openrouter(account, credits, pages, http.now())

    async def daily(
        self, account: Account, http: Transport, seconds: float, first: date, last: date
    ) -> list[DailyUse]:
        raise NotOffered("openrouter offers no daily usage")


async def _page(account: Account, http: Transport, seconds: float, offset: int) -> bytes:
    url = f"{account.url.rstrip('/')}/keys"
    params = {"offset": str(offset)}
    return await http.get(
        url, seconds, params=params, headers=bearer(account.key), secret=account.key
    )


def _data(body: bytes, where: str, secret: str) -> Any:
    data = json_object(body, where, secret)
    message = error_of(data)
    if message is not None:
        raise FetchError(
            FailureKind.BAD_RESPONSE, f"{where} answered: {clean_text(message, secret, 200)}"
        )
    if "data" not in data:
        raise FetchError(FailureKind.BAD_RESPONSE, f"bad response from {where}: no data")
    return data["data"]


def _count(body: bytes, account: Account) -> int:
    """How many keys a page holds (checked again, with the rest, when parsed)."""
    rows = _data(body, describe(f"{account.url.rstrip('/')}/keys"), account.key)
    if not isinstance(rows, list):
        raise FetchError(
            FailureKind.BAD_RESPONSE, f"bad response from {describe(account.url)}: keys not a list"
        )
    return len(rows)


def parse_openrouter(
    account: Account, credits: bytes, pages: list[bytes], now: datetime
) -> Snapshot:
    base = account.url.rstrip("/")
    where = describe(f"{base}/credits")
    try:
        data = _data(credits, where, account.key)
        if not isinstance(data, dict):
            raise ValueError("data is not an object")
        total = amount(data.get("total_credits"), "total_credits")
        used = amount(data.get("total_usage"), "total_usage")
        where = describe(f"{base}/keys")
        names: list[str] = []
        figures: list[tuple[float, float]] = []
        for page in pages:
            rows = _data(page, where, account.key)
            if not isinstance(rows, list):
                raise ValueError("data is not a list")
            for i, row in enumerate(rows):
                if not isinstance(row, dict):
                    raise ValueError(f"keys[{len(names) + i}] is not an object")
                if row.get("disabled") is True:
                    continue
                names.append(name_of(row.get("name"), "") or name_of(row.get("label"), "key"))
                figures.append(_key_figures(row))
    except ValueError as exc:
        raise FetchError(FailureKind.BAD_RESPONSE, f"bad response from {where}: {exc}") from None
    keys = tuple(
        KeyBalance(name, remain, spent)
        for name, (remain, spent) in zip(unique_subjects(names), figures, strict=True)
    )
    return Snapshot(
        account=account.name,
        username="",
        total_quota=total - used,
        total_used_quota=used,
        request_count=None,
        keys=keys,
        fetched_at=now,
        currency=account.currency,
    )


def _key_figures(row: dict[str, Any]) -> tuple[float, float]:
    """(remain, used) of a key; (-1, -1) for one without a limit (unlimited)."""
    used = amount(row.get("usage", 0), "usage")
    if row.get("limit") is None:
        return -1.0, -1.0
    number(row.get("limit"), "limit")
    remain = amount(row.get("limit_remaining"), "limit_remaining")
    return max(remain, 0.0), max(used, 0.0)
