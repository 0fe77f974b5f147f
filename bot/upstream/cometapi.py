"""CometAPI (SPEC 2): `GET <url>?key=<query key>` -> total_quota,
total_used_quota, request_count and keys[], read tolerantly (a fast typed path for
the usual body, a forgiving one for the rest); and the optional daily_quota that
seeds burn rates at start.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from sys import intern
from types import MappingProxyType
from typing import Annotated, Any, ClassVar

import msgspec

from bot.engine.forecast import DailyUse
from bot.engine.model import Account, FailureKind, KeyBalance, Snapshot, clean_name
from bot.upstream.parse import MAX_AMOUNT, MAX_NAME, json_object, number, unique_subjects
from bot.upstream.transport import FetchError, NotOffered, Transport, clean_text, describe

DEFAULT_URL = "https://query.cometapi.com/user/quota"


class CometAPI:
    """The `cometapi` provider."""

    name: ClassVar[str] = "cometapi"
    default_url: ClassVar[str] = DEFAULT_URL
    keys: ClassVar[bool] = True
    used: ClassVar[bool] = True
    seeds: ClassVar[bool] = True

    async def fetch(self, account: Account, http: Transport, seconds: float) -> Snapshot:
        body = await http.get(account.url, seconds, params=_query(account.key), secret=account.key)
        return parse_quota(account.name, body, http.now(), describe(account.url), account.key)

    async def daily(
        self, account: Account, http: Transport, seconds: float, first: date, last: date
    ) -> list[DailyUse]:
        """daily_quota for the days first..last."""
        params = {"key": account.key, "start_date": first.isoformat(), "end_date": last.isoformat()}
        try:
            body = await http.get(account.url, seconds, params=params, secret=account.key)
            return parse_daily(body, first, last)
        except FetchError as exc:
            exc.reason = clean_text(exc.reason, account.key, 300)
            raise
        except (ValueError, TypeError, KeyError, RecursionError, OverflowError) as exc:
            raise FetchError(
                FailureKind.BAD_RESPONSE, f"daily_quota unreadable ({type(exc).__name__})"
            ) from None


@functools.lru_cache(maxsize=4096)
def _query(key: str) -> Mapping[str, str]:
    return MappingProxyType({"key": key})


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


# account -> (its keys' names as last received, as shown): names are cleaned once
_names: dict[str, tuple[list[str], list[str]]] = {}
MAX_KNOWN = 100_000  # accounts remembered at most (a config holds far fewer)


def _shown(raw: list[str]) -> list[str]:
    """Key names safe to show, unique, and interned: a name is kept once however
    many polls, ledgers and layouts hold it."""
    shown = [
        n if n.isascii() and n.isprintable() and len(n) <= MAX_NAME else clean_name(n)[:MAX_NAME]
        for n in raw
    ]
    return [intern(name) for name in unique_subjects(shown)]


def _parse_usual(account: str, body: bytes, now: datetime) -> Snapshot | None:
    """The fast path of parse_quota, or None where the tolerant one must decide."""
    try:
        quota = _decode_quota(body)
    except msgspec.DecodeError:  # ValidationError included
        return None
    if quota.success is False:
        return None
    keys = quota.keys or ()
    raw = [k.name for k in keys]
    known = _names.get(account)
    if known is not None and known[0] == raw:  # the usual case: the same keys as last time
        names = known[1]
    else:
        names = _shown(raw)
        if len(_names) >= MAX_KNOWN:
            _names.clear()
        # kept as the shown names where they are the same: one string per name in memory
        _names[account] = ([n if n == r else r for r, n in zip(raw, names, strict=True)], names)
    requests = quota.request_count
    return Snapshot(
        account=account,
        username=clean_name(quota.username)[:MAX_NAME] if quota.username is not None else "",
        total_quota=quota.total_quota,
        total_used_quota=quota.total_used_quota,
        request_count=int(requests) if requests is not None else None,
        keys=tuple(  # KeyBalance(...), but faster
            [
                _tuple(KeyBalance, (n, k.remain_quota, k.used_quota))
                for n, k in zip(names, keys, strict=True)
            ]
        ),
        fetched_at=now,
    )


def _parse(account: str, body: bytes, now: datetime, where: str, secret: str) -> Snapshot:
    usual = _parse_usual(account, body, now)
    if usual is not None:
        return usual
    data = json_object(body, where, secret)
    if isinstance(data.get("data"), dict) and "total_quota" not in data:
        data = data["data"]  # tolerate an envelope {"success": true, "data": {...}}
    if data.get("success") is False or "total_quota" not in data:
        message = next(
            (str(data[k]) for k in ("message", "error", "msg") if data.get(k)), "no total_quota"
        )
        raise FetchError(
            FailureKind.BAD_RESPONSE, f"CometAPI answered: {clean_text(message, secret, 200)}"
        )
    total = number(data["total_quota"], "total_quota")
    used = number(data.get("total_used_quota", 0), "total_used_quota")
    requests = number(data.get("request_count"), "request_count", optional=True)
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
        remain = number(item.get("remain_quota"), f"keys[{i}].remain_quota")
        used = number(item.get("used_quota", 0), f"keys[{i}].used_quota")
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
        raise NotOffered("no daily_quota in the answer")
    asked = {(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}
    if not asked.intersection(daily):
        raise NotOffered(f"daily_quota lists no day from {first} to {last}")
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
            used = number(entry.get("quota_used"), "quota_used")
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
