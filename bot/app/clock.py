"""Simulated time, for `balance-bot demo`: a clock that runs `speed` simulated
seconds per real second, and the scheduler's triggers on it.

Everything of the bot that asks what time it is takes a clock (`App.clock`), so
a simulated one makes burn rates, days left, reminders, the digest and its
sparkline read as they would over days. What waits in real time stays real: the
scheduler waits the real time between two simulated fire times
(`on_clock`), and delivery retries, request timeouts and the shutdown deadline
are real seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger

Clock = Callable[[], datetime]


class SimulatedClock:
    """Starts at `start` and runs `speed` times as fast as real time."""

    def __init__(
        self, start: datetime, speed: float, real: Callable[[], float] = time.monotonic
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be above 0, not {speed}")
        self.start, self.speed = start, speed
        self._real = real
        self._origin = real()
        self._wall = datetime.now(UTC)  # the real time at the start, for the scheduler

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=(self._real() - self._origin) * self.speed)

    def elapsed(self) -> float:
        """Simulated seconds since the start."""
        return (self() - self.start).total_seconds()

    def simulated(self, real: datetime) -> datetime:
        """The simulated time at the real (wall clock) time `real`."""
        return self.start + (real - self._wall) * self.speed

    def real(self, simulated: datetime) -> datetime:
        """The real (wall clock) time at which this clock shows `simulated`."""
        return self._wall + (simulated - self.start) / self.speed


class SimulatedTrigger(BaseTrigger):
    """An APScheduler trigger whose times are on a simulated clock: `inner` is
    asked in simulated time, the scheduler is answered in real time. The
    simulated time of the fire time it gave is kept: converted back from the
    real one (microseconds, times the speed) it could fall just before itself,
    and a daily trigger would then fire at the same time again."""

    __slots__ = ("_given", "clock", "inner")

    def __init__(self, inner: BaseTrigger, clock: SimulatedClock) -> None:
        self.inner, self.clock = inner, clock
        self._given: tuple[datetime, datetime] | None = None  # (real, simulated)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        clock, given = self.clock, self._given
        previous = None
        if previous_fire_time is not None:
            exact = given is not None and given[0] == previous_fire_time
            previous = given[1] if given and exact else clock.simulated(previous_fire_time)
        due = self.inner.get_next_fire_time(previous, clock.simulated(now))
        if due is None:
            return None
        real = clock.real(due)
        if previous_fire_time is not None and real <= previous_fire_time:
            real = previous_fire_time + timedelta(microseconds=1)  # always forward
        self._given = (real, due)
        return real

    def __str__(self) -> str:
        return f"{self.inner} on simulated time x{self.clock.speed:g}"


def on_clock(trigger: BaseTrigger, clock: Clock) -> BaseTrigger:
    """`trigger` as it is on the real clock; on a simulated one, on its time."""
    return SimulatedTrigger(trigger, clock) if isinstance(clock, SimulatedClock) else trigger
