"""Blocking library calls off the event loop, each under a deadline the bot keeps.

A synchronous client can hang far past its own timeouts: requests' read timeout
is per byte, so a server that sends one byte every 2 s holds a call as long as
it likes. Such a call must take nothing that others share, so it runs neither in
the loop's default pool (DNS lookups and file work use it) nor in a library's
process-wide pool: each destination has threads of its own, at most LIMIT at a
time, stuck ones included. A call past its deadline raises TimeoutError and its
thread is left behind (logged once, `<notifier>.stuck`); while all of a
destination's threads are stuck, its calls fail at once (Busy) and other
destinations go on. The threads are daemon threads, which nothing joins: a stuck
one never holds up the exit (concurrent.futures' workers are joined at exit).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from bot.common.logs import log_event

T = TypeVar("T")

logger = logging.getLogger(__name__)

LIMIT = 2  # threads per destination at a time: one stuck call still leaves one to send


class Busy(Exception):
    """Every thread of the destination is still in an earlier call: none was started."""


class BlockingCalls:
    """The threads of one notifier, counted per destination (`lane`)."""

    def __init__(self, owner: str, limit: int = LIMIT) -> None:
        self.owner = owner  # the notifier's name: its log lines are `<owner>.stuck`
        self.limit = limit
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()  # the threads count themselves out

    def _leave(self, lane: str) -> None:
        with self._lock:
            self._running[lane] -= 1

    def running(self, lane: str) -> int:
        with self._lock:
            return self._running.get(lane, 0)

    async def run(
        self, lane: str, label: str, deadline: float, fn: Callable[..., T], /, **kwargs: Any
    ) -> T:
        """`fn(**kwargs)` in a thread of `lane`; TimeoutError after `deadline`
        seconds (the thread goes on, and counts until it ends), Busy when the
        lane has no thread left. `label` names the destination in logs: never a URL."""
        with self._lock:
            if self._running.get(lane, 0) >= self.limit:
                raise Busy(f"still waiting for {self.limit} earlier sends to this destination")
            self._running[lane] = self._running.get(lane, 0) + 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        context = contextvars.copy_context()

        def work() -> None:
            if not started.set_running_or_notify_cancel():  # given up before it began
                self._leave(lane)
                return
            try:
                result: T | None = context.run(fn, **kwargs)
                error: BaseException | None = None
            except BaseException as exc:
                result, error = None, exc
            self._leave(lane)  # before the waiter hears of it: its next call may start
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, result, error)

        try:
            threading.Thread(target=work, name=f"{self.owner} {label}", daemon=True).start()
        except BaseException:
            self._leave(lane)
            raise
        try:
            return await asyncio.wait_for(future, deadline)  # cancels it: given up on
        except TimeoutError:
            log_event(
                logger,
                f"{self.owner}.stuck",
                logging.WARNING,
                destination=label,
                reason=f"no answer within {deadline:g}s; the call is left running in its thread",
                hint=f"its sends fail at once while {self.limit} such calls are under way; "
                "other destinations go on",
            )
            raise
        finally:
            started.cancel()  # a call not yet begun never begins


def _settle(future: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if future.done():  # given up on
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(cast(T, result))
