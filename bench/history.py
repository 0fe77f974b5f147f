"""balance-bot history benchmark: how big the state file grows with balance
history, what a cycle's commit costs once the file holds 90 days of it, and what
the rate queries cost per account. Prints Markdown tables.

    .venv/bin/python bench/history.py           # the full run (about 11 minutes)
    .venv/bin/python bench/history.py --quick   # smoke run (< 60 s), smaller numbers

Every sample goes through the bot's own code: `bot.app.history.advance()` turns a
poll (a `Snapshot`) into the next ledger and the `Sample` to store, and
`Store.commit_cycle()` commits a cycle's snapshots and samples in one
transaction; `Store.prune()` downsamples (bot/state/sqlite/samples.py). The population:
accounts with 50 limited keys named like `prod-api-012`, every key's used figure
growing by a random small amount every 5-minute poll.

- growth, literal: a small population polled every 5 minutes for 16 simulated
  days, every poll committed, into two state files: one pruned every simulated
  hour, one once a day as the bot does (bot/app/cycle.py, PRUNE_EVERY); the rows
  left are checked against the downsampling rule, computed independently here;
- growth, steady state: 1,000 accounts x 50 keys at 90 days, built by committing
  only the polls the rule keeps at that moment (the same advance() and
  commit_cycle(), each ledger advancing over the polls in between), then one
  more day of every 5-minute poll and the bot's daily prune;
- commits: seconds per cycle of 1,000 samples, on the empty file and on the
  90-day file;
- rates: `History.advance()` + `History.flow()` per account and cycle on that
  file (burn window 24 h, one spend window of 1 h), every key's rate on demand,
  and the memory the window cursors hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import math
import multiprocessing
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
SCRIPT = Path(__file__).resolve()
BENCH = SCRIPT.parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]  # `bot`, and bench/bench.py as `bench`

from bot.app.history import History, Ledger, advance  # noqa: E402
from bot.engine.model import EngineState, KeyBalance, Snapshot  # noqa: E402
from bot.state.sqlite.store import PRUNE_BATCH, Store  # noqa: E402
from bot.state.types import Commit, Sample  # noqa: E402

KEYS = 50
INTERVAL = 300.0  # s between polls
HISTORY_DAYS = 90  # [bot] history_days' default
BUDGET_MB = 500.0  # the state file after 90 days at 1,000 accounts x 50 moving keys
HOUR, DAY = 3600.0, 86400.0
# The rule as the README and bot/state/sqlite/samples.py state it, written out again here
# (not imported) so that the check below is independent of the code it checks.
FULL_DAYS, HOURLY_DAYS = 1, 14
T0 = datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC).timestamp()  # polls are not on the hour
LAG = 0.5  # s from a poll's fetched_at to the cycle's `now` (commit and prune)
PER_DAY = round(DAY / INTERVAL)  # 288 polls
PER_HOUR = round(HOUR / INTERVAL)  # 12 polls
MB = 1e6


def done(step: Coroutine[Any, Any, T]) -> T:
    """The result of a store or history coroutine that never waits (SQLite runs
    its statements inline): the bot's own code path, without a loop's overhead
    in the figures."""
    try:
        step.send(None)
    except StopIteration as finished:
        return finished.value
    step.close()
    raise RuntimeError("a state coroutine waited; run it on an event loop")


EMPTY = EngineState()


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full run, or the --quick smoke run."""

    literal_accounts: int = 20
    literal_days: int = 16  # past 14: samples reach the daily tier
    accounts: int = 1000
    rate_cycles: int = 24  # timed cycles of the rate queries (2 h of polls)
    memory_cycles: int = 6

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            literal_accounts=2, literal_days=15, accounts=20, rate_cycles=12, memory_cycles=3
        )


# --- the population -------------------------------------------------------------------

KINDS = ("prod-api", "prod-web", "staging-api", "batch-etl", "ml-infer")


