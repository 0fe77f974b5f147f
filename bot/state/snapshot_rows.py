"""Each account's latest snapshot as both backends store it: a *frame* (who, the
key names, the currency and flags: JSON text that rarely changes, encoded once
per change) and its *figures* (the totals and every key's remain and used,
float64, packed on every poll): no number is written as text, and the row is
about half the size of the whole snapshot as JSON. Rows from before frames
(figures NULL, the whole snapshot as JSON in `data`) are still read."""

from __future__ import annotations

import json
import logging
import math
from array import array
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from bot.common.logs import log_event
from bot.engine.model import KeyBalance, Snapshot
from bot.state.codec import encode, snapshot_of, ts

logger = logging.getLogger(__name__)

FRAME_VERSION = 2  # of the `data` column when `figures` is set
MAX_KNOWN = 100_000  # accounts whose frame is kept encoded, at most

# account, fetched_at, data (the frame), figures
Row = tuple[str, str | None, str, bytes]


def figures(snapshot: Snapshot) -> bytes:
    """total, used, requests (NaN: none), then each key's remain and used."""
    requests = snapshot.request_count
    values = array(
        "d",
        (
            snapshot.total_quota,
            snapshot.total_used_quota,
            math.nan if requests is None else requests,
        ),
    )
    for key in snapshot.keys:
        values.append(key[1])
        values.append(key[2])
    return values.tobytes()


def frame(snapshot: Snapshot) -> str:
    return encode(
        {
            "v": FRAME_VERSION,
            "account": snapshot.account,
            "username": snapshot.username,
            "names": [k[0] for k in snapshot.keys],
            "currency": snapshot.currency,
            "used_derived": snapshot.used_derived,
            "available": snapshot.available,
            "unlimited": snapshot.unlimited,
        }
    )


def _made_of(snapshot: Snapshot) -> tuple[Any, ...]:
    """What the frame is made of, cheap to compare (key names are interned)."""
    return (
        snapshot.username,
        snapshot.currency,
        snapshot.used_derived,
        snapshot.available,
        snapshot.unlimited,
        tuple([k[0] for k in snapshot.keys]),
    )


class SnapshotRows:
    """The rows a commit writes for its snapshots, each account's frame encoded
    again only when it changed. Only an encoding is remembered, never what the
    database holds: every row is written whole."""

    def __init__(self) -> None:
        self._frames: dict[str, tuple[tuple[Any, ...], str]] = {}

    def rows(self, snapshots: Iterable[Snapshot]) -> list[Row]:
        frames, rows = self._frames, []
        for s in snapshots:
            made_of = _made_of(s)
            known = frames.get(s.account)
            if known is None or known[0] != made_of:
                if len(frames) >= MAX_KNOWN:
                    frames.clear()
                known = frames[s.account] = (made_of, frame(s))
            rows.append((s.account, ts(s.fetched_at), known[1], figures(s)))
        return rows


def read(account: str, data: str, values: bytes | None, fetched_at: str | None) -> Snapshot:
    """A stored row read back; ValueError (KeyError, TypeError) if it is damaged."""
    if values is None:
        return snapshot_of(data)  # the whole snapshot as JSON, from before frames
    head = json.loads(data)
    numbers = array("d")
    numbers.frombytes(values)
    names = head["names"]
    if len(numbers) != 3 + 2 * len(names) or not fetched_at:
        raise ValueError(f"{len(numbers)} figures for {len(names)} keys")
    requests = numbers[2]
    return Snapshot(
        account=account,
        username=str(head["username"]),
        total_quota=numbers[0],
        total_used_quota=numbers[1],
        request_count=None if math.isnan(requests) else int(requests),
        keys=tuple(
            KeyBalance(str(name), numbers[3 + 2 * i], numbers[4 + 2 * i])
            for i, name in enumerate(names)
        ),
        fetched_at=datetime.fromisoformat(fetched_at),
        currency=head.get("currency", "USD"),
        used_derived=bool(head.get("used_derived", False)),
        available=bool(head.get("available", True)),
        unlimited=bool(head.get("unlimited", False)),
    )


def read_all(rows: Iterable[Sequence[Any]], where: str) -> dict[str, Snapshot]:
    """(account, data, figures, fetched_at) rows read back. A damaged one is left
    out and said in the log: that account shows no data until its next poll."""
    found: dict[str, Snapshot] = {}
    for account, data, values, fetched_at in rows:
        try:
            found[account] = read(account, data, values and bytes(values), fetched_at)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            log_event(
                logger,
                "state.snapshot_unreadable",
                logging.WARNING,
                account=account,
                where=where,
                reason=f"{type(exc).__name__}: {exc}"[:200],
            )
    return found
