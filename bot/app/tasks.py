"""The process's long-running tasks, and the collector and heap tuned once
start-up is over."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

from bot.app.cycle import Clock
from bot.common.logs import log_event
from bot.common.secrets import redact

logger = logging.getLogger(__name__)

GC_THRESHOLDS = (50_000, 20, 100)  # collections per allocations: gen0, then gen1/gen2 in turn


def tune_gc() -> None:
    """After start-up: the libraries' objects (python-telegram-bot, slack-sdk,
    pydantic, ...) live as long as the process, so they leave the collector's
    view (gc.freeze); a cycle makes many short-lived objects that reference
    counting frees, so the youngest generation is collected less often. The
    benchmark measures both (bench/RESULTS.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    trim_heap()


def trim_heap() -> None:
    """Hand the memory start-up freed (imports, config validation) back to the
    system: glibc keeps it otherwise, and idle RSS is what operators see."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        pass


class Tasks:
    """The long-running tasks of one process. One that ends while the process
    is not stopping is logged and kept in `dead` for /healthz."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        self.dead: dict[str, tuple[datetime, str]] = {}
        self.closing = False

    def spawn(
        self, name: str, work: Coroutine[Any, Any, Any], once: bool = False
    ) -> asyncio.Task[Any]:
        """Run `work` until the process stops; with `once`, until it is done (only
        an exception is then reported)."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._ended(t, once))
        return task

    def _ended(self, task: asyncio.Task[Any], once: bool) -> None:
        self._tasks.discard(task)
        if self.closing or task.cancelled():
            return
        error = task.exception()
        if once and error is None:
            return
        reason = redact(f"{type(error).__name__}: {error}") if error else "returned"
        self.dead[task.get_name()] = (self._clock(), reason)
        log_event(logger, "task.died", logging.ERROR, task=task.get_name(), reason=reason)

    async def aclose(self) -> None:
        self.closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


SHUTDOWN_GRACE = 10.0  # from the signal to the exit, whatever is under way


class Ending:
    """Why and by when a running App ends: a signal (`stop`), an error a restart
    must look at (`fatal`), or a replica that is no longer the active one
    (`stepped_down`); once it ends, everything still under way shares one
    deadline, SHUTDOWN_GRACE after it."""

    def __init__(self) -> None:
        self.fatal = ""
        self.stepped_down = ""
        self._halt = asyncio.Event()
        self._deadline: float | None = None  # loop time the exit is due

    def fail(self, reason: str) -> None:
        self.fatal = reason
        log_event(logger, "bot.fatal", logging.ERROR, reason=reason)
        self._halt.set()

    def step_down(self, reason: str) -> bool:
        """True the first time (the caller then stops sending)."""
        first = not self.stepped_down
        if first:
            self.stepped_down = reason
            log_event(logger, "replica.stepping_down", logging.WARNING, reason=reason)
        self._halt.set()
        return first

    async def wait(self, stop: asyncio.Event) -> None:
        """Until `stop` is set or the App ends on its own; the deadline starts then."""
        halted = asyncio.create_task(self._halt.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({halted, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for waiting in (halted, stopped):
            waiting.cancel()
        self._deadline = asyncio.get_running_loop().time() + SHUTDOWN_GRACE

    def left(self) -> float:
        """Seconds left until the exit is due (SHUTDOWN_GRACE until it ends)."""
        if self._deadline is None:
            return SHUTDOWN_GRACE
        return max(0.1, self._deadline - asyncio.get_running_loop().time())
