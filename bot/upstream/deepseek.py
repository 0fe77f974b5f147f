"""DeepSeek (SPEC 2b): `GET {url}/user/balance` with `Authorization: Bearer <key>`
-> `is_available` and `balance_infos[]` of {currency, total_balance, ...} with
amounts as decimal strings. The account's balance is the `total_balance` of its
currency: the configured one (absent: a failed poll naming those present), else
USD when offered, else the first entry. No used figure (one is derived from the
balance's drops) and no keys.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar

from bot.engine.forecast import DailyUse
from bot.engine.model import Account, FailureKind, Snapshot
from bot.upstream.newapi import bearer
from bot.upstream.parse import amount, error_of, json_object
from bot.upstream.transport import FetchError, NotOffered, Transport, clean_text, describe

DEFAULT_URL = "https://api.deepseek.com"


class DeepSeek:
    """The `deepseek` provider."""

    name: ClassVar[str] = "deepseek"
    default_url: ClassVar[str] = DEFAULT_URL
    keys: ClassVar[bool] = False
    used: ClassVar[bool] = False
    seeds: ClassVar[bool] = False

    async def fetch(self, account: Account, http: Transport, seconds: float) -> Snapshot:
        url = f"{account.url.rstrip('/')}/user/balance"
        body = await http.get(url, seconds, headers=bearer(account.key), secret=account.key)
        return parse_balance(account, body, http.now())

    async def daily(
        self, account: Account, http: Transport, seconds: float, first: date, last: date
    ) -> list[DailyUse]:
        raise NotOffered("deepseek offers no daily usage")


def parse_balance(account: Account, body: bytes, now: datetime) -> Snapshot:
    where = describe(f"{account.url.rstrip('/')}/user/balance")
    data = json_object(body, where, account.key)
    message = error_of(data)
    if message is not None:
        raise FetchError(
            FailureKind.BAD_RESPONSE, f"{where} answered: {clean_text(message, account.key, 200)}"
        )
    try:
        currency, total = _pick(account, data.get("balance_infos"))
        available = data.get("is_available", True)
        if not isinstance(available, bool):
            raise ValueError("is_available is not true or false")
    except ValueError as exc:
        raise FetchError(FailureKind.BAD_RESPONSE, f"bad response from {where}: {exc}") from None
    return Snapshot(
        account=account.name,
        username="",
        total_quota=total,
        total_used_quota=0.0,  # derived from the balance's drops (bot/app/history.py)
        request_count=None,
        keys=(),
        fetched_at=now,
        currency=currency,
        used_derived=True,
        available=available,
    )


def _pick(account: Account, infos: object) -> tuple[str, float]:
    """(currency, total_balance) of the account's entry in balance_infos."""
    if not isinstance(infos, list) or not infos:
        raise ValueError("no balance_infos")
    offered: dict[str, float] = {}
    for i, info in enumerate(infos):
        if not isinstance(info, dict):
            raise ValueError(f"balance_infos[{i}] is not an object")
        code = info.get("currency")
        if not isinstance(code, str) or not code.isascii() or not code.isalpha():
            raise ValueError(f"balance_infos[{i}].currency is not a currency code")
        code = code.upper()[:8]
        total = amount(info.get("total_balance"), f"balance_infos[{i}].total_balance")
        offered.setdefault(code, total)  # a currency listed twice: its first entry
    if account.currency_set:
        if account.currency not in offered:
            raise ValueError(
                f"no balance in {account.currency} (offered: {', '.join(offered)}); "
                "check accounts.currency"
            )
        return account.currency, offered[account.currency]
    if "USD" in offered:
        return "USD", offered["USD"]
    first = next(iter(offered))
    return first, offered[first]