class Population:
    """Accounts with KEYS limited keys each; every poll every key's used figure
    grows by a random amount, uniform in [0, 2 x its own mean of 0.05 to 2 US
    cents], and the balance falls by the account's total."""

    def __init__(self, accounts: int, seed: int) -> None:
        rng = self.rng = random.Random(seed)
        self.names = tuple(f"{KINDS[j % len(KINDS)]}-{j:03d}" for j in range(KEYS))
        self.accounts = [f"team-{i:04d}" for i in range(accounts)]
        self.rates = [[rng.uniform(0.0005, 0.02) for _ in range(KEYS)] for _ in self.accounts]
        self.used = [[rng.uniform(0.0, 40.0) for _ in range(KEYS)] for _ in self.accounts]
        # room for 90+ days at the highest rate: a key never runs dry (remain < 0
        # would read as an unlimited key)
        self.limits = [[u + rng.uniform(600.0, 5000.0) for u in used] for used in self.used]
        self.other = [rng.uniform(0.0, 200.0) for _ in self.accounts]  # used by deleted keys
        self.funded = [rng.uniform(30_000.0, 80_000.0) for _ in self.accounts]
        self.requests = [rng.randrange(10_000, 1_000_000) for _ in self.accounts]
        self.last: dict[str, Snapshot] = {}

    def poll(self, at: float, polls: int = 1) -> list[Snapshot]:
        """Every account's snapshot fetched at `at`, `polls` polls after the
        previous one. Over several polls a key's growth is drawn with the mean
        and variance of the sum of that many draws (uniformly: never negative)."""
        rng, names = self.rng, self.names
        fetched = datetime.fromtimestamp(at, UTC)
        spread = math.sqrt(polls)  # U(-a, a) with a = sqrt(3) x the sum's s.d. sqrt(polls / 3)
        snapshots = []
        for i, account in enumerate(self.accounts):
            rates, limits = self.rates[i], self.limits[i]
            rnd = rng.random
            if polls == 1:
                used = [u + 2.0 * r * rnd() for u, r in zip(self.used[i], rates, strict=True)]
            else:
                used = [
                    u + r * (polls + spread * (2.0 * rnd() - 1.0))
                    for u, r in zip(self.used[i], rates, strict=True)
                ]
            self.used[i] = used
            remain = [max(0.0, lim - u) for lim, u in zip(limits, used, strict=True)]
            total_used = self.other[i] + sum(used)
            self.requests[i] += rng.randrange(0, 40 * polls + 1)
            snapshot = Snapshot(
                account,
                f"{account}-owner",
                self.funded[i] - total_used,  # total_quota: the balance
                total_used,
                self.requests[i],
                tuple(map(KeyBalance, names, remain, used)),
                fetched,
            )
            snapshots.append(snapshot)
            self.last[account] = snapshot
        return snapshots


