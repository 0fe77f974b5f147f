"""A poll cycle as the App runs it (timed, delivery woken when it queued
something, pruning after it) and as the scheduler runs it: the first one after
the seed, the digest due once data was read, and what a failed cycle means."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bot.app.cycle import Cycle, CycleResult
from bot.app.digest import Digests
from bot.app.jobs import Jobs
from bot.app.sending import Sending
from bot.app.tasks import Tasks, trim_heap
from bot.config import Config
from bot.engine.model import Snapshot
from bot.ops.metrics import Metrics
from bot.state.types import FencedError, StoreReplacedError

logger = logging.getLogger(__name__)


class Polling:
    def __init__(
        self,
        pipeline: Cycle,
        jobs: Jobs,
        metrics: Metrics,
        sending: Sending,
        digests: Digests,
        tasks: Tasks,
        config: Callable[[], Config],
        step_down: Callable[[str], None],
        fail: Callable[[str], None],
    ) -> None:
        self.pipeline, self.jobs, self.metrics = pipeline, jobs, metrics
        self.sending, self.digests, self.tasks = sending, digests, tasks
        self._config, self._step_down, self._fail = config, step_down, fail
        self.seeding: asyncio.Task[Any] | None = None  # burn rates from past days, at start

    async def cycle(self, notify: bool = True) -> CycleResult:
        started = asyncio.get_running_loop().time()
        result = await self.pipeline.run(notify, after=self.jobs.prune)
        self.metrics.poll_duration.observe(asyncio.get_running_loop().time() - started)
        if result.queued:
            self.sending.wake()
        return result

    async def scheduled(self) -> None:
        """The scheduler's poll: a state taken over by another process stops this
        one (fenced: it steps down; replaced: it fails); any other error is
        logged and the next cycle runs."""
        seeding, self.seeding = self.seeding, None
        if seeding is not None and not seeding.done():
            # the first cycle's forecasts start from the seed, if it comes in time
            await asyncio.wait({seeding}, timeout=self._config().bot.request_timeout)
        try:
            result = await self.cycle()
            if self.pipeline.cycles_done == 1:  # start-up's garbage is gone: give it back
                trim_heap()
            read = result.committed and any(
                isinstance(r, Snapshot) for r in result.results.values()
            )
            if read and not self.digests.data_read:
                await self.digests.data_arrived()
        except asyncio.CancelledError:
            if not self.tasks.closing:
                raise
            # shutting down: the cycle was abandoned (logged as such), nothing to add
        except FencedError as exc:
            self._step_down(str(exc))
        except StoreReplacedError as exc:
            self._fail(str(exc))
        except Exception:
            logger.exception("cycle.crashed")
