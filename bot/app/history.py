"""What the cycle knows of history: each account's spent counters as polls come
in (its ledger), and for every window a rule or the burn rate looks back over,
the samples around the window's start, read from the state file a slice at a
time so that memory stays small however long the window (bot/state/sqlite/samples.py).
Rates and spending are computed by bot/engine/forecast.py on demand.
"""

from __future__ import annotations

import logging
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import add, itemgetter, sub

from bot.common.logs import log_event
from bot.engine.forecast import Point, spent_within
from bot.engine.model import Figures, Flow, Snapshot
from bot.state.protocol import HistoryReader as Reader
from bot.state.types import Layout, Sample

logger = logging.getLogger(__name__)
INF = float("inf")


@dataclass(slots=True)
class Ledger:
    """One account's counters after its latest poll. Its limited keys are those
    of `layout`, their figures in arrays in the layout's order."""

    account: str
    at: float
    used: float  # total_used_quota as last seen
    spent: float  # the total's spent counter
    layout: Layout | None
    key_used: array[float]  # each key's used_quota as last seen
    key_spent: array[float]  # each key's spent counter
    first: Point  # the total's first sample: where its series begins
    total: float = 0.0  # total_quota as last seen (a used figure is derived from its drops)
    # the usual poll's shape, from the last one: every key's name (None: not all
    # unique), where the limited ones are in it, and where the unlimited ones are
    shape: tuple[str, ...] | None = None
    limited: tuple[int, ...] = ()
    unlimited: tuple[int, ...] = ()

    @classmethod
    def restore(cls, sample: Sample, snapshot: Snapshot | None, first: Sample) -> Ledger:
        """The ledger as the last stored sample and snapshot left it (`first`: the
        account's oldest sample)."""
        used = {k.name: k.used_quota for k in snapshot.keys} if snapshot else {}
        layout = sample.layout
        kept = [i for i, name in enumerate(layout.names) if name in used] if layout else []
        if layout is not None and len(kept) < len(layout.names):  # keys the snapshot lacks
            names = tuple(layout.names[i] for i in kept)
            since = tuple(layout.since[i] for i in kept)
            layout = Layout(sample.account, names, since) if names else None
        return cls(
            sample.account,
            sample.at,
            sample.used,
            sample.spent,
            layout,
            array("d", [used[name] for name in layout.names] if layout else []),
            array("d", [sample.keys[i] for i in kept]),
            Point(first.at, first.spent),
            sample.total,
        )


def derive_used(ledger: Ledger | None, snapshot: Snapshot) -> Snapshot:
    """For a provider without a used figure (`used_derived`): the snapshot with one
    derived from its balance (SPEC 2b). It grows by every drop of the balance since
    the previous poll and never by a rise: a top-up is never spending. It starts at
    0 with the account's first sample."""
    if not snapshot.used_derived:
        return snapshot
    drop = max(0.0, ledger.total - snapshot.total_quota) if ledger else 0.0
    used = ledger.used + drop if ledger else 0.0
    return replace(snapshot, total_used_quota=used)


def advance(
    ledger: Ledger | None, snapshot: Snapshot, at: float, gap: float = 0.001
) -> tuple[Ledger, Sample]:
    """The counters after `snapshot`, and the sample to store. A used figure that
    grew adds to its counter; one that dropped (a reset) adds nothing; a key
    that appears (again) starts a series of its own. A sample taken `at` a time
    not after the previous one's (the clock stepped back) keeps its spending but
    is placed `gap` after it, so that samples stay in order."""
    if ledger is not None and at <= ledger.at:
        at = ledger.at + gap
    spent = ledger.spent + max(0.0, snapshot.total_used_quota - ledger.used) if ledger else 0.0
    usual = _usual(ledger, snapshot) if ledger is not None else None
    layout, key_used, key_spent, shape, limited, unlimited = usual or _unusual(ledger, snapshot, at)
    sample = Sample(
        snapshot.account,
        at,
        snapshot.total_quota,
        snapshot.total_used_quota,
        snapshot.request_count,
        spent,
        layout,
        key_spent,
    )
    first = ledger.first if ledger else Point(at, spent)
    ledger = Ledger(
        snapshot.account,
        at,
        snapshot.total_used_quota,
        spent,
        layout,
        key_used,
        key_spent,
        first,
        snapshot.total_quota,
        shape,
        limited,
        unlimited,
    )
    return ledger, sample