class Writer:
    """One state file fed through the bot's own path: advance() per snapshot,
    then one commit_cycle() for the cycle."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = Store.open(path)
        self.ledgers: dict[str, Ledger] = {}
        self.written = 0

    def samples(self, snapshots: Sequence[Snapshot]) -> list[Sample]:
        """What History.record() does for each snapshot."""
        out = []
        for snapshot in snapshots:
            ledger = self.ledgers.get(snapshot.account)
            at = snapshot.fetched_at.timestamp()
            self.ledgers[snapshot.account], sample = advance(ledger, snapshot, at)
            out.append(sample)
        return out

    def commit(self, snapshots: Sequence[Snapshot], samples: Sequence[Sample], at: float) -> float:
        """Commit one cycle polled at `at`; the seconds commit_cycle() took."""
        commit = Commit(
            old=EMPTY,
            new=EMPTY,
            snapshots=snapshots,
            outbox=[],
            now=datetime.fromtimestamp(at + LAG, UTC),
            samples=samples,
        )
        started = time.perf_counter()
        done(self.store.commit_cycle(commit))
        self.written += len(samples)
        return time.perf_counter() - started

    def prune(self, at: float) -> Pruning:
        """Store.prune() at the cycle polled at `at` until it returns 0."""
        now = datetime.fromtimestamp(at + LAG, UTC)
        result = Pruning()
        while True:
            started = time.perf_counter()
            deleted = asyncio.run(self.store.prune(now, HISTORY_DAYS))
            result.calls.append(time.perf_counter() - started)
            result.deleted += deleted
            if not deleted:
                return result

    def close(self) -> None:
        done(self.store.close())


@dataclass
class Pruning:
    deleted: int = 0
    calls: list[float] = field(default_factory=list)  # seconds of each Store.prune() call

    @property
    def seconds(self) -> float:
        return sum(self.calls)

    def add(self, other: Pruning) -> None:
        self.deleted += other.deleted
        self.calls += other.calls


def poll_times(days: float) -> list[float]:
    """Every poll time of `days` days of 5-minute polls, from T0 (both ends)."""
    return [T0 + k * INTERVAL for k in range(round(days * PER_DAY) + 1)]


def survivors(times: Sequence[float], now: float, history_days: int) -> dict[str, list[float]]:
    """Which of one account's sample times (ascending) the downsampling rule
    keeps at `now`, by tier: every sample of the last day, the last of each UTC
    hour up to 14 days, the last of each UTC day up to `history_days`."""
    last_of_hour: dict[int, float] = {}
    last_of_day: dict[int, float] = {}
    for t in times:
        last_of_hour[int(t // HOUR)] = t
        last_of_day[int(t // DAY)] = t
    kept: dict[str, list[float]] = {"full": [], "hourly": [], "daily": []}
    for t in times:
        if t < now - history_days * DAY:
            continue
        if t >= now - FULL_DAYS * DAY:
            kept["full"].append(t)
        elif t >= now - HOURLY_DAYS * DAY:
            if last_of_hour[int(t // HOUR)] == t:
                kept["hourly"].append(t)
        elif last_of_day[int(t // DAY)] == t:
            kept["daily"].append(t)
    return kept


def tiers(times: Sequence[float], now: float) -> dict[str, int]:
    """Stored sample times by the tier their age puts them in."""
    out = {"full": 0, "hourly": 0, "daily": 0}
    for t in times:
        if t >= now - FULL_DAYS * DAY:
            out["full"] += 1
        elif t >= now - HOURLY_DAYS * DAY:
            out["hourly"] += 1
        else:
            out["daily"] += 1
    return out


# --- the state file -----------------------------------------------------------------


@dataclass
class FileSize:
    db: int  # bytes of the database file, as the bot left it
    wal: int  # bytes of its -wal file
    checkpointed: int  # database + WAL after PRAGMA wal_checkpoint(TRUNCATE)
    busy: bool  # the checkpoint could not complete
    page_size: int
    freelist: int  # pages
    rows: int  # samples
    per_account: tuple[int, int]  # rows of the account with fewest, most
    by_table: dict[str, int]  # bytes of pages, from dbstat
    samples_payload: int  # bytes of row content in the samples table
    vacuumed: int | None = None  # bytes of a VACUUM INTO copy

    @property
    def live(self) -> int:
        return self.db + self.wal

    @property
    def samples_bytes(self) -> int:
        return self.by_table.get("samples", 0) + self.by_table.get("samples_by_time", 0)


def measure_file(path: Path, vacuum: bool) -> FileSize:
    """The file's size as the bot left it, then after a checkpoint; where the
    pages go (dbstat); optionally the size of a vacuumed copy."""
    wal_path = path.with_name(path.name + "-wal")

    def size(p: Path) -> int:
        return p.stat().st_size if p.exists() else 0

    db, wal = size(path), size(wal_path)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as con:
        busy = bool(con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
        checkpointed = size(path) + size(wal_path)
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        freelist = con.execute("PRAGMA freelist_count").fetchone()[0]
        counts = [n for (n,) in con.execute("SELECT count(*) FROM samples GROUP BY account")]
        by_table = dict(con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
        payload = con.execute(
            "SELECT sum(payload) FROM dbstat WHERE name='samples' AND pagetype='leaf'"
        ).fetchone()[0]
        vacuumed = None
        if vacuum:
            copy = path.with_name(path.name + ".vacuumed")
            con.execute("VACUUM INTO ?", (str(copy),))
            vacuumed = size(copy)
            copy.unlink()
    return FileSize(
        db,
        wal,
        checkpointed,
        busy,
        page_size,
        freelist,
        sum(counts),
        (min(counts, default=0), max(counts, default=0)),
        by_table,
        payload or 0,
        vacuumed,
    )


def account_times(path: Path, account: str) -> list[float]:
    with contextlib.closing(sqlite3.connect(path)) as con:
        rows = con.execute("SELECT at FROM samples WHERE account=? ORDER BY at", (account,))
        return [at for (at,) in rows]


# --- 1a: the literal simulation --------------------------------------------------------


@dataclass
class Literal:
    accounts: int
    days: int
    polls: int
    hourly: FileSize
    daily: FileSize
    predicted: dict[str, int]
    stored: dict[str, int]  # by tier, one account of the hourly file
    same_times: bool  # every account of both files holds exactly the predicted times
    most_before: tuple[int, int]  # rows per account just before a prune, at most (hourly, daily)
    hourly_pruning: Pruning
    daily_pruning: Pruning
    seconds: float


def literal(plan: Plan, tmp: Path, progress: Callable[[str], None]) -> Literal:
    """Every 5-minute poll of plan.literal_days days committed to two files,
    pruned every simulated hour and once a day."""
    started = time.perf_counter()
    population = Population(plan.literal_accounts, seed=1)
    hourly, daily = Writer(tmp / "literal-hourly.db"), Writer(tmp / "literal-daily.db")
    times = poll_times(plan.literal_days)
    hourly_pruning, daily_pruning = Pruning(), Pruning()
    most_hourly = most_daily = 0
    for k, at in enumerate(times):
        snapshots = population.poll(at)
        for writer in (hourly, daily):
            writer.commit(snapshots, writer.samples(snapshots), at)
        last = k == len(times) - 1
        if k % PER_HOUR == 0 or last:
            most_hourly = max(most_hourly, _most_rows(hourly))
            hourly_pruning.add(hourly.prune(at))
        if k % PER_DAY == 0 or last:
            most_daily = max(most_daily, _most_rows(daily))
            daily_pruning.add(daily.prune(at))
        if k % (PER_DAY * 4) == 0:
            progress(f"literal simulation: day {k // PER_DAY} of {plan.literal_days}")
    now = times[-1] + LAG
    predicted = survivors(times, now, HISTORY_DAYS)
    expected = sorted(t for tier in predicted.values() for t in tier)
    same = all(
        account_times(w.path, a) == expected for w in (hourly, daily) for a in population.accounts
    )
    stored = tiers(account_times(hourly.path, population.accounts[0]), now)
    for writer in (hourly, daily):
        writer.close()
    return Literal(
        plan.literal_accounts,
        plan.literal_days,
        len(times),
        measure_file(hourly.path, vacuum=True),
        measure_file(daily.path, vacuum=True),
        {tier: len(v) for tier, v in predicted.items()},
        stored,
        same,
        (most_hourly, most_daily),
        hourly_pruning,
        daily_pruning,
        time.perf_counter() - started,
    )


def _most_rows(writer: Writer) -> int:
    with contextlib.closing(sqlite3.connect(writer.path)) as con:
        row = con.execute(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM samples GROUP BY account)"
        ).fetchone()
        return row[0] or 0


def literal_section(plan: Plan, tmp: str) -> list[str]:
    """The literal simulation, rendered (run in a process of its own)."""
    began = time.perf_counter()

    def progress(what: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {what} ...", file=sys.stderr, flush=True)

    return render_literal(literal(plan, Path(tmp), progress))


class Aside:
    """The literal simulation in a process of its own when there are two cores:
    started once the build's first cycles are timed, awaited before its last
    ones, so that no figure timed in the main process overlaps it."""

    def __init__(self, plan: Plan, tmp: Path) -> None:
        self._plan, self._tmp = plan, tmp
        self._pool: ProcessPoolExecutor | None = None
        self._future: Future[list[str]] | None = None
        self._lines: list[str] | None = None

    def start(self) -> None:
        if self._future is not None or self._lines is not None:
            return
        if (os.cpu_count() or 1) < 2:
            self._lines = literal_section(self._plan, str(self._tmp))
            return
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._future = self._pool.submit(literal_section, self._plan, str(self._tmp))

    def lines(self) -> list[str]:
        self.start()
        if self._lines is None:
            assert self._future is not None
            assert self._pool is not None
            try:
                self._lines = self._future.result()
            finally:
                self._pool.shutdown()
        return self._lines


# --- 1b: the steady state at 90 days, and the commits ----------------------------------


@dataclass
class Steady:
    accounts: int
    written: int  # samples committed to build the 90-day state
    kept_per_account: dict[str, int]  # by tier, what the rule keeps at 90 days
    at_90: FileSize
    first_prune: Pruning  # at 90 days, a fresh Store (after a start): nothing to delete
    before_daily: FileSize  # one more day of every poll, not yet pruned
    daily_prune: Pruning
    after_daily: FileSize
    build_commits: list[float]  # seconds of each commit_cycle() while building
    day_commits: list[float]  # seconds of each commit of the day after 90 days
    advance_seconds: list[float]  # advance() of every account, per cycle of the day
    build_seconds: float
    end: float = 0.0  # the last poll time
    writer: Writer | None = None  # left open for the rate queries


def steady(
    plan: Plan, tmp: Path, progress: Callable[[str], None], aside: Aside
) -> tuple[Steady, Population]:
    """The 90-day state of plan.accounts accounts from the polls the rule keeps,
    then one more day of every poll (the bot prunes once a day) and that prune."""
    population = Population(plan.accounts, seed=2)
    writer = Writer(tmp / "steady.db")
    times = poll_times(HISTORY_DAYS)
    end = times[-1]
    kept = survivors(times, end + LAG, HISTORY_DAYS)
    wanted = sorted(t for tier in kept.values() for t in tier)
    index = {t: k for k, t in enumerate(times)}
    started = time.perf_counter()
    build_commits: list[float] = []
    previous = index[wanted[0]] - 1
    for n, at in enumerate(wanted):
        if n == 13:
            aside.start()
        elif n == len(wanted) - 12:
            aside.lines()
        snapshots = population.poll(at, index[at] - previous)
        previous = index[at]
        build_commits.append(writer.commit(snapshots, writer.samples(snapshots), at))
        if n % 100 == 0:
            progress(f"steady state: {n} of {len(wanted)} cycles of {plan.accounts} samples")
    build_seconds = time.perf_counter() - started
    first_prune = writer.prune(end)
    progress("steady state: measuring the 90-day file")
    at_90 = measure_file(writer.path, vacuum=True)
    day_commits, advance_seconds = [], []
    at = end
    for k in range(PER_DAY):
        at = end + (k + 1) * INTERVAL
        snapshots = population.poll(at)
        began = time.perf_counter()
        samples = writer.samples(snapshots)
        advance_seconds.append(time.perf_counter() - began)
        day_commits.append(writer.commit(snapshots, samples, at))
        if k % 72 == 0:
            progress(f"steady state: day 91, cycle {k} of {PER_DAY}")
    before_daily = measure_file(writer.path, vacuum=False)
    progress("steady state: the daily prune")
    daily_prune = writer.prune(at)
    after_daily = measure_file(writer.path, vacuum=True)
    result = Steady(
        plan.accounts,
        writer.written - len(day_commits) * plan.accounts,
        {tier: len(v) for tier, v in kept.items()},
        at_90,
        first_prune,
        before_daily,
        daily_prune,
        after_daily,
        build_commits,
        day_commits,
        advance_seconds,
        build_seconds,
        at,
        writer,
    )
    return result, population


# --- 2: the rate queries ---------------------------------------------------------------


@dataclass
class Rates:
    accounts: int
    restore: float  # s, History.restore() on the 90-day file
    first_advance: float  # s, the first History.advance() after it
    advance: list[float] = field(default_factory=list)  # s per cycle
    record: list[float] = field(default_factory=list)  # s per cycle, every account
    totals: list[float] = field(default_factory=list)  # s per cycle, flow().burn.total
    keys: list[float] = field(default_factory=list)  # s per cycle, every key's rate
    commits: list[float] = field(default_factory=list)
    rated: int = 0  # key rates that came out as a number (not None: gathering)
    asked: int = 0
    ledgers_bytes: int = 0  # tracemalloc: History.restore()
    windows_first: int = 0  # tracemalloc: the first advance
    windows_held: int = 0  # tracemalloc: freed when the windows are dropped, later
    memory_cycles: int = 0


BURN_WINDOW, SPEND_WINDOW = DAY, HOUR


def rates(
    plan: Plan, state: Steady, population: Population, progress: Callable[[str], None]
) -> Rates:
    """Cycles on the 90-day file as bot/app/cycle.py runs them: History.advance(),
    then record() and flow() for every account; every key's rate on demand."""
    writer = state.writer
    assert writer is not None
    store = writer.store
    at = state.end

    def history() -> History:
        return History(store.history, BURN_WINDOW, [SPEND_WINDOW], INTERVAL)

    def cycle(h: History, timed: Rates | None) -> None:
        nonlocal at
        at += INTERVAL
        now = datetime.fromtimestamp(at + LAG, UTC)
        snapshots = population.poll(at)
        t0 = time.perf_counter()
        done(h.advance(now))
        t1 = time.perf_counter()
        samples = [h.record(s) for s in snapshots]
        t2 = time.perf_counter()
        flows = {}
        for s in snapshots:
            flow = flows[s.account] = done(h.flow(s.account, now))
            _ = flow.burn.total
        t3 = time.perf_counter()
        figures = [flow.burn.keys[name] for flow in flows.values() for name in flow.burn.keys]
        t4 = time.perf_counter()
        commit = writer.commit(snapshots, samples, at)
        h.committed(samples, now)
        if timed is not None:
            timed.advance.append(t1 - t0)
            timed.record.append(t2 - t1)
            timed.totals.append(t3 - t2)
            timed.keys.append(t4 - t3)
            timed.commits.append(commit)
            timed.asked += len(figures)
            timed.rated += sum(f is not None for f in figures)

    started = datetime.fromtimestamp(at + LAG, UTC)
    h = history()
    t0 = time.perf_counter()
    done(h.restore(dict(population.last), started))
    t1 = time.perf_counter()
    done(h.advance(started))
    result = Rates(plan.accounts, t1 - t0, time.perf_counter() - t1)
    for k in range(plan.rate_cycles):
        cycle(h, result)
        if k % 6 == 0:
            progress(f"rate queries: cycle {k} of {plan.rate_cycles}")
    del h
    progress("rate queries: memory of the window cursors")
    gc.collect()
    tracemalloc.start()
    try:
        h = history()
        now = datetime.fromtimestamp(at + LAG, UTC)
        m0 = tracemalloc.get_traced_memory()[0]
        done(h.restore(dict(population.last), now))
        m1 = tracemalloc.get_traced_memory()[0]
        done(h.advance(now))
        m2 = tracemalloc.get_traced_memory()[0]
        for _ in range(plan.memory_cycles):
            cycle(h, None)
        gc.collect()
        m3 = tracemalloc.get_traced_memory()[0]
        h.windows = {}
        gc.collect()
        m4 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    result.ledgers_bytes, result.windows_first, result.windows_held = m1 - m0, m2 - m1, m3 - m4
    result.memory_cycles = plan.memory_cycles
    return result


