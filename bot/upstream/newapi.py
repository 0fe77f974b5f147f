"""new-api / one-api and the resellers built on them (SPEC 2b): the two
OpenAI-compatible billing GETs with `Authorization: Bearer <token>`.
`hard_limit_usd` is what was granted (remaining + used) in the site's display
unit, `total_usage` what was used in hundredths of it; a `hard_limit_usd` of
100000000 or more is a token without a limit. Errors come as `{"error": …}`,
often with HTTP 200: a failed poll showing the message, never a zero balance.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Mapping
from datetime import date, datetime
from types import MappingProxyType
from typing import ClassVar

from bot.engine.forecast import DailyUse
from bot.engine.model import Account, FailureKind, Snapshot
from bot.upstream.parse import amount, error_of, json_object
from bot.upstream.transport import FetchError, NotOffered, Transport, clean_text, describe

UNLIMITED = 100_000_000  # hard_limit_usd at or above: no limit


@functools.lru_cache(maxsize=4096)
def bearer(key: str) -> Mapping[str, str]:
    """The Authorization header of a key (as secret as the key: never logged)."""
    return MappingProxyType({"Authorization": f"Bearer {key}"})


async def both(first: Awaitable[bytes], second: Awaitable[bytes]) -> tuple[bytes, bytes]:
    """Two requests at once; the first failure ends both."""
    tasks = [asyncio.ensure_future(first), asyncio.ensure_future(second)]
    try:
        return await tasks[0], await tasks[1]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class NewAPI:
    """The `newapi` provider."""

    name: ClassVar[str] = "newapi"
    default_url: ClassVar[str] = ""  # every site is its own
    keys: ClassVar[bool] = False
    used: ClassVar[bool] = True
    seeds: ClassVar[bool] = False

    async def fetch(self, account: Account, http: Transport, seconds: float) -> Snapshot:
        base = account.url.rstrip("/")
        headers = bearer(account.key)
        subscription, usage = await both(
            http.get(
                f"{base}/v1/dashboard/billing/subscription",
                seconds,
                headers=headers,
                secret=account.key,
            ),
            http.get(
                f"{base}/v1/dashboard/billing/usage", seconds, headers=headers, secret=account.key
            ),
        )
        return parse_billing(account, subscription, usage, http.now())

    async def daily(
        self, account: Account, http: Transport, seconds: float, first: date, last: date
    ) -> list[DailyUse]:
        raise NotOffered("newapi offers no daily usage")


def parse_billing(account: Account, subscription: bytes, usage: bytes, now: datetime) -> Snapshot:
    where = describe(account.url)
    try:
        granted = _figure(subscription, "hard_limit_usd", f"{where} (subscription)", account.key)
        used = _figure(usage, "total_usage", f"{where} (usage)", account.key) / 100
    except ValueError as exc:
        raise FetchError(FailureKind.BAD_RESPONSE, f"bad response from {where}: {exc}") from None
    unlimited = granted >= UNLIMITED
    return Snapshot(
        account=account.name,
        username="",
        total_quota=0.0 if unlimited else granted - used,
        total_used_quota=used,
        request_count=None,
        keys=(),
        fetched_at=now,
        currency=account.currency,
        unlimited=unlimited,
    )


def _figure(body: bytes, field: str, where: str, secret: str) -> float:
    data = json_object(body, where, secret)
    message = error_of(data)
    if message is not None:
        raise FetchError(
            FailureKind.BAD_RESPONSE, f"{where} answered: {clean_text(message, secret, 200)}"
        )
    if field not in data:
        raise ValueError(f"no {field}")
    value = amount(data[field], field)
    if value < 0:
        raise ValueError(f"{field} is negative")
    return value