_name, _remain, _used = itemgetter(0), itemgetter(1), itemgetter(2)


Shaped = tuple[Layout | None, array, array, tuple[str, ...] | None, tuple, tuple]
# what a poll leaves in the ledger: layout, key used and spent figures, shape, and
# where the limited and the unlimited keys are in it


def _usual(ledger: Ledger, snapshot: Snapshot) -> Shaped | None:
    """The usual poll: the same keys as the last one, in the same order, each
    limited or unlimited as it was, no counter reset. The counters advance over
    the figures' arrays (C-level maps, no per-key objects), the rest is the
    ledger's; None for any other poll."""
    keys, shape = snapshot.keys, ledger.shape
    if shape is None or len(keys) != len(shape) or tuple(map(_name, keys)) != shape:
        return None
    for i in ledger.unlimited:
        if keys[i][1] >= 0 and keys[i][2] >= 0:
            return None  # a key turned limited
    picked = [keys[i] for i in ledger.limited]
    used = list(map(_used, picked))
    grown = list(map(sub, used, ledger.key_used))
    if picked and (min(grown) < 0 or min(used) < 0 or min(map(_remain, picked)) < 0):
        return None  # a reset, or a key turned unlimited
    spent = array("d", list(map(add, ledger.key_spent, grown)))
    return ledger.layout, array("d", used), spent, shape, ledger.limited, ledger.unlimited


def _unusual(ledger: Ledger | None, snapshot: Snapshot, at: float) -> Shaped:
    """Any poll, the long way: each limited key found by name in the ledger (or a
    series of its own from `at`); the layout, the figures and the poll's shape."""
    old = ledger.layout if ledger else None
    index = old.index if old else {}
    names: list[str] = []
    seen: set[str] = set()
    since: list[float] = []
    key_used, key_spent = array("d"), array("d")
    limited: list[int] = []
    unlimited: list[int] = []
    for position, (name, remain, used) in enumerate(snapshot.keys):
        if remain < 0 or used < 0:
            unlimited.append(position)  # unlimited keys have no rate
            continue
        if name in seen:
            continue
        seen.add(name)
        i = index.get(name)
        if i is None or ledger is None:
            key_spent.append(0.0)
            since.append(at)
        else:
            before = ledger.key_used[i]
            counted = ledger.key_spent[i]
            key_spent.append(counted + (used - before) if used > before else counted)
            since.append(old.since[i] if old else at)
        names.append(name)
        key_used.append(used)
        limited.append(position)
    layout = old
    # the same names as before are the same series (a key that came back since
    # has a new name list in between), so their start times need no comparing
    if layout is None or layout.names != tuple(names):
        layout = Layout(snapshot.account, tuple(names), tuple(since)) if names else None
    every = tuple(map(_name, snapshot.keys))
    shape = every if len(set(every)) == len(every) else None
    return layout, key_used, key_spent, shape, tuple(limited), tuple(unlimited)