# --- the report ----------------------------------------------------------------------


def mb(value: float | None) -> str:
    return "—" if value is None else f"{value / MB:,.1f} MB"


def ms(value: float) -> str:
    return f"{value * 1e3:,.0f} ms" if value >= 0.1 else f"{value * 1e3:,.1f} ms"


def bot_files() -> str:
    """The bot modules this run measures, by content: the tree may be changing."""
    names = (
        "state/sqlite/samples.py",
        "app/history.py",
        "engine/forecast.py",
        "state/sqlite/store.py",
        "engine/model.py",
    )
    digests = (hashlib.sha256((ROOT / "bot" / n).read_bytes()).hexdigest()[:10] for n in names)
    return ", ".join(f"bot/{n} {d}" for n, d in zip(names, digests, strict=True))


def machine_line() -> str:
    try:  # bench/bench.py's machine line; importing it imports the whole bot
        from bench import code_label, machine
    except Exception:  # another part of bot/ mid-change: the same facts, briefly
        cpu = "unknown CPU"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        return (
            f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        )
    return machine(code_label())


def budget(f: FileSize) -> str:
    return f"**{mb(f.live)}**, " + ("within" if f.live <= BUDGET_MB * MB else "**over**")


def render_literal(lit: Literal) -> list[str]:
    h, d = lit.hourly, lit.daily
    rule = lit.predicted
    stored = lit.stored
    out = [
        f"**Literal simulation**: {lit.accounts} accounts x {KEYS} moving keys, every 5-minute "
        f"poll of {lit.days} days ({lit.polls:,} cycles, {lit.polls * lit.accounts:,} samples "
        "committed), in two files, one pruned every simulated hour and one once a day "
        f"(bot/app/cycle.py's PRUNE_EVERY). {lit.seconds:.0f} s, in a process of its own while the "
        "steady-state build below ran (not during its timed commits).",
        "",
        "| | pruned every hour | pruned once a day |",
        "|---|---:|---:|",
        f"| rows per account now (fewest, most) | {h.per_account[0]}, {h.per_account[1]} "
        f"| {d.per_account[0]}, {d.per_account[1]} |",
        f"| the rule predicts (full + hourly + daily) | {sum(rule.values())} = {rule['full']} + "
        f"{rule['hourly']} + {rule['daily']} | the same |",
        f"| stored, by age (one account) | {stored['full']} + {stored['hourly']} + "
        f"{stored['daily']} | |",
        f"| every account holds exactly the predicted sample times | "
        f"{'yes' if lit.same_times else '**no**'} | {'yes' if lit.same_times else '**no**'} |",
        f"| rows per account just before a prune, at most | {lit.most_before[0]} "
        f"| {lit.most_before[1]} |",
        f"| database + WAL as the bot left them | {mb(h.live)} | {mb(d.live)} |",
        f"| after a checkpoint (TRUNCATE) | {mb(h.checkpointed)} | {mb(d.checkpointed)} |",
        f"| free pages in the file | {h.freelist:,} ({mb(h.freelist * h.page_size)}) "
        f"| {d.freelist:,} ({mb(d.freelist * d.page_size)}) |",
        f"| after VACUUM (reference) | {mb(h.vacuumed)} | {mb(d.vacuumed)} |",
        f"| samples table + index pages per row | {h.samples_bytes / h.rows:,.0f} B "
        f"| {d.samples_bytes / d.rows:,.0f} B |",
        f"| of which row content (payload) | {h.samples_payload / h.rows:,.0f} B "
        f"| {d.samples_payload / d.rows:,.0f} B |",
        f"| prune: calls, total time, slowest call | {len(lit.hourly_pruning.calls):,}, "
        f"{lit.hourly_pruning.seconds:.1f} s, {ms(max(lit.hourly_pruning.calls))} "
        f"| {len(lit.daily_pruning.calls):,}, {lit.daily_pruning.seconds:.1f} s, "
        f"{ms(max(lit.daily_pruning.calls))} |",
    ]
    return out


