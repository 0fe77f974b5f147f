"""What every provider's parser shares: figures read tolerantly and bounded (a
400-digit integer or 1e300 is a bad answer, never a balance), and names made
safe and unique (SPEC 2, 5)."""

from __future__ import annotations

import json
import math
from typing import Any

from bot.engine.model import FailureKind, clean_name
from bot.upstream.transport import FetchError, hint_of

MAX_NAME = 200  # longer names from upstream are cut: a name is no place for a novel
MAX_AMOUNT = 1e15  # any figure beyond is no balance: that account's poll failed


def number(value: Any, field: str, *, optional: bool = False) -> float | None:
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


def amount(value: Any, field: str) -> float:
    """A figure that must be there (see number)."""
    figure = number(value, field)
    if figure is None:  # pragma: no cover - number() returns None only when optional
        raise ValueError(f"{field} is missing")
    return figure


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


def json_object(body: bytes, where: str, secret: str = "") -> dict[str, Any]:
    """A body that must be a JSON object: else a FetchError saying what came
    (deep nesting, 1e400 or a 5,000-digit number are a bad answer, never a crash)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FetchError(
            FailureKind.BAD_RESPONSE, f"response from {where} is not JSON{hint_of(body, secret)}"
        ) from None
    except (RecursionError, MemoryError) as exc:
        raise FetchError(
            FailureKind.BAD_RESPONSE,
            f"response from {where}: unreadable JSON ({type(exc).__name__})",
        ) from None
    if not isinstance(data, dict):
        raise FetchError(FailureKind.BAD_RESPONSE, f"response from {where} is not a JSON object")
    return data


def error_of(data: dict[str, Any]) -> str | None:
    """The message of an `{"error": ...}` (or `success: false`) answer, which some
    servers send with HTTP 200; None for a body without one."""
    error = data.get("error")
    if not error and data.get("success") is not False:  # "error": null / "" / {}: none
        return None
    if isinstance(error, dict):
        error = error.get("message") or error.get("type") or error.get("code")
    if not error or not isinstance(error, str | int | float):
        error = data.get("message") or data.get("msg") or "error without a message"
    return str(error)


def name_of(value: Any, fallback: str) -> str:
    """A name from upstream, safe to show and cut; `fallback` when it has none."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        return fallback
    return clean_name(value)[:MAX_NAME]