class Window:
    """The samples around `now - length` for every account: the newest at or
    before the window start (the baseline) and those after it, loaded ahead a
    slice at a time."""

    def __init__(self, length: float, reader: Reader, slice_: float) -> None:
        self.length = length
        self._reader = reader
        self._slice = slice_
        self.base: dict[str, Sample] = {}
        self.ahead: dict[str, deque[Sample]] = {}
        self._loaded_to = float("-inf")  # every stored sample up to here is in base or ahead
        self._beyond: dict[str, Sample] = {}  # after a gap in one account's samples

    async def advance(self, now: float, committed_to: float) -> None:
        """Move the window start to `now - length`; `committed_to`: the newest
        time the state file has samples for."""
        start = now - self.length
        ahead_to = start + self._slice
        if self._loaded_to < start:  # first use, or the bot was down: start afresh
            self.base = await self._reader.newest_before(start)
            self.ahead = {}
            self._loaded_to = start
            after = await self._reader.first_time_after(start)  # across a gap in the samples
            ahead_to = max(ahead_to, (after or start) + self._slice)
        if self._loaded_to < min(committed_to, ahead_to - self._slice / 2):
            upto = min(committed_to, ahead_to)
            for sample in await self._reader.between(self._loaded_to, upto):
                self.ahead.setdefault(sample.account, deque()).append(sample)
            self._loaded_to = max(self._loaded_to, upto)
        for account, queue in self.ahead.items():
            while queue and queue[0].at <= start:
                self.base[account] = queue.popleft()

    def points(self, account: str, subject: str | None, since: float, latest: float) -> list[Point]:
        """The subject's points around the window start (its baseline, then the
        first sample after): `subject` None for the total. `latest`: when the
        account's newest sample was taken."""
        found: list[Point] = []
        queue = self.ahead.get(account)
        if not queue and latest > self._loaded_to:
            beyond = self._beyond.get(account)  # read by ready()
            queue = deque([beyond]) if beyond and beyond.at > self._loaded_to else None
        candidates = [self.base.get(account), *_first(queue, subject, since)]
        for sample in candidates:
            if sample is None or sample.at < since:
                continue
            value = sample.spent if subject is None else sample.key_spent(subject, since)
            if value is not None:
                found.append(Point(sample.at, value))
        return found

    async def ready(self, account: str, latest: float) -> None:
        """Read what points() needs beyond the loaded samples: the account's first
        sample after the window start when none is loaded yet, as it polled again
        after a gap in its samples (the bot was down, or its polls failed) that
        reaches past what the window has loaded. `latest`: as for points()."""
        if self.ahead.get(account) or latest <= self._loaded_to:
            return
        sample = self._beyond.get(account)
        if sample is None or sample.at <= self._loaded_to:
            found = await self._reader.first_after(account, self._loaded_to)
            if found is None:  # this poll's sample, not committed yet
                self._beyond.pop(account, None)
            else:
                self._beyond[account] = found


def _first(queue: deque[Sample] | None, subject: str | None, since: float) -> Iterator[Sample]:
    """The first sample in `queue` that holds the subject's series."""
    for sample in queue or ():
        if subject is None or sample.key_spent(subject, since) is not None:
            yield sample
            return


class Spending(Mapping[str, float | None]):
    """USD per day (burn) or USD spent (spend rules) of each of an account's keys
    over one window, computed when first asked for: a cycle asks only for the
    keys a rule or a message needs."""

    def __init__(self, window: Window, ledger: Ledger, now: float, per_day: bool) -> None:
        self._window, self._ledger, self._now, self._per_day = window, ledger, now, per_day
        self._cache: dict[str, float | None] = {}

    def total(self) -> float | None:
        first = self._ledger.first
        return self._figure(None, first.at, self._ledger.spent, first.spent)

    def __getitem__(self, name: str) -> float | None:
        if name not in self._cache:
            layout = self._ledger.layout
            i = layout.index.get(name) if layout else None
            if i is None or layout is None:
                raise KeyError(name)
            self._cache[name] = self._figure(name, layout.since[i], self._ledger.key_spent[i])
        return self._cache[name]

    def _figure(
        self, subject: str | None, since: float, spent_now: float, spent_then: float = 0.0
    ) -> float | None:
        """`since`: when the subject's series began, its counter then `spent_then`."""
        window, ledger = self._window, self._ledger
        now_point = Point(ledger.at, spent_now)
        if since > self._now - window.length:  # the series began inside the window
            points = [Point(since, spent_then), now_point]
        else:
            points = [*window.points(ledger.account, subject, since, ledger.at), now_point]
        spend = spent_within(points, self._now, window.length)
        if spend is None:
            return None
        return spend.per_day if self._per_day else spend.amount

    def __iter__(self) -> Iterator[str]:
        layout = self._ledger.layout
        return iter(layout.names if layout else ())

    def __len__(self) -> int:
        layout = self._ledger.layout
        return len(layout.names) if layout else 0