def render_steady(st: Steady) -> list[str]:
    a, b, c = st.at_90, st.before_daily, st.after_daily
    kept = st.kept_per_account
    n = st.accounts

    def per_row(f: FileSize) -> str:
        return f"{f.samples_bytes / f.rows:,.0f} B"

    def other(f: FileSize) -> str:
        return mb(f.checkpointed - f.samples_bytes - f.freelist * f.page_size)

    out = [
        f"**Steady state**: {n:,} accounts x {KEYS} moving keys at {HISTORY_DAYS} days: only "
        f"the polls the rule keeps at day {HISTORY_DAYS} were committed ({len(st.build_commits)} "
        f"cycles, {st.written:,} samples, {st.build_seconds:.0f} s), each ledger advancing over "
        f"the polls in between; then day {HISTORY_DAYS + 1}: all {PER_DAY} polls committed and "
        "the bot's daily prune. The rule keeps "
        f"{sum(kept.values())} = {kept['full']} + {kept['hourly']} + {kept['daily']} rows "
        "per account (full + hourly + daily).",
        "",
        f"| | day {HISTORY_DAYS} | day {HISTORY_DAYS + 1}, before the daily prune "
        f"| after the daily prune |",
        "|---|---:|---:|---:|",
        f"| samples (rows per account) | {a.rows:,} ({a.per_account[1]}) | {b.rows:,} "
        f"({b.per_account[1]}) | {c.rows:,} ({c.per_account[1]}) |",
        f"| database file | {mb(a.db)} | {mb(b.db)} | {mb(c.db)} |",
        f"| WAL file | {mb(a.wal)} | {mb(b.wal)} | {mb(c.wal)} |",
        f"| **database + WAL** (budget {BUDGET_MB:.0f} MB) | {budget(a)} | {budget(b)} "
        f"| {budget(c)} |",
        f"| after a checkpoint (TRUNCATE) | {mb(a.checkpointed)} | {mb(b.checkpointed)} "
        f"| {mb(c.checkpointed)} |",
        f"| samples table + index pages | {mb(a.samples_bytes)} | {mb(b.samples_bytes)} "
        f"| {mb(c.samples_bytes)} |",
        f"| per row (of which payload) | {per_row(a)} ({a.samples_payload / a.rows:,.0f} B) "
        f"| {per_row(b)} ({b.samples_payload / b.rows:,.0f} B) | {per_row(c)} "
        f"({c.samples_payload / c.rows:,.0f} B) |",
        f"| free pages | {mb(a.freelist * a.page_size)} | {mb(b.freelist * b.page_size)} "
        f"| {mb(c.freelist * c.page_size)} |",
        f"| everything else (snapshots, layouts, schema) | {other(a)} | {other(b)} | {other(c)} |",
        f"| after VACUUM (reference) | {mb(a.vacuumed)} | — | {mb(c.vacuumed)} |",
    ]
    return out


