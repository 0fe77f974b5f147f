"""When things run: the poll every `interval`, the daily digest and the end of
quiet hours, on APScheduler, with every trigger on the App's clock (a simulated
one in the demo)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.app.clock import Clock, on_clock
from bot.app.digest import DIGEST_GRACE
from bot.config import Config

Job = Callable[[], Awaitable[object]]


class Schedule:
    """The scheduler of one App, from `start` until `stop`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.scheduler: AsyncIOScheduler | None = None  # once started

    @property
    def running(self) -> bool:
        return self.scheduler is not None and self.scheduler.running

    def start(self, config: Config, poll: Job, digest: Job, quiet_end: Job) -> None:
        """The first poll now, then every interval; the daily jobs as `config` has them."""
        self._digest, self._quiet_end = digest, quiet_end
        scheduler = self.scheduler = AsyncIOScheduler(timezone=UTC)
        interval = config.bot.interval
        scheduler.add_job(
            poll,
            self._every(interval),
            id="poll",
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(interval)),
        )
        self._daily(config)
        scheduler.start()

    def follow(self, old: Config, config: Config) -> None:
        """After a reload: a new interval reschedules the poll, the daily jobs follow."""
        scheduler = self.scheduler
        if scheduler is None or not scheduler.running:
            return
        if config.bot.interval != old.bot.interval:
            scheduler.reschedule_job("poll", trigger=self._every(config.bot.interval))
        self._daily(config)

    def pause(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.pause()

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _every(self, seconds: float) -> BaseTrigger:
        return on_clock(IntervalTrigger(seconds=seconds, timezone=UTC), self.clock)

    def _at(self, at: time, config: Config) -> BaseTrigger:
        daily = CronTrigger(
            hour=at.hour, minute=at.minute, second=at.second, timezone=config.bot.zone
        )
        return on_clock(daily, self.clock)

    def _daily(self, config: Config) -> None:
        """The digest and the end of quiet hours, as `config` has them."""
        scheduler = self.scheduler
        assert scheduler is not None
        for job in ("digest", "quiet_end"):
            if scheduler.get_job(job):
                scheduler.remove_job(job)
        if config.digest is not None:
            scheduler.add_job(
                self._digest,
                self._at(config.digest.at, config),
                id="digest",
                coalesce=True,
                misfire_grace_time=int(DIGEST_GRACE.total_seconds()),
            )
        if config.bot.quiet is not None:
            scheduler.add_job(
                self._quiet_end,
                self._at(config.bot.quiet[1], config),
                id="quiet_end",
                coalesce=True,
                misfire_grace_time=None,
            )