@dataclass
class History:
    """Ledgers and windows of every account, and what they say (a Flow)."""

    reader: Reader
    burn_window: float
    spend_windows: Iterable[float]
    interval: float
    seeds: dict[str, Figures] = field(default_factory=dict)  # from daily_quota, by account
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    committed_to: float = float("-inf")
    _newest: float | None = field(default=None, init=False)  # see _newest_at
    _behind: bool = field(default=False, init=False)  # the clock was found behind the samples

    def __post_init__(self) -> None:
        lengths = {self.burn_window, *self.spend_windows}
        self.windows = {
            length: Window(length, self.reader, max(4 * self.interval, min(length / 8, 3600.0)))
            for length in lengths
        }

    async def restore(self, snapshots: Mapping[str, Snapshot], now: datetime) -> None:
        """The ledgers as the state file left them."""
        firsts = await self.reader.first(snapshots)
        for account, sample in (await self.reader.last(snapshots)).items():
            self.ledgers[account] = Ledger.restore(sample, snapshots.get(account), firsts[account])
        self._newest = None
        self.committed_to = self._time(now)

    def take_over(self, old: History) -> None:
        """What a reload keeps of the history before it: the ledgers, the seeds and
        where its timeline stands."""
        self.ledgers, self.seeds, self.committed_to = old.ledgers, old.seeds, old.committed_to
        self._behind = old._behind

    def derive_used(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot with its used figure derived, where its provider has none."""
        return derive_used(self.ledgers.get(snapshot.account), snapshot)

    def record(self, snapshot: Snapshot) -> Sample:
        """Advance the account's counters with a poll; the sample to store. A poll
        stamped no later than the account's previous one (the clock stepped back)
        is placed a poll interval after it: polls come every interval."""
        ledger = self.ledgers.get(snapshot.account)
        at = snapshot.fetched_at.timestamp()
        self.ledgers[snapshot.account], sample = advance(ledger, snapshot, at, self.interval)
        self._newest = max(self._newest_at(), sample.at)
        return sample

    def committed(self, samples: Iterable[Sample], now: datetime) -> None:
        newest = max((s.at for s in samples), default=self.committed_to)
        self.committed_to = max(self.committed_to, newest, now.timestamp())

    async def advance(self, now: datetime) -> None:
        at = self._time(now)
        for window in self.windows.values():
            await window.advance(at, self.committed_to)

    def _newest_at(self) -> float:
        """When the newest sample of any account was taken."""
        if self._newest is None:  # after restore, or a reload that handed over the ledgers
            self._newest = max((ledger.at for ledger in self.ledgers.values()), default=-INF)
        return self._newest

    def _time(self, now: datetime) -> float:
        """`now` on the samples' timeline: never before the newest sample. Once
        the clock has stepped back, windows end at the newest sample rather
        than hours before it (a sample "in the future" would count toward the
        spending but not the span); samples then come a poll interval apart
        until the clock passes them again. Said once in the log per step."""
        at, newest = now.timestamp(), self._newest_at()
        if at >= newest:
            self._behind = False
            return at
        if not self._behind:
            self._behind = True
            log_event(
                logger,
                "history.clock_behind",
                logging.WARNING,
                seconds=round(newest - at),
                detail="the newest sample is taken as now; the clock stepped back",
            )
        return newest

    async def flow(self, account: str, now: datetime) -> Flow:
        """What the account's history says at `now`; the figures are computed
        when first asked for (from what this reads ahead)."""
        ledger = self.ledgers.get(account)
        if ledger is None:
            return Flow()
        at = self._time(now)
        for window in self.windows.values():
            await window.ready(account, ledger.at)
        burn = Spending(self.windows[self.burn_window], ledger, at, per_day=True)
        seed = self.seeds.get(account)
        total = burn.total()
        if total is None and seed is not None:
            total = seed.total  # seeded until the live samples span a quarter of the window
        spent = {
            length: _figures(Spending(window, ledger, at, per_day=False))
            for length, window in self.windows.items()
            if length != self.burn_window or length in set(self.spend_windows)
        }
        return Flow(Figures(total, _Seeded(burn, seed)), spent)


def _figures(spending: Spending) -> Figures:
    return Figures(spending.total(), spending)


class _Seeded(Mapping[str, float | None]):
    """Live key rates, and seeded ones while the live ones are still gathering."""

    def __init__(self, live: Spending, seed: Figures | None) -> None:
        self._live, self._seed = live, seed

    def __getitem__(self, name: str) -> float | None:
        live = self._live[name]
        return live if live is not None or self._seed is None else self._seed.keys.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._live)

    def __len__(self) -> int:
        return len(self._live)