def render_commits(st: Steady) -> list[str]:
    build, day = st.build_commits, st.day_commits

    def row(label: str, values: Sequence[float]) -> str:
        return (
            f"| {label} | {len(values)} | {statistics.median(values):.3f} s "
            f"| {min(values):.3f} s | {max(values):.3f} s |"
        )

    first_prune, daily = st.first_prune, st.daily_prune
    return [
        f"**Commits**: `Store.commit_cycle()` of one cycle of {st.accounts:,} accounts "
        f"({st.accounts:,} samples of {KEYS} keys and {st.accounts:,} snapshots). The `advance()` "
        f"of all {st.accounts:,} accounts before it: median "
        f"{statistics.median(st.advance_seconds):.3f} s per cycle.",
        "",
        "| commits | cycles | median | fastest | slowest |",
        "|---|---:|---:|---:|---:|",
        f"| the first, on an empty file | 1 | {build[0]:.3f} s | | |",
        row("the build's cycles 2 to 13 (its oldest polls)", build[1:13]),
        row("the build's last 12 (day 90)", build[-12:]),
        row(f"day {HISTORY_DAYS + 1}: the first hour on the 90-day file", day[:PER_HOUR]),
        row(f"day {HISTORY_DAYS + 1}: the last hour, before the daily prune", day[-PER_HOUR:]),
        row(f"day {HISTORY_DAYS + 1}: all", day),
        "",
        "| pruning on that file (PRUNE_BATCH = "
        f"{PRUNE_BATCH:,}) | calls | rows deleted | total | slowest call |",
        "|---|---:|---:|---:|---:|",
        f"| at day {HISTORY_DAYS}, fresh Store (as after a start; nothing to delete) "
        f"| {len(first_prune.calls)} | {first_prune.deleted:,} | {first_prune.seconds:.2f} s "
        f"| {ms(max(first_prune.calls))} |",
        f"| the daily prune after day {HISTORY_DAYS + 1} | {len(daily.calls)} "
        f"| {daily.deleted:,} | {daily.seconds:.2f} s | {ms(max(daily.calls))} |",
    ]


def render_rates(r: Rates) -> list[str]:
    n = r.accounts

    def us(values: Sequence[float], label: str) -> str:
        per = [v / n * 1e6 for v in values]
        return (
            f"| {label} | {statistics.median(per):,.1f} µs | {statistics.fmean(per):,.1f} µs "
            f"| {max(per):,.1f} µs |"
        )

    both = [a + t for a, t in zip(r.advance, r.totals, strict=True)]
    return [
        f"**Rate queries** on the file above ({n:,} accounts x {KEYS} keys, 90 days, the last day "
        f"at 5 minutes), burn window 24 h and one spend window of 1 h, over {len(r.advance)} "
        "cycles of 5-minute polls (each committed); per account and cycle, median, mean and "
        f"slowest of the cycles. `History.restore()`: {r.restore:.2f} s; the first "
        f"`History.advance()` after it: {r.first_advance:.2f} s (not in the table).",
        "",
        "| per account per cycle | median | mean | slowest cycle |",
        "|---|---:|---:|---:|",
        us(r.advance, "`History.advance(now)` (per cycle, divided by N)"),
        us(r.totals, "`History.flow(account, now)` with its total burn rate"),
        us(both, "**both: what every cycle computes**"),
        us(r.record, "(context) `History.record(snapshot)`: advance() to the next sample"),
        us(r.keys, f"every key's rate, `flow.burn.keys[name]` for all {KEYS} keys"),
        "",
        f"Key rates that came out as a number: {r.rated:,} of {r.asked:,}. Memory "
        f"(tracemalloc) at {n:,} accounts: the ledgers after `restore()` "
        f"{mb(r.ledgers_bytes)}; the window cursors after the first `advance()` "
        f"{mb(r.windows_first)}, and {mb(r.windows_held)} freed by dropping them after "
        f"{r.memory_cycles} more cycles.",
    ]


@dataclass
class Growth:
    """A literal run at full size: the file as the bot leaves it, every few days."""

    accounts: int
    days: int
    sizes: list[tuple[int, int, int]] = field(default_factory=list)  # (day, db, WAL) bytes
    seconds: float = 0.0

    def projected(self, day: int = HISTORY_DAYS) -> float | None:
        """Bytes at `day`, from the growth per day once the hourly tier is full
        (day 15 on: from then on only the daily tier grows)."""
        late = [(d, db + wal) for d, db, wal in self.sizes if d >= 15]
        if len(late) < 2 or late[-1][0] == late[0][0]:
            return None
        (d0, b0), (d1, b1) = late[0], late[-1]
        return b1 + (b1 - b0) / (d1 - d0) * (day - d1)


def growth(accounts: int, days: int, tmp: Path, every: int = 3) -> Growth:
    """Every 5-minute poll of `days` days of `accounts` accounts committed to one
    file and pruned every simulated hour, as the bot does (`PRUNE_EVERY`)."""
    started = time.perf_counter()
    population, writer = Population(accounts, seed=2), Writer(tmp / "growth.db")
    wal = writer.path.with_name(writer.path.name + "-wal")
    result = Growth(accounts, days)
    for k, at in enumerate(poll_times(days)):
        snapshots = population.poll(at)
        writer.commit(snapshots, writer.samples(snapshots), at)
        if k % PER_HOUR == 0:
            writer.prune(at)
        if k % (PER_DAY * every) == 0 or k == days * PER_DAY:
            sizes = (writer.path.stat().st_size, wal.stat().st_size if wal.exists() else 0)
            result.sizes.append((k // PER_DAY, *sizes))
            print(
                f"[{time.perf_counter() - started:7.1f} s] day {k // PER_DAY}: "
                f"{sizes[0] / 1e6:.1f} MB + WAL {sizes[1] / 1e6:.1f} MB",
                file=sys.stderr,
                flush=True,
            )
    writer.close()
    result.seconds = time.perf_counter() - started
    return result


def render_growth(g: Growth) -> list[str]:
    days = " | ".join(str(d) for d, _, _ in g.sizes)
    out = [
        f"Literal run: {g.accounts:,} accounts x {KEYS} moving keys, every 5-minute poll of "
        f"{g.days} days committed through the bot's own path and pruned every hour "
        f"({g.seconds:.0f} s). The file as the bot leaves it (no forced checkpoint):",
        "",
        f"| day | {days} |",
        "|---|" + "---:|" * len(g.sizes),
        "| database | " + " | ".join(mb(db) for _, db, _ in g.sizes) + " |",
        "| WAL | " + " | ".join(mb(wal) for _, _, wal in g.sizes) + " |",
    ]
    projected = g.projected()
    if projected is not None:
        out += [
            "",
            f"Projected at day {HISTORY_DAYS} from the growth after day 15: {mb(projected)} "
            f"database + WAL (budget 400 MB: {'met' if projected <= 400e6 else 'missed'}).",
        ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="balance-bot history benchmark")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (< 60 s)")
    parser.add_argument(
        "--growth",
        nargs=2,
        type=int,
        metavar=("ACCOUNTS", "DAYS"),
        help="only a literal run of that size (1000 20: about 45 minutes), printed as a table",
    )
    args = parser.parse_args()
    if args.growth:
        with tempfile.TemporaryDirectory(prefix="balance-bot-growth-") as tmp:
            g = growth(*args.growth, Path(tmp), every=1 if args.growth[1] < 6 else 3)
        print(
            "\n".join(
                [
                    f"Machine: {machine_line()}, SQLite {sqlite3.sqlite_version}",
                    "",
                    *render_growth(g),
                ]
            )
        )
        return 0
    plan = Plan.quick() if args.quick else Plan()
    command = " ".join([".venv/bin/python bench/history.py", *sys.argv[1:]])
    began = time.perf_counter()

    def progress(what: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {what} ...", file=sys.stderr, flush=True)

    measured = bot_files()
    with tempfile.TemporaryDirectory(prefix="balance-bot-history-") as tmp:
        aside = Aside(plan, Path(tmp))
        st, population = steady(plan, Path(tmp), progress, aside)
        try:
            rate = rates(plan, st, population, progress)
        finally:
            if st.writer is not None:
                st.writer.close()
        literal_lines = aside.lines()
    progress("done")
    out = [
        f"Machine: {machine_line()}, SQLite {sqlite3.sqlite_version}",
        f"Command: `{command}` ({time.perf_counter() - began:.0f} s)",
        f"Code measured (sha256 of the files as imported): {measured}",
        "",
        *literal_lines,
        "",
        *render_steady(st),
        "",
        *render_commits(st),
        "",
        *render_rates(rate),
    ]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
