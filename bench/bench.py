"""balance-bot benchmark: cycle throughput against a bare aiohttp loop, rule-engine
speed, start-up time, memory, alert latency and state-file growth. Prints
Markdown tables.

    .venv/bin/python bench/bench.py           # the full run (7 to 12 minutes)
    .venv/bin/python bench/bench.py --quick   # smoke run (< 60 s)
    .venv/bin/python bench/bench.py --only cycle --only latency
    .venv/bin/python bench/bench.py --code /tmp/bench-efc75a2 --label efc75a2
    .venv/bin/python bench/bench.py --only profile   # not part of the full run

Parts (`--only` selects them; all but `profile` run by default):

- cycle: the bot's full cycle (`App.cycle()` in-process: fetch, parse, evaluate,
  history, persist) and a bare aiohttp loop that GETs the same URLs at the same
  concurrency (the bot's default max_concurrency) and decodes each body with
  `json.loads`, and a minimal loop (b) on the bot's own session (its connector
  and headers, a timeout, the status checked), side by side: N = 100, 1,000,
  5,000 accounts x K = 50 keys and N = 1,000 x K = 500, each with the balances
  steady and with them moving on every poll; wall time and the CPU time of this
  process per account, the bare loop measured before and after the cycles; the
  moving cycles' CPU by stage (parse, history, rules, commit, the rest); plus a
  context row with a 50 ms upstream;
- providers: N = 1,000 accounts, moving, all CometAPI and then a quarter each of
  cometapi, newapi, openrouter and deepseek: this process's CPU per request made;
- rules: `evaluate()` on 10,000 keys x 5 rules;
- start: the real `balance-bot run` spawned, to its first completed poll;
- idle: its RSS with Telegram and Slack configured (against fakes) and listening;
- peak: its peak RSS over cycles of N = 5,000 accounts x 50 keys, the second
  firing 2,500 alerts, and their sends; then after one GET /metrics;
- latency: detection (the cycle's first `evaluate_account` whose outcome has
  events) to the fake Telegram receiving the cycle's first sendMessage, N = 1,
  100, 1,000, 5,000, one account crossing and 500 (half at N = 100), with the
  number of messages per destination per cycle and how many were splits;
- state: the state file (database + WAL) after 60 in-process cycles of
  N = 1,000 x 50 keys with moving balances;
- profile (only when named): in-process cycles at N = 1,000 x 50 moving: the
  garbage collector's time (`gc.callbacks`) and the stages that are function
  calls (parse, history, rule engine, commit) timed by wrapping them, then
  cProfile, own time grouped (HTTP client, JSON decode and model, history, rule
  engine, SQLite commit, logging, event loop) and the top entries.

Every fake server (CometAPI, Telegram, Slack) runs in a separate process
(bench/fake_upstream.py), so its CPU does not share the measured event loop.
`--code DIR` (or $BENCH_CODE) imports `bot` and `fakes` from DIR, e.g. a
`git archive` export of a commit, in this process and in every child process.
See bench/RESULTS.md for what each figure means and the latest results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import gc
import inspect
import json
import logging
import os
import platform
import pstats
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
BENCH = SCRIPT.parent
ROOT = BENCH.parent


def code_dir() -> Path:
    """Where `bot` and `fakes` come from: --code DIR, $BENCH_CODE, or this checkout."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--code", default=os.environ.get("BENCH_CODE", ""))
    known, _ = pre.parse_known_args(sys.argv[1:] if __name__ == "__main__" else [])
    return Path(known.code).resolve() if known.code else ROOT


CODE = code_dir()
sys.path[:0] = [str(CODE), str(BENCH)]  # `bot`, `fakes` and `fake_upstream`

import aiohttp  # noqa: E402
from fake_upstream import (  # noqa: E402
    HIGH_TOTAL,
    SLACK_APP_TOKEN,
    SLACK_BOT_TOKEN,
    SLACK_CHANNEL,
    TELEGRAM_TOKEN,
    key_for,
    quota_body,
)

import bot.app.cycle as bot_cycle  # noqa: E402
import bot.app.service as bot_service  # noqa: E402
from bot import config as bot_config  # noqa: E402
from bot.app.service import App  # noqa: E402
from bot.common import secrets  # noqa: E402
from bot.common.logs import setup_logging  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.engine.model import (  # noqa: E402
    EngineState,
    EventKind,
    KeyBalance,
    Rule,
    Snapshot,
)
from bot.engine.rules import measures  # noqa: E402
from bot.notify.plan import Context, evaluate  # noqa: E402
from bot.upstream.cometapi import parse_quota  # noqa: E402
from bot.upstream.transport import new_session  # noqa: E402

KEYS = 50  # keys per account in most runs
CONCURRENCY = Settings().max_concurrency  # the bot's default, used by both loops
TIMEOUT = Settings().request_timeout  # the bot's default, used by the minimal loop
TELEGRAM_CHAT = 111111
PARTS = ("cycle", "providers", "rules", "start", "idle", "peak", "latency", "state", "profile")
DEFAULT_PARTS = tuple(p for p in PARTS if p != "profile")

# SPEC 8: full cycle / decode loop, CPU per account, by (accounts, keys, moving)
TARGET_RATIOS = {(1000, 50, True): 1.5, (1000, 500, True): 2.0}
TARGET_EVALS = 500_000  # subject evaluations per second
TARGET_FIRST_POLL = 1.5  # seconds from spawn to the first completed poll
TARGET_IDLE_RSS = 66.0  # MB
TARGET_PEAK_RSS = 200.0  # MB, N = 5,000 x 50
TARGET_LATENCY = 20.0  # ms from detection to the first sendMessage, at every N
TARGET_MESSAGES = 2  # per destination per cycle, beyond splits forced by the 4,096 limit
TARGET_MIXED = 1.10  # issue 22: a mixed cycle's CPU per request / an all-CometAPI one's


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full run, or the --quick smoke run."""

    # (accounts, keys, runs): each with steady and with moving balances
    throughput: tuple[tuple[int, int, int], ...] = (
        (100, 50, 5),
        (1000, 50, 5),
        (5000, 50, 3),
        (1000, 500, 3),
    )
    # context, not a target: the comparison with a simulated upstream latency
    slow_upstream: tuple[int, float, int] | None = (1000, 50.0, 2)  # (accounts, ms, runs)
    rule_keys: int = 10_000
    rule_repeats: int = 7
    first_poll_runs: int = 5
    idle_seconds: float = 10.0
    idle_baseline: bool = True  # also the idle RSS of `run` with the log notifier only
    peak_accounts: int = 5000
    peak_interval: int = 20  # s; the second cycle of the peak RSS run starts this much later
    # (accounts, accounts that cross, samples)
    latency_cases: tuple[tuple[int, int, int], ...] = (
        (1, 1, 10),
        (100, 1, 10),
        (100, 50, 10),
        (1000, 1, 10),
        (1000, 500, 10),
        (5000, 1, 6),
        (5000, 500, 6),
    )
    state_file: tuple[int, int, int] = (1000, 50, 60)  # (accounts, keys, polls)
    profile: tuple[int, int, int] = (1000, 50, 5)  # (accounts, keys, cycles)
    mixed: tuple[int, int] = (1000, 5)  # (accounts, runs): ¼ of each provider vs all CometAPI

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            throughput=((100, 50, 1), (300, 50, 1), (100, 500, 1)),
            slow_upstream=None,
            rule_keys=10_000,
            rule_repeats=2,
            first_poll_runs=1,
            idle_seconds=3.0,
            idle_baseline=False,
            peak_accounts=500,
            peak_interval=4,
            latency_cases=((1, 1, 2), (100, 1, 2), (100, 50, 2)),
            state_file=(100, 50, 5),
            profile=(200, 50, 2),
            mixed=(200, 2),
        )


# --- the fake upstream process ------------------------------------------------------


class FakeUpstream:
    """bench/fake_upstream.py as a child process, and its control endpoints."""

    def __init__(self, accounts: int, keys: int) -> None:
        self.accounts, self.keys = accounts, keys
        self.ports: dict[str, int] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FakeUpstream:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCH / "fake_upstream.py"),
            "--accounts",
            str(self.accounts),
            "--keys",
            str(self.keys),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(CODE)},
            cwd=CODE,
        )
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 120)
        if not line:
            raise RuntimeError("fake_upstream.py exited before printing its ports")
        self.ports = json.loads(line)
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session:
            await self._session.close()
        if self._proc:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # the fake exits when its stdin closes
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()

    @property
    def comet_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['comet']}/user/quota"

    def url_of(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    async def control(self, what: str) -> dict[str, Any]:
        assert self._session is not None
        url = f"http://127.0.0.1:{self.ports['comet']}/_bench/{what}"
        async with self._session.get(url) as resp:
            resp.raise_for_status()
            return await resp.json()  # type: ignore[no-any-return]

    async def set_low(self, low: bool, upto: int | None = None) -> None:
        """low: the even-numbered accounts (below `upto`, if given) at $10, below the
        $20 rule; the others at $100."""
        await self.control(f"phase?low={int(low)}" + (f"&upto={upto}" if upto else ""))

    async def set_moving(self, moving: bool) -> None:
        """moving: every answer moves the account's figures a little; else they hold."""
        await self.control(f"move?on={int(moving)}")

    async def cpu_seconds(self) -> float:
        return float((await self.control("stats"))["cpu_seconds"])


# --- configs ------------------------------------------------------------------------

RULES_TOML = """
[[rules]]
name = "account-low"
target = "total"
below = 20
recover_above = 25

[[rules]]
name = "key-low"
target = "key"
keys = ["*"]
exclude_keys = ["balance-query"]
below = 1
severity = "critical"
"""


def config_text(
    url: str,
    accounts: int,
    state: Path,
    interval: str = "5m",
    listen: str = "",
    extra: str = "",
) -> str:
    """N accounts (each with its own key) on the fake, the two rules above."""
    parts = [f'[bot]\ninterval = "{interval}"\nstate_path = "{state}"\nhttp_listen = "{listen}"\n']
    parts.extend(
        f'[[accounts]]\nname = "acct-{i:05d}"\nkey = "{key_for(i)}"\nurl = "{url}"\n'
        for i in range(accounts)
    )
    parts.append(RULES_TOML)
    parts.append(extra)
    return "\n".join(parts)


def telegram_toml(fake: FakeUpstream) -> str:
    return (
        f'[notifiers.telegram]\ntoken = "{TELEGRAM_TOKEN}"\nchat_ids = [{TELEGRAM_CHAT}]\n'
        f'api_url = "{fake.url_of("telegram")}"\n'
    )


def slack_toml(fake: FakeUpstream) -> str:
    return (
        f'[notifiers.slack]\nbot_token = "{SLACK_BOT_TOKEN}"\napp_token = "{SLACK_APP_TOKEN}"\n'
        f'channel = "{SLACK_CHANNEL}"\napi_url = "{fake.url_of("slack")}/api/"\n'
    )


def load_config(text: str) -> bot_config.Config:
    """As `balance-bot run` does: parse, then register every secret for redaction."""
    cfg = bot_config.parse(text, environ={})
    for secret in cfg.secrets():
        secrets.register(secret)
    return cfg


# --- the garbage collector as the bot sets it -------------------------------------


def gc_setting() -> str:
    """What `balance-bot run` does to the garbage collector once started."""
    if getattr(bot_service, "tune_gc", None) is None:
        return "Python's defaults (the bot does not tune the collector)"
    thresholds = getattr(bot_service, "GC_THRESHOLDS", None)
    return f"the bot's `tune_gc()` (gc.freeze(), thresholds {thresholds})"


@contextlib.contextmanager
def restored_gc() -> Iterator[None]:
    """Undo whatever the code inside does to the collector (`App.serve` may tune it)."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@contextlib.contextmanager
def bot_gc() -> Iterator[None]:
    """The collector as `balance-bot run` sets it after start-up (bot.app.service.tune_gc,
    in the code measured if it has one), undone afterwards."""
    with restored_gc():
        tune = getattr(bot_service, "tune_gc", None)
        if tune is not None:
            tune()
        yield


class GcTimer:
    """Wall time spent in the garbage collector, through gc.callbacks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


# --- cycle: the full cycle beside a bare loop that decodes ---------------------------


@dataclass
class Throughput:
    accounts: int
    keys: int
    moving: bool
    delay_ms: float  # simulated upstream latency per request
    runs: int
    bare_seconds: list[float] = field(default_factory=list)
    bare_cpu: list[float] = field(default_factory=list)  # process_time of this process
    minimal_seconds: list[float] = field(default_factory=list)  # the bot's session, (b)
    minimal_cpu: list[float] = field(default_factory=list)
    cycle_seconds: list[float] = field(default_factory=list)
    cycle_cpu: list[float] = field(default_factory=list)
    fake_busy: list[float] = field(default_factory=list)  # the fake's CPU / wall, both loops
    events: int = 0  # alerts per timed cycle (none expected)
    stages: dict[str, float] = field(default_factory=dict)  # CPU s per cycle, wrapped runs
    staged_cpu: float = 0.0  # the wrapped cycles' CPU (the loop thread's), per cycle

    @property
    def label(self) -> str:
        return f"{self.accounts:,} x {self.keys}"

    @property
    def balances(self) -> str:
        return "moving" if self.moving else "steady"

    @property
    def bare_rate(self) -> float:
        return self.accounts / median(self.bare_seconds)

    @property
    def cycle_rate(self) -> float:
        return self.accounts / median(self.cycle_seconds)

    @property
    def ratio(self) -> float:
        """How many times longer the full cycle takes than the bare loop (wall)."""
        return median(self.cycle_seconds) / median(self.bare_seconds)

    @property
    def bare_cpu_us(self) -> float:
        return median(self.bare_cpu) / self.accounts * 1e6

    @property
    def cycle_cpu_us(self) -> float:
        return median(self.cycle_cpu) / self.accounts * 1e6

    @property
    def cpu_ratio(self) -> float:
        return self.cycle_cpu_us / self.bare_cpu_us

    @property
    def minimal_ratio(self) -> float:
        """The full cycle against the minimal loop (b), wall."""
        return median(self.cycle_seconds) / median(self.minimal_seconds)

    @property
    def minimal_cpu_us(self) -> float:
        return median(self.minimal_cpu) / self.accounts * 1e6

    @property
    def minimal_cpu_ratio(self) -> float:
        return self.cycle_cpu_us / self.minimal_cpu_us

    def stage_us(self) -> list[tuple[str, float]]:
        """CPU µs per account by stage in the wrapped cycles: the stages, and the
        rest (the HTTP client, the event loop and the cycle's glue)."""
        per = {name: seconds / self.accounts * 1e6 for name, seconds in self.stages.items()}
        total = self.staged_cpu / self.accounts * 1e6
        rest = ("the rest: HTTP client, event loop, glue", total - sum(per.values()))
        return [*per.items(), rest, ("**the cycle (these runs)**", total)]

    @property
    def targeted(self) -> bool:
        return self.target is not None

    @property
    def target(self) -> float | None:
        """SPEC 8's bound on the CPU ratio for this row, if it has one."""
        if self.delay_ms:
            return None
        return TARGET_RATIOS.get((self.accounts, self.keys, self.moving))


async def bare_loop(
    session: aiohttp.ClientSession, urls: list[str], concurrency: int
) -> tuple[float, float]:
    """The floor: the same GETs at the same concurrency, each body read and decoded
    with json.loads, nothing else. Wall and CPU seconds."""
    gate = asyncio.Semaphore(concurrency)

    async def one(url: str) -> None:
        async with gate, session.get(url) as resp:
            json.loads(await resp.read())

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(url) for url in urls))
    return time.perf_counter() - started, time.process_time() - cpu


async def minimal_loop(
    session: aiohttp.ClientSession, urls: list[str], concurrency: int, seconds: float
) -> tuple[float, float]:
    """(b) The least a poller must do: the bot's own session (its connector, headers),
    one task per account behind a semaphore, a timeout, the status looked at, the
    body read and decoded with json.loads. Wall and CPU seconds."""
    gate = asyncio.Semaphore(concurrency)
    limit = aiohttp.ClientTimeout(total=seconds)

    async def one(url: str) -> None:
        async with gate, session.get(url, timeout=limit) as resp:
            if resp.status != 200:
                raise RuntimeError(f"minimal loop: HTTP {resp.status}")
            json.loads(await resp.read())

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(url) for url in urls))
    return time.perf_counter() - started, time.process_time() - cpu


async def measure_throughput(
    fake: FakeUpstream, accounts: int, runs: int, moving: bool, delay_ms: float = 0.0
) -> Throughput:
    """The bare loop `runs` times before the full cycle and `runs` times after it (so
    that a change in the machine's load shows in both), each time on its own: no App
    alive, so that the App's heap does not slow it down through the collector.
    The full cycle: two untimed cycles (the first one inserts every account; both
    warm up connections and code paths), then `runs` timed ones. Every account
    stays above the rules' thresholds: no alert fires; steady, the figures are
    the same at every poll; moving, every answer moves them. Both loops run
    under the collector settings of `balance-bot run` (gc_setting())."""
    t = Throughput(accounts, fake.keys, moving, delay_ms, runs)
    urls = [f"{fake.comet_url}?key={key_for(i)}" for i in range(accounts)]
    await fake.control(f"delay?ms={delay_ms:g}")
    await fake.set_low(False)
    await fake.set_moving(moving)

    async def bare_runs() -> None:
        async with aiohttp.ClientSession() as session:
            await bare_loop(session, urls, CONCURRENCY)  # warm-up: connections, code paths
            with bot_gc():
                for _ in range(runs):
                    gc.collect()
                    fake_cpu = await fake.cpu_seconds()
                    wall, cpu = await bare_loop(session, urls, CONCURRENCY)
                    t.fake_busy.append((await fake.cpu_seconds() - fake_cpu) / wall)
                    t.bare_seconds.append(wall)
                    t.bare_cpu.append(cpu)
        async with new_session(CONCURRENCY) as session:
            await minimal_loop(session, urls, CONCURRENCY, TIMEOUT)
            with bot_gc():
                for _ in range(runs):
                    gc.collect()
                    wall, cpu = await minimal_loop(session, urls, CONCURRENCY, TIMEOUT)
                    t.minimal_seconds.append(wall)
                    t.minimal_cpu.append(cpu)

    await bare_runs()
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as tmp:
        cfg = load_config(config_text(fake.comet_url, accounts, Path(tmp) / "state.db"))
        async with App(cfg) as app:
            for _ in range(2):
                await app.cycle()
            with bot_gc():
                for _ in range(runs):
                    gc.collect()
                    fake_cpu = await fake.cpu_seconds()
                    cpu, started = time.process_time(), time.perf_counter()
                    result = await app.cycle()
                    wall = time.perf_counter() - started
                    t.cycle_cpu.append(time.process_time() - cpu)
                    t.cycle_seconds.append(wall)
                    t.fake_busy.append((await fake.cpu_seconds() - fake_cpu) / wall)
                    failed = [r for r in result.results.values() if not isinstance(r, Snapshot)]
                    if not result.committed or failed or len(result.results) != accounts:
                        raise RuntimeError(f"cycle of {accounts}: not committed, or {failed[:3]}")
                    t.events = max(t.events, len(result.events))
                stages = wrap_stages(app, time.thread_time)  # as many cycles again, by stage
                staged_cpu = 0.0
                try:
                    for _ in range(runs):
                        gc.collect()
                        cpu = time.thread_time()
                        await app.cycle()
                        staged_cpu += time.thread_time() - cpu
                finally:
                    stages.undo()
                t.stages = {name: sec / runs for name, sec in stages.seconds.items()}
                t.staged_cpu = staged_cpu / runs
    gc.collect()
    await bare_runs()
    await fake.set_moving(False)
    await fake.control("delay?ms=0")
    return t


# --- every provider in one cycle ------------------------------------------------------


@dataclass
class Mixed:
    """Cycles of N accounts of one mix of providers: CPU and requests per cycle."""

    label: str
    accounts: int
    cpu: list[float] = field(default_factory=list)  # this process's CPU seconds per cycle
    requests: list[int] = field(default_factory=list)  # requests the fake served per cycle

    @property
    def cpu_per_request_us(self) -> float:
        return median(c / r for c, r in zip(self.cpu, self.requests, strict=True)) * 1e6


PROVIDER_CYCLE = ("cometapi", "newapi", "openrouter", "deepseek")


def mixed_config_text(fake: FakeUpstream, accounts: int, state: Path, mixed: bool) -> str:
    """N accounts on the fake: all CometAPI, or a quarter of each provider (in turn);
    the same two rules (the key rule applies where keys are listed)."""
    base = fake.url_of("comet")
    urls = {
        "cometapi": fake.comet_url,
        "newapi": base,
        "openrouter": f"{base}/api/v1",
        "deepseek": base,
    }
    parts = [f'[bot]\ninterval = "5m"\nstate_path = "{state}"\nhttp_listen = ""\n']
    for i in range(accounts):
        provider = PROVIDER_CYCLE[i % 4] if mixed else "cometapi"
        parts.append(
            f'[[accounts]]\nname = "acct-{i:05d}"\nkey = "{key_for(i)}"\n'
            f'url = "{urls[provider]}"\nprovider = "{provider}"\n'
        )
    parts.append(RULES_TOML)
    return "\n".join(parts)


async def measure_mixed(fake: FakeUpstream, accounts: int, runs: int) -> list[Mixed]:
    """An all-CometAPI cycle and a mixed one (¼ each of cometapi, newapi, openrouter,
    deepseek) of N accounts, balances moving, side by side: CPU per request made
    (newapi makes two requests per poll, openrouter one plus its key pages)."""
    await fake.set_low(False)
    await fake.set_moving(True)
    out = []
    for label, mixed in (("all cometapi", False), ("¼ each provider", True)):
        m = Mixed(label, accounts)
        with tempfile.TemporaryDirectory(prefix="bench-mixed-") as tmp:
            cfg = load_config(mixed_config_text(fake, accounts, Path(tmp) / "state.db", mixed))
            async with App(cfg) as app:
                for _ in range(2):
                    await app.cycle()
                with bot_gc():
                    for _ in range(runs):
                        gc.collect()
                        before = int((await fake.control("stats"))["requests"])
                        cpu = time.process_time()
                        result = await app.cycle()
                        m.cpu.append(time.process_time() - cpu)
                        m.requests.append(int((await fake.control("stats"))["requests"]) - before)
                        failed = [r for r in result.results.values() if not isinstance(r, Snapshot)]
                        if failed:
                            raise RuntimeError(f"mixed cycle: {failed[:3]}")
        out.append(m)
    await fake.set_moving(False)
    return out


def render_mixed(report: Report) -> list[str]:
    if len(report.mixed) != 2:
        return []
    comet, mixed = report.mixed
    ratio = mixed.cpu_per_request_us / comet.cpu_per_request_us
    return [
        f"Every provider in one cycle: N = {comet.accounts:,}, balances moving, CometAPI and "
        f"OpenRouter accounts with {KEYS} keys; CPU of this process per request made "
        "(median of the runs).",
        "",
        "| accounts | requests per cycle | CPU per request (µs) | vs all CometAPI | target | |",
        "|---|---:|---:|---:|---|---|",
        f"| {comet.label} | {median(comet.requests):.0f} | {comet.cpu_per_request_us:.0f} "
        "| 1.00x | | |",
        f"| {mixed.label} | {median(mixed.requests):.0f} | {mixed.cpu_per_request_us:.0f} "
        f"| {ratio:.2f}x | ≤ {TARGET_MIXED:.2f}x | {verdict(ratio <= TARGET_MIXED)} |",
    ]


def json_floor(repeats: int = 2000) -> tuple[float, float]:
    """Microseconds, per account at K keys, of the stdlib JSON work a full cycle would
    do on top of the bare loop: decoding the body (which the bare loop now does
    too), and encoding the snapshot that is stored in the state file."""
    body = quota_body(0, KEYS, HIGH_TOTAL)
    doc = parse_quota("acct", body, dt.datetime.now(dt.UTC)).to_dict()
    times = []
    for work in (lambda: json.loads(body), lambda: json.dumps(doc)):
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(repeats):
                work()
            runs.append((time.perf_counter() - started) / repeats * 1e6)
        times.append(min(runs))
    return times[0], times[1]


# --- rule engine ----------------------------------------------------------------------

# Five key rules with mixed globs: per call, every (key, rule) pair is tested
# against the rule's globs, and the subjects in scope are evaluated.
MIXED_RULES_TOML = """
[[accounts]]
name = "main"
key = "sk-rules-only-0123456789"

[[rules]]
name = "any-key-low"
target = "key"
exclude_keys = ["balance-query"]
below = 1

[[rules]]
name = "prod-percent"
target = "key"
keys = ["prod-*"]
below_percent = 10
severity = "critical"

[[rules]]
name = "dev-test-low"
target = "key"
keys = ["dev-*", "test-*"]
below = 5

[[rules]]
name = "batch-percent"
target = "key"
keys = ["batch-?-*"]
below_percent = 25
recover_above_percent = 30

[[rules]]
name = "api-keys"
target = "key"
keys = ["*-api-*"]
exclude_keys = ["*-canary-*"]
below = 2
severity = "critical"
"""

# Five key rules that each watch every key: 10,000 keys x 5 rules subjects.
ALL_KEYS_RULES_TOML = """
[[accounts]]
name = "main"
key = "sk-rules-only-0123456789"

[[rules]]
name = "below-1"
target = "key"
exclude_keys = ["balance-query"]
below = 1
severity = "critical"

[[rules]]
name = "below-5"
target = "key"
below = 5

[[rules]]
name = "below-10-percent"
target = "key"
below_percent = 10
severity = "critical"

[[rules]]
name = "below-25-percent"
target = "key"
below_percent = 25
recover_above_percent = 30

[[rules]]
name = "below-2-repeat"
target = "key"
below = 2
repeat = "1h"
"""


@dataclass
class RuleEngine:
    label: str
    keys: int
    rules: int
    evaluations: int  # subjects in the rules' scope, summed over the rules
    firing: int  # alerts firing after the first call
    steady_seconds: list[float]
    first_seconds: list[float]

    @property
    def steady_rate(self) -> float:
        return self.evaluations / statistics.median(self.steady_seconds)

    @property
    def first_rate(self) -> float:
        return self.evaluations / statistics.median(self.first_seconds)


def rule_snapshot(keys: int, at: dt.datetime) -> Snapshot:
    """One account with `keys` keys of mixed names; about 1 in 6 below some rule."""
    kinds = ("prod-api", "prod-web", "dev-api", "test-job", "batch-a", "ml-canary-api", "misc")
    balances = [KeyBalance("balance-query", 0.0, 0.0)]
    for j in range(keys - 1):
        name = f"{kinds[j % len(kinds)]}-{j:05d}"
        if j % 101 == 0:
            balances.append(KeyBalance(name, 999999999.0, -1.0))  # unlimited
        else:
            balances.append(KeyBalance(name, (j * 37 % 600) / 10, (j * 11 % 300) / 10))
    return Snapshot("main", "bench", 500.0, 20.0, 1000, tuple(balances), at)


def measure_rules(label: str, toml: str, keys: int, repeats: int) -> RuleEngine:
    """evaluate() on one snapshot with `keys` keys: from an empty state (first poll:
    every alert fires) and in the steady state (the same numbers one poll later:
    firing alerts stay firing, nothing is sent). A subject evaluation is one
    subject in one rule's scope (unlimited keys and keys outside the globs are
    tested, but not counted)."""
    rules: tuple[Rule, ...] = bot_config.parse(toml, environ={}).rules
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    t1 = t0 + dt.timedelta(minutes=5)
    snap = rule_snapshot(keys, t0)
    evaluations = sum(sum(1 for _ in measures(rule, snap)) for rule in rules)
    results = {"main": snap}
    first_times, steady_times = [], []
    state, _ = evaluate(results, rules, EngineState(), Context(t0, 3))
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        evaluate(results, rules, EngineState(), Context(t0, 3))
        first_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        _, events = evaluate(results, rules, state, Context(t1, 3))
        steady_times.append(time.perf_counter() - started)
        assert not events
    firing = sum(s.firing for s in state.alerts.values())
    return RuleEngine(label, keys, len(rules), evaluations, firing, steady_times, first_times)


# --- bot processes ----------------------------------------------------------------------

BALANCE_BOT = Path(sys.executable).with_name("balance-bot")  # the installed console script


class BotRun:
    """`balance-bot run -c <config>`, the installed console script, as a child
    process; every stderr line is kept with the CLOCK_MONOTONIC time it was read."""

    def __init__(self, config: Path, log_level: str = "INFO") -> None:
        self.args = (str(BALANCE_BOT), "run", "-c", str(config), "--log-level", log_level)
        self.lines: list[tuple[float, str]] = []
        self.spawned_at = 0.0
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BotRun:
        if not BALANCE_BOT.exists():
            raise RuntimeError(f"{BALANCE_BOT} not found: install the bot (pip install -e .)")
        self.spawned_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            *self.args,
            cwd=CODE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(CODE)},  # the `bot` measured (--code)
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader:
            await self._reader

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            async with self._changed:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))
                self._changed.notify_all()

    async def wait_line(self, needle: str, within: float = 60.0) -> float:
        """When the first stderr line containing `needle` was read."""

        def found() -> float | None:
            return next((at for at, line in self.lines if needle in line), None)

        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(lambda: found() is not None)
        except TimeoutError:
            text = "\n".join(line for _, line in self.lines[-40:])
            raise RuntimeError(f"no {needle!r} within {within:g}s; stderr:\n{text}") from None
        return found()  # type: ignore[return-value]

    def field(self, needle: str, name: str) -> str:
        """The value of `name=...` in the first stderr line containing `needle`."""
        line = next(line for _, line in self.lines if needle in line)
        match = re.search(rf"\b{name}=(\S+)", line)
        if not match:
            raise RuntimeError(f"no {name}= in {line!r}")
        return match.group(1)

    def problems(self) -> list[str]:
        """Its log lines at WARNING or above, other than alerts (alert.*)."""
        return [
            line
            for _, line in self.lines
            if re.match(r"\S+ (WARNING|ERROR|CRITICAL) ", line) and " alert." not in line
        ]

    def status(self, field_name: str) -> float:
        """A /proc/<pid>/status memory field (VmRSS, VmHWM) in MB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(field_name)


@dataclass
class FirstPoll:
    label: str
    to_request: list[float]  # spawn -> the fake CometAPI receives the first request
    to_poll_ok: list[float]  # spawn -> the bot logs `poll.ok` (the cycle is saved)


async def first_poll_of(fake: FakeUpstream, runs: int, extra: str, label: str) -> FirstPoll:
    """Spawn `balance-bot run` (1 account with 50 keys, interval 1h, /healthz on a
    free port) `runs` times: seconds until the fake gets the first request, and
    until `poll.ok` is logged (after the cycle is committed to the state file)."""
    to_request, to_poll_ok = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
            path = Path(tmp) / "rules.toml"
            text = config_text(
                fake.comet_url, 1, Path(tmp) / "state.db", "1h", "127.0.0.1:0", extra
            )
            path.write_text(text)
            await fake.set_low(False)
            await fake.control("reset")
            async with BotRun(path, "DEBUG") as bot:
                poll_ok = await bot.wait_line("poll.ok")
                first = (await fake.control("stats"))["first_request_at"]
                to_request.append(first - bot.spawned_at)
                to_poll_ok.append(poll_ok - bot.spawned_at)
    return FirstPoll(label, to_request, to_poll_ok)


async def measure_first_poll(fake: FakeUpstream, runs: int) -> list[FirstPoll]:
    both = telegram_toml(fake) + slack_toml(fake)
    return [
        await first_poll_of(fake, runs, both, "Telegram + Slack configured"),
        await first_poll_of(fake, runs, "", "log notifier only"),
    ]


@dataclass
class IdleRss:
    rss_mb: float
    hwm_mb: float
    log_only_rss_mb: float | None
    problems: list[str] = field(default_factory=list)  # WARNING+ log lines but alerts


async def idle_rss_of(fake: FakeUpstream, extra: str, ready: list[str], idle: float) -> IdleRss:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        path = Path(tmp) / "rules.toml"
        text = config_text(fake.comet_url, 1, Path(tmp) / "state.db", "1h", "127.0.0.1:0", extra)
        path.write_text(text)
        async with BotRun(path) as bot:
            for needle in ready:
                await bot.wait_line(needle)
            await asyncio.sleep(idle)
            return IdleRss(bot.status("VmRSS"), bot.status("VmHWM"), None, bot.problems())


async def measure_idle_rss(fake: FakeUpstream, idle: float, baseline: bool) -> IdleRss:
    """VmRSS of `balance-bot run` (1 account) with Telegram and Slack both started
    and listening (long polling, Socket Mode), `idle` seconds after both said so."""
    await fake.set_low(False)
    both = await idle_rss_of(
        fake,
        telegram_toml(fake) + slack_toml(fake),
        ["bot.started", "telegram.listening", "slack.listening"],
        idle,
    )
    if baseline:
        log_only = await idle_rss_of(fake, "", ["bot.started"], idle)
        both.log_only_rss_mb = log_only.rss_mb
    return both


# --- peak RSS of `balance-bot run` over cycles of N accounts -----------------------------


@dataclass
class PeakRss:
    accounts: int
    first_hwm_mb: float  # VmHWM after the first cycle (every account new, nothing fires)
    peak_mb: float  # VmHWM after the second cycle (half the accounts cross) and its sends
    rss_mb: float  # VmRSS then
    telegram_messages: int  # sendMessage calls the second cycle's alerts took
    scraped_mb: float = 0.0  # VmHWM after one GET /metrics, next
    metrics_mb: float = 0.0  # the size of that /metrics page
    metrics_seconds: float = 0.0  # and how long it took
    problems: list[str] = field(default_factory=list)  # WARNING+ log lines but alerts


async def wait_cycle(
    http: aiohttp.ClientSession, base: str, after: str | None, within: float
) -> str:
    """The `last_cycle` of /healthz once it is set and differs from `after`."""
    async with asyncio.timeout(within):
        while True:
            async with http.get(f"{base}/healthz") as resp:
                last = (await resp.json())["last_cycle"]
            if last and last != after:
                return str(last)
            await asyncio.sleep(0.25)


def pending(state: Path) -> int:
    """Messages still queued in the bot's outbox, read from its state file (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)) as db:
        return int(db.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0])


async def wait_outbox_empty(state: Path, within: float) -> None:
    """Until the outbox has nothing pending. The state file is read rather than
    /metrics: at N = 5,000 x 50 one /metrics page is ~20 MB and its rendering
    raises the bot's RSS by itself (measured separately)."""
    async with asyncio.timeout(within):
        while pending(state):  # noqa: ASYNC110 - another process: nothing to wait on
            await asyncio.sleep(0.25)


async def measure_peak_rss(fake: FakeUpstream, accounts: int, interval: int) -> PeakRss:
    """`balance-bot run` with N accounts and both notifiers: a first cycle with every
    account at $100, then the fake puts half of them at $10 and the second cycle
    (`interval` s later) fires N/2 alerts, which go out to the fake Telegram and
    Slack. VmHWM of the process once that is all done (only /healthz was asked
    meanwhile); then once more after one GET /metrics, as a Prometheus scrape."""
    await fake.set_low(False)
    await fake.set_moving(False)
    with tempfile.TemporaryDirectory(prefix="bench-peak-") as tmp:
        path = Path(tmp) / "rules.toml"
        extra = telegram_toml(fake) + slack_toml(fake)
        state = Path(tmp) / "state.db"
        path.write_text(
            config_text(fake.comet_url, accounts, state, f"{interval}s", "127.0.0.1:0", extra)
        )
        async with BotRun(path) as bot, aiohttp.ClientSession() as http:
            await bot.wait_line("http.listening", 120)
            base = f"http://127.0.0.1:{bot.field('http.listening', 'port')}"
            first = await wait_cycle(http, base, None, 300)
            first_hwm = bot.status("VmHWM")
            sent = len((await fake.control("stats"))["telegram_received"])
            await fake.set_low(True)
            await wait_cycle(http, base, first, interval + 300)
            await wait_outbox_empty(state, 300)
            sent = len((await fake.control("stats"))["telegram_received"]) - sent
            peak, rss = bot.status("VmHWM"), bot.status("VmRSS")
            started = time.perf_counter()
            async with http.get(f"{base}/metrics") as resp:
                page = await resp.read()
            scrape_seconds = time.perf_counter() - started
            scraped = bot.status("VmHWM")
            problems = bot.problems()
    await fake.set_low(False)
    result = PeakRss(accounts, first_hwm, peak, rss, sent, scraped, len(page) / 1e6, scrape_seconds)
    result.problems = problems
    return result


# --- log lines of the in-process App ---------------------------------------------------


class LogWatch(logging.Handler):
    """Counts the in-process bot's log events at WARNING or above, alerts aside."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        event = record.getMessage()
        if not event.startswith("alert."):
            key = f"{record.levelname} {event}"
            self.counts[key] = self.counts.get(key, 0) + 1


# --- detection to send ---------------------------------------------------------------

SPLIT = re.compile(r" \((\d+)/(\d+)\)$")  # the "(i/n)" of a message Telegram's limit split


@dataclass
class Latency:
    accounts: int
    crossing: int  # accounts that cross per sample
    detect_ms: list[float] = field(default_factory=list)  # detection -> first sendMessage
    cycle_ms: list[float] = field(default_factory=list)  # cycle start -> first sendMessage
    messages: list[int] = field(default_factory=list)  # sendMessage to the chat per cycle
    splits: list[int] = field(default_factory=list)  # of which parts 2..n of a split message
    edits: list[int] = field(default_factory=list)  # editMessageText calls per cycle

    @property
    def grouped(self) -> list[int]:
        """Messages per cycle, counting a split message once."""
        return [m - s for m, s in zip(self.messages, self.splits, strict=True)]


async def measure_latency(
    fake: FakeUpstream, accounts: int, crossing: int, samples: int
) -> Latency:
    """In-process `App.serve` (what `balance-bot run` runs) with the Telegram notifier
    started and listening, balances moving. Each sample moves `crossing` accounts
    (the even-numbered ones from 0) across the $20 rule, down on even samples
    (FIRE) and back up on odd ones (RESOLVE), and runs a cycle. Detection: the
    moment the cycle's first `bot.app.cycle.evaluate_account` call whose outcome has
    events returned (the module attribute is wrapped). First send: the fake
    Telegram's receive time of the cycle's first sendMessage (CLOCK_MONOTONIC, shared
    by both processes). The next sample starts once the outbox is empty."""
    upto = None if crossing * 2 >= accounts else crossing * 2 - 1
    lat = Latency(accounts, crossing)
    await fake.set_low(False)
    await fake.set_moving(True)
    detected: list[float] = []
    evaluate_account = bot_cycle.evaluate_account

    def timed(*args: Any, **kwargs: Any) -> Any:
        outcome = evaluate_account(*args, **kwargs)
        if outcome.events and not detected:
            detected.append(time.monotonic())
        return outcome

    bot_cycle.evaluate_account = timed  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp, restored_gc():
            state = Path(tmp) / "state.db"
            text = config_text(fake.comet_url, accounts, state, "1h", "", telegram_toml(fake))
            async with App(load_config(text)) as app:
                stop, ready = asyncio.Event(), asyncio.Event()
                serving = asyncio.create_task(app.serve(stop, lambda _: ready.set()))
                await asyncio.wait_for(ready.wait(), 60)
                await app.pipeline.wait_cycles(1)  # the scheduler's first cycle: nothing to send
                await outbox_empty(app)
                for i in range(samples):
                    before = await fake.control("stats")
                    await fake.set_low(i % 2 == 0, upto)
                    gc.collect()
                    detected.clear()
                    started = time.monotonic()
                    result = await app.cycle()
                    kind = EventKind.FIRE if i % 2 == 0 else EventKind.RESOLVE
                    if sum(e.kind is kind for e in result.events) != crossing or not detected:
                        raise RuntimeError(f"unexpected events: {result.events[:5]!r}")
                    await outbox_empty(app)
                    after = await fake.control("stats")
                    sent = [m for m in after["telegram"][len(before["telegram"]) :]]
                    to_chat = [m for m in sent if str(m[1]) == str(TELEGRAM_CHAT)]
                    if not to_chat:
                        raise RuntimeError("no sendMessage for the cycle")
                    first = min(m[0] for m in to_chat)
                    lat.detect_ms.append((first - detected[0]) * 1000)
                    lat.cycle_ms.append((first - started) * 1000)
                    lat.messages.append(len(to_chat))
                    lat.splits.append(sum(_split_part(m[2]) for m in to_chat))
                    edits = after["telegram_edits"][len(before["telegram_edits"]) :]
                    lat.edits.append(len(edits))
                stop.set()
                await asyncio.wait_for(serving, 30)
    finally:
        bot_cycle.evaluate_account = evaluate_account
    await fake.set_low(False)
    await fake.set_moving(False)
    return lat


def _split_part(title: str) -> bool:
    """Part 2..n of a message split at Telegram's 4,096-character limit."""
    match = SPLIT.search(title)
    return match is not None and int(match[1]) > 1


async def outbox_empty(app: App, within: float = 120.0) -> None:
    """Wait until every queued message went out. The first look is 0.5 s later, so
    that our polling does not compete with the delivery being timed."""
    await asyncio.sleep(0.5)
    async with asyncio.timeout(within):
        while (await app.store.backlog()).get("telegram"):  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.1)


# --- the state file after moving polls ---------------------------------------------------


@dataclass
class StateFile:
    accounts: int
    keys: int
    polls: int
    db_mb: float  # as the bot left them after the last poll (App still open)
    wal_mb: float
    closed_mb: float  # database + WAL after the App closed
    samples: int  # rows in the history table, if it has one
    poll_seconds: list[float]

    @property
    def total_mb(self) -> float:
        return self.db_mb + self.wal_mb


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6 if path.exists() else 0.0


async def measure_state_file(fake: FakeUpstream, accounts: int, polls: int) -> StateFile:
    """`polls` in-process cycles (App.cycle(), as scheduled) of N accounts with the
    balances moving at every poll: the state file's size (database + WAL)."""
    await fake.set_low(False)
    await fake.set_moving(True)
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        path = Path(tmp) / "state.db"
        wal = path.with_name(path.name + "-wal")
        async with App(load_config(config_text(fake.comet_url, accounts, path))) as app:
            with bot_gc():
                for _ in range(polls):
                    started = time.perf_counter()
                    result = await app.cycle()
                    times.append(time.perf_counter() - started)
                    if not result.committed:
                        raise RuntimeError("a cycle was not committed")
            db_mb, wal_mb = _size_mb(path), _size_mb(wal)
        closed = _size_mb(path) + _size_mb(wal)
        samples = 0
        with contextlib.closing(sqlite3.connect(path)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if "samples" in tables:
                samples = db.execute("SELECT count(*) FROM samples").fetchone()[0]
    await fake.set_moving(False)
    return StateFile(accounts, fake.keys, polls, db_mb, wal_mb, closed, samples, times)


# --- profile of in-process cycles ------------------------------------------------------

# (group, a pattern of a cProfile entry's "path:line(function)"), the first match wins;
# built-in functions count in the group of the function that called them
GROUPS: tuple[tuple[str, str], ...] = (
    (
        "JSON decode + model",
        r"json/decoder|json/__init__.py:\d+\(loads\)|bot/engine/model.py"
        r"|cometapi.py:\d+\((_?parse|_number|_amount|_key|clean|unique)",
    ),
    (
        "SQLite commit (with JSON encode)",
        r"bot/state/sqlite/store.py|bot/state/sqlite/samples.py|sqlite3|json/encoder|json/__init__.py:\d+\(dumps\)",
    ),
    ("history", r"bot/app/history.py|bot/engine/forecast.py"),
    ("rule engine", r"bot/engine/rules.py|bot/notify/routing.py|bot/app/views.py|fnmatch"),
    (
        "HTTP client (aiohttp, yarl, retries)",
        r"aiohttp|yarl|multidict|stamina|tenacity|bot/upstream/cometapi.py|propcache|http/",
    ),
    (
        "logging, redaction, metrics",
        r"logging/|bot/common/logs.py|bot/common/secrets.py|bot/ops/metrics.py|prom",
    ),
    ("event loop, sockets", r"asyncio/|selectors|socket|ssl"),
    ("cycle glue (bot/app/cycle.py, bot/app/service.py)", r"bot/app/cycle.py|bot/app/service.py"),
)


def group_of(where: str) -> str:
    for group, pattern in GROUPS:
        if re.search(pattern, where):
            return group
    return "other"


@dataclass
class Profile:
    accounts: int
    keys: int
    cycles: int
    wall_s: float  # per cycle, not profiled
    cpu_s: float
    gc_s: float  # per cycle, in the collector (gc.callbacks), not profiled
    gc_collections: list[int]
    stages: list[tuple[str, float]]  # per cycle, not profiled: wrapped functions
    profiled_s: float  # per cycle, total own time under cProfile
    groups: list[tuple[str, float]]  # own time per cycle
    top_own: list[tuple[str, str, float, float]]  # (group, function, own s, cumulative s)
    top_cumulative: list[tuple[str, str, float, float]]


def _where(key: tuple[str, int, str]) -> str:
    """A cProfile entry as "path:line(function)", the path from site-packages, the
    stdlib or the measured code's root; a built-in as its name."""
    file, line, function = key
    if file == "~":
        return function
    path = file.split("site-packages/")[-1].split("/lib/python3.11/")[-1]
    if file.startswith(str(CODE) + "/"):
        path = file[len(str(CODE)) + 1 :]
    return f"{path}:{line}({function})"


def grouped_profile(stats: pstats.Stats, cycles: int) -> tuple[dict[str, float], list[Any]]:
    """Own time per group and cycle, and (group, entry, own, cumulative) rows. A
    built-in, comprehension or lambda has no group of its own: its time goes to
    the groups of its callers, in proportion."""
    table: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    memo: dict[tuple[str, int, str], str] = {}

    def inherits(key: tuple[str, int, str]) -> bool:
        return key[0] == "~" or key[2].startswith("<")

    def group(key: tuple[str, int, str], depth: int = 0) -> str:
        """The entry's group; one inheriting it: its heaviest caller's."""
        if key not in memo:
            callers = table.get(key, (0, 0, 0, 0, {}))[4]
            if not inherits(key):
                memo[key] = group_of(_where(key))
            elif callers and depth < 20:
                heaviest = max(callers.items(), key=lambda c: c[1][2])[0]
                memo[key] = group(heaviest, depth + 1)
            else:
                memo[key] = "other"
        return memo[key]

    groups: dict[str, float] = {}
    rows = []
    for key, (_, _, own, cumulative, callers) in table.items():
        if inherits(key) and callers:
            for caller, (_, _, seconds, _) in callers.items():
                name = group(caller)
                groups[name] = groups.get(name, 0.0) + seconds / cycles
        else:
            groups[group(key)] = groups.get(group(key), 0.0) + own / cycles
        if "bench/bench.py" not in key[0]:
            rows.append((group(key), _where(key), own / cycles, cumulative / cycles))
    return groups, rows


class Stages:
    """Wall time spent in named functions, wrapped where the cycle looks them up
    (module attributes, instance attributes); each wrapper costs about a µs."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock  # time.thread_time: the event loop thread's CPU
        self.seconds: dict[str, float] = {}
        self._undo: list[tuple[object, str, Any]] = []

    def wrap(self, owner: object, name: str, stage: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return
        seconds, clock = self.seconds, self.clock
        seconds.setdefault(stage, 0.0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[stage] += clock() - started

        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            # the state's coroutines: SQLite's run inline, so the time is theirs
            started = clock()
            try:
                return await original(*args, **kwargs)
            finally:
                seconds[stage] += clock() - started

        setattr(owner, name, timed_async if inspect.iscoroutinefunction(original) else timed)
        self._undo.append((owner, name, original))

    def undo(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def wrap_stages(app: App, clock: Callable[[], float] = time.perf_counter) -> Stages:
    """The cycle's stages that are plain function calls; the rest of a cycle is
    fetching (aiohttp), the event loop, logging and the cycle's own code."""
    import bot.upstream.cometapi as bot_cometapi  # the code measured

    stages = Stages(clock)
    stages.wrap(bot_cometapi, "_parse", "parse: JSON decode + model")
    for name in ("advance", "record", "flow"):
        stages.wrap(app.model.history, name, "history (advance, record, flow)")
    stages.wrap(bot_cycle, "evaluate_account", "rule engine (evaluate_account)")
    stages.wrap(app.store, "commit_cycle", "SQLite commit (commit_cycle)")
    return stages


async def measure_profile(fake: FakeUpstream, accounts: int, cycles: int) -> Profile:
    """In-process cycles of N accounts with moving balances: `cycles` timed with the
    collector's time taken through gc.callbacks, then `cycles` under cProfile."""
    await fake.set_low(False)
    await fake.set_moving(True)
    walls, cpus = [], []
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        cfg = load_config(config_text(fake.comet_url, accounts, Path(tmp) / "state.db"))
        async with App(cfg) as app:
            for _ in range(2):
                await app.cycle()
            with bot_gc():
                stages = wrap_stages(app)
                try:
                    with GcTimer() as timer:
                        for _ in range(cycles):
                            cpu, started = time.process_time(), time.perf_counter()
                            await app.cycle()
                            walls.append(time.perf_counter() - started)
                            cpus.append(time.process_time() - cpu)
                finally:
                    stages.undo()
                profiler = cProfile.Profile()
                for _ in range(cycles):
                    profiler.enable()
                    await app.cycle()
                    profiler.disable()
    await fake.set_moving(False)
    groups, rows = grouped_profile(pstats.Stats(profiler), cycles)
    top_own = sorted(rows, key=lambda r: -r[2])[:20]
    top_cumulative = sorted(rows, key=lambda r: -r[3])[:25]
    return Profile(
        accounts,
        fake.keys,
        cycles,
        median(walls),
        median(cpus),
        timer.seconds / cycles,
        timer.collections,
        [(name, seconds / cycles) for name, seconds in stages.seconds.items()],
        sum(groups.values()),
        sorted(groups.items(), key=lambda g: -g[1]),
        top_own,
        top_cumulative,
    )


# --- report --------------------------------------------------------------------------


@dataclass
class Report:
    plan: Plan
    command: str
    label: str
    throughput: list[Throughput] = field(default_factory=list)
    slow: list[Throughput] = field(default_factory=list)
    json_us: tuple[float, float] | None = None  # json.loads of a body, json.dumps of a snapshot
    rules: list[RuleEngine] = field(default_factory=list)
    first_poll: list[FirstPoll] = field(default_factory=list)
    idle: IdleRss | None = None
    peak: PeakRss | None = None
    latencies: list[Latency] = field(default_factory=list)
    state: StateFile | None = None
    profile: Profile | None = None
    mixed: list[Mixed] = field(default_factory=list)
    logs: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def machine(label: str) -> str:
    cpu, mem = "unknown CPU", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        mem = f", {kib / 1024**2:.0f} GiB RAM"
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, bot at {label} ({CODE}), "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )


def code_label() -> str:
    """The commit of this checkout, if `bot` comes from it; else the directory's name."""
    if CODE != ROOT:
        return CODE.name
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "bot"], capture_output=True, text=True
    ).stdout.strip()
    return f"{commit or '?'}{' with uncommitted changes in bot/' if dirty else ''}"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def median(values: list[float]) -> float:
    return statistics.median(values)


def _secs(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "] s"


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def summary(report: Report) -> list[str]:
    """Every figure with a target, against it."""
    out = ["| figure | result | target | |", "|---|---:|---|---|"]
    for t in report.throughput:
        if t.targeted:
            out.append(
                f"| full cycle / bare decode loop, N = {t.label}, balances moving (wall; "
                f"CPU per account) | {t.ratio:.2f}x; {t.cpu_ratio:.2f}x | ≤ {t.target}x CPU "
                f"| {verdict(t.cpu_ratio <= (t.target or 0))} |"
            )
            out.append(
                f"| full cycle / minimal loop (b), N = {t.label}, balances moving (wall; "
                f"CPU per account) | {t.minimal_ratio:.2f}x; {t.minimal_cpu_ratio:.2f}x "
                f"| ≤ {t.target}x CPU | {verdict(t.minimal_cpu_ratio <= (t.target or 0))} |"
            )
    for lat in report.latencies:
        med = median(lat.detect_ms)
        out.append(
            f"| detection → first sendMessage, N = {lat.accounts:,}, {lat.crossing:,} "
            f"crossing (median; max) | {med:.1f} ms; {max(lat.detect_ms):.1f} ms "
            f"| ≤ {TARGET_LATENCY:g} ms | {verdict(med <= TARGET_LATENCY)} |"
        )
    if report.latencies:
        most = max(max(lat.grouped) for lat in report.latencies)
        out.append(
            f"| messages per destination per cycle, splits at the 4,096 limit aside (most "
            f"in any cycle) | {most} | ≤ {TARGET_MESSAGES} | {verdict(most <= TARGET_MESSAGES)} |"
        )
    if report.idle:
        rss = report.idle.rss_mb
        out.append(
            f"| idle RSS, `balance-bot run`, Telegram + Slack | {rss:.1f} MB "
            f"| ≤ {TARGET_IDLE_RSS:g} MB | {verdict(rss <= TARGET_IDLE_RSS)} |"
        )
    if report.peak:
        p = report.peak
        ok = p.peak_mb <= TARGET_PEAK_RSS
        out.append(
            f"| peak RSS, `balance-bot run`, N = {p.accounts:,} x {KEYS}, cycles and sends "
            f"| {p.peak_mb:.1f} MB | ≤ {TARGET_PEAK_RSS:g} MB | {verdict(ok)} |"
        )
        ok = p.scraped_mb <= TARGET_PEAK_RSS
        out.append(
            f"| the same after one GET /metrics ({p.metrics_mb:.1f} MB page, "
            f"{p.metrics_seconds:.1f} s) | {p.scraped_mb:.1f} MB | ≤ {TARGET_PEAK_RSS:g} MB "
            f"| {verdict(ok)} |"
        )
    if report.state:
        s = report.state
        out.append(
            f"| state file after {s.polls} moving polls, N = {s.accounts:,} x {s.keys} "
            f"(database + WAL) | {s.total_mb:.1f} MB | — | |"
        )
    for r in report.rules:
        ok = min(r.steady_rate, r.first_rate) >= TARGET_EVALS
        out.append(
            f"| rule engine, {r.label} (steady; empty state) | {fmt_rate(r.steady_rate)}/s; "
            f"{fmt_rate(r.first_rate)}/s | ≥ {TARGET_EVALS:,}/s | {verdict(ok)} |"
        )
    for f in report.first_poll:
        first = median(f.to_poll_ok)
        out.append(
            f"| first poll after spawn, {f.label} | {first:.2f} s | ≤ {TARGET_FIRST_POLL} s "
            f"| {verdict(first <= TARGET_FIRST_POLL)} |"
        )
    return out


def render_throughput(report: Report) -> list[str]:
    out = [
        f"Cycle vs bare loop: max_concurrency = {CONCURRENCY} (the bot's default) for both, "
        "the same URLs; the bare loop decodes every body with json.loads. No alert fires. "
        "Median of the runs (the bare loop runs that many times before the cycles and again "
        f"after them). CPU: this process's CPU time per account. Collector: {gc_setting()}.",
        "",
        "| N x K | balances | runs | bare (acc/s) | full cycle (acc/s) | cycle/bare, wall "
        "| bare CPU (µs/acc) | minimal (b) CPU (µs/acc) | cycle CPU (µs/acc) "
        "| cycle/bare, CPU | cycle/minimal (b), wall; CPU | target | |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for t in [*report.throughput, *report.slow]:
        label = t.label + (f", upstream {t.delay_ms:g} ms (context)" if t.delay_ms else "")
        target = f"≤ {t.target}x CPU" if t.targeted else ""
        out.append(
            f"| {label} | {t.balances} | {t.runs} | {fmt_rate(t.bare_rate)} "
            f"| {fmt_rate(t.cycle_rate)} | {t.ratio:.2f}x | {t.bare_cpu_us:.0f} "
            f"| {t.minimal_cpu_us:.0f} | {t.cycle_cpu_us:.0f} | {t.cpu_ratio:.2f}x "
            f"| {t.minimal_ratio:.2f}x; {t.minimal_cpu_ratio:.2f}x | {target} "
            f"| {verdict(t.cpu_ratio <= (t.target or 0)) if t.targeted else ''} |"
        )
    if report.json_us:
        loads, dumps = report.json_us
        out.extend(
            [
                "",
                f"For scale: the stdlib takes {loads:.0f} µs to decode one {KEYS}-key body "
                f"(json.loads) and {dumps:.0f} µs to encode one stored snapshot (json.dumps).",
            ]
        )
    staged = [t for t in report.throughput if t.stages and t.moving]
    if staged:
        out.extend(
            [
                "",
                "Where a moving cycle's CPU goes, µs per account (the event loop thread's "
                "CPU): the stages timed by wrapping them, in as many cycles again after the "
                "timed ones. The rest, less the minimal loop's (b) CPU (HTTP and json.loads, "
                "last row), is about what the cycle's own glue costs.",
                "",
                "| stage | " + " | ".join(t.label for t in staged) + " |",
                "|---|" + "---:|" * len(staged),
            ]
        )
        columns = [dict(t.stage_us()) for t in staged]
        for name in columns[0]:
            cells = " | ".join(f"{c.get(name, 0.0):.1f}" for c in columns)
            out.append(f"| {name} | {cells} |")
        floors = " | ".join(f"{t.minimal_cpu_us:.1f}" for t in staged)
        out.append(f"| for scale: minimal loop (b) | {floors} |")
    return out


def render_latency(report: Report) -> list[str]:
    out = [
        "Detection → first send: in-process `App.serve()` with the Telegram notifier "
        "started and listening, balances moving; detection = the cycle's first "
        "`evaluate_account` with events; send = the fake Telegram receiving the cycle's "
        "first sendMessage. Samples alternate FIRE and RESOLVE cycles.",
        "",
        "| N | crossing | samples | detection → send, median (max) | cycle start → send, "
        "median | messages per cycle (splits among them) | edits per cycle | target | |",
        "|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for lat in report.latencies:
        med = median(lat.detect_ms)
        counts = sorted(set(zip(lat.messages, lat.splits, strict=True)))
        messages = ", ".join(f"{m} ({s})" for m, s in counts)
        out.append(
            f"| {lat.accounts:,} | {lat.crossing:,} | {len(lat.detect_ms)} "
            f"| {med:.1f} ms ({max(lat.detect_ms):.1f}) | {median(lat.cycle_ms):.1f} ms "
            f"| {messages} | {min(lat.edits)} to {max(lat.edits)} | ≤ {TARGET_LATENCY:g} ms "
            f"| {verdict(med <= TARGET_LATENCY)} |"
        )
    return out


def render_profile(p: Profile) -> list[str]:
    out = [
        f"Profile: N = {p.accounts:,} x {p.keys}, balances moving, {p.cycles} cycles. "
        f"Not profiled: {p.wall_s * 1000:.0f} ms wall, {p.cpu_s * 1000:.0f} ms CPU per "
        f"cycle (median), of which {p.gc_s * 1000:.0f} ms ({p.gc_s / p.wall_s:.0%}) in the "
        f"garbage collector (gc.callbacks; collections per generation over {p.cycles} "
        f"cycles: {p.gc_collections}). The stages that are function calls, timed by "
        "wrapping them (mean per cycle; the rest is fetching, the event loop, logging and "
        "the cycle's own code):",
        "",
        "| stage | per cycle | share of the wall time |",
        "|---|---:|---:|",
    ]
    out.extend(f"| {g} | {s * 1000:.0f} ms | {s / p.wall_s:.0%} |" for g, s in p.stages)
    rest = p.wall_s - sum(s for _, s in p.stages)
    out.extend(
        [
            f"| the rest: fetch (aiohttp), event loop, logging, cycle code "
            f"| {rest * 1000:.0f} ms | {rest / p.wall_s:.0%} |",
            "",
            f"Under cProfile (which inflates many small calls: {p.profiled_s * 1000:.0f} ms "
            "of own time per cycle), own time by group; a built-in, comprehension or lambda "
            "counts in its callers' groups:",
            "",
            "| group | own time per cycle | share |",
            "|---|---:|---:|",
        ]
    )
    out.extend(
        f"| {g} | {s * 1000:.0f} ms | {s / p.profiled_s:.0%} |" for g, s in p.groups if s > 0
    )
    for title, rows in (("own", p.top_own), ("cumulative", p.top_cumulative)):
        out.extend(
            [
                "",
                f"Top entries by {title} time (per cycle):",
                "",
                "| group | function | own | cumulative |",
                "|---|---|---:|---:|",
            ]
        )
        out.extend(
            f"| {g} | `{w}` | {own * 1000:.1f} ms | {cum * 1000:.1f} ms |"
            for g, w, own, cum in rows
        )
    return out


def render(report: Report) -> str:
    out = [
        f"Machine: {machine(report.label)}",
        f"Command: `{report.command}` ({report.seconds:.0f} s)",
        "",
    ]
    rows = summary(report)
    if len(rows) > 2:  # a figure with a target was measured
        out.extend([*rows, ""])
    if report.throughput or report.slow:
        out.extend([*render_throughput(report), ""])
    if report.mixed:
        out.extend([*render_mixed(report), ""])
    if report.latencies:
        out.extend([*render_latency(report), ""])
    if report.state:
        s = report.state
        out.extend(
            [
                f"State file: {s.polls} in-process cycles of N = {s.accounts:,} x {s.keys}, "
                f"balances moving: database {s.db_mb:.1f} MB + WAL {s.wal_mb:.1f} MB = "
                f"**{s.total_mb:.1f} MB** as the bot left them ({s.closed_mb:.1f} MB once the "
                f"App closed); {s.samples:,} history rows; a cycle took "
                f"{median(s.poll_seconds):.2f} s (median).",
                "",
            ]
        )
    if report.profile:
        out.extend([*render_profile(report.profile), ""])
    out.extend(["Raw figures:", ""])
    for t in [*report.throughput, *report.slow]:
        delay = f", {t.delay_ms:g} ms upstream latency" if t.delay_ms else ""
        out.append(
            f"- {t.label}, {t.balances}{delay}: bare {_secs(t.bare_seconds)} "
            f"(CPU {_secs(t.bare_cpu)}); full cycle {_secs(t.cycle_seconds)} "
            f"(CPU {_secs(t.cycle_cpu)}); alerts per timed cycle {t.events}; the fake's "
            f"CPU busy {max(t.fake_busy):.0%} of the wall time at most"
        )
    for r in report.rules:
        out.append(
            f"- rule engine, {r.label}: {r.evaluations:,} subject evaluations per call, "
            f"{r.firing:,} alerts fire from empty; steady {_secs(r.steady_seconds)}; "
            f"empty state {_secs(r.first_seconds)}"
        )
    for f in report.first_poll:
        out.append(
            f"- start-up, {f.label}: spawn → first upstream request {_secs(f.to_request)}; "
            f"spawn → poll.ok {_secs(f.to_poll_ok)}"
        )
    if report.idle:
        i = report.idle
        base = f"; log notifier only {i.log_only_rss_mb:.1f} MB" if i.log_only_rss_mb else ""
        out.append(
            f"- idle, Telegram + Slack: VmRSS {i.rss_mb:.1f} MB, VmHWM {i.hwm_mb:.1f} MB{base}"
        )
    if report.peak:
        p = report.peak
        out.append(
            f"- peak, N={p.accounts}: VmHWM after the first cycle {p.first_hwm_mb:.1f} MB, "
            f"after the second (firing {p.accounts // 2:,} alerts) and its sends "
            f"{p.peak_mb:.1f} MB ({p.telegram_messages} Telegram messages); "
            f"VmRSS then {p.rss_mb:.1f} MB; VmHWM after one GET /metrics {p.scraped_mb:.1f} MB "
            f"(a {p.metrics_mb:.1f} MB page in {p.metrics_seconds:.2f} s)"
        )
    for lat in report.latencies:
        out.append(
            f"- detection → send, N={lat.accounts}, {lat.crossing} crossing (ms): "
            f"{_ms(lat.detect_ms)}; cycle start → send (ms): {_ms(lat.cycle_ms)}; "
            f"sendMessage per cycle {lat.messages}, splits {lat.splits}, edits {lat.edits}"
        )
    problems = [*(report.idle.problems if report.idle else [])]
    problems += report.peak.problems if report.peak else []
    counts = ", ".join(f"{k} x{n}" for k, n in sorted(report.logs.items())) or "none"
    out.append(f"- in-process bot log events at WARNING or above (alerts aside): {counts}")
    out.append(
        f"- `balance-bot run` (idle, peak) log lines at WARNING or above (alerts aside): "
        f"{len(problems)}" + "".join(f"\n  - `{line[:300]}`" for line in problems[:10])
    )
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------


async def run(plan: Plan, only: set[str], progress: Callable[[str], None], report: Report) -> None:
    wanted = (lambda name: name in only) if only else (lambda name: name in DEFAULT_PARTS)
    if wanted("rules"):
        for label, toml in (
            ("5 rules on every key", ALL_KEYS_RULES_TOML),
            ("5 rules with mixed globs", MIXED_RULES_TOML),
        ):
            progress(f"rule engine, {label}")
            report.rules.append(measure_rules(label, toml, plan.rule_keys, plan.rule_repeats))
    sizes = [n for n, k, _ in plan.throughput if k == KEYS] if wanted("cycle") else []
    sizes += [n for n, _, _ in plan.latency_cases] if wanted("latency") else []
    sizes += [plan.peak_accounts] if wanted("peak") else []
    sizes += [plan.state_file[0]] if wanted("state") else []
    sizes += [plan.mixed[0]] if wanted("providers") else []
    sizes += [plan.profile[0]] if wanted("profile") and plan.profile[1] == KEYS else []
    async with FakeUpstream(max(sizes, default=1), KEYS) as fake:
        if wanted("cycle"):
            for n, keys, runs in plan.throughput:
                async with contextlib.AsyncExitStack() as stack:
                    source = fake
                    if keys != KEYS:
                        source = await stack.enter_async_context(FakeUpstream(n, keys))
                    for moving in (False, True):
                        what = "moving" if moving else "steady"
                        progress(f"bare loop vs full cycle, N={n} x {keys}, {what}")
                        t = await measure_throughput(source, n, runs, moving)
                        report.throughput.append(t)
            report.json_us = json_floor()
            if plan.slow_upstream:
                n, delay, runs = plan.slow_upstream
                progress(f"bare loop vs full cycle, N={n}, {delay:g} ms upstream latency")
                report.slow.append(await measure_throughput(fake, n, runs, True, delay))
        if wanted("providers"):
            n, runs = plan.mixed
            progress(f"every provider in one cycle, N={n}")
            report.mixed = await measure_mixed(fake, n, runs)
        if wanted("start"):
            progress("start-up to first poll")
            report.first_poll = await measure_first_poll(fake, plan.first_poll_runs)
        if wanted("idle"):
            progress("idle RSS")
            report.idle = await measure_idle_rss(fake, plan.idle_seconds, plan.idle_baseline)
        if wanted("peak"):
            progress(f"peak RSS, N={plan.peak_accounts}")
            report.peak = await measure_peak_rss(fake, plan.peak_accounts, plan.peak_interval)
        if wanted("latency"):
            for n, crossing, samples in plan.latency_cases:
                progress(f"detection to send, N={n}, {crossing} crossing")
                lat = await measure_latency(fake, n, crossing, samples)
                report.latencies.append(lat)
        if wanted("state"):
            n, _, polls = plan.state_file
            progress(f"state file after {polls} moving polls, N={n}")
            report.state = await measure_state_file(fake, n, polls)
        if wanted("profile"):
            n, keys, cycles = plan.profile
            progress(f"profile, N={n} x {keys}, moving")
            async with contextlib.AsyncExitStack() as stack:
                source = fake
                if keys != KEYS:
                    source = await stack.enter_async_context(FakeUpstream(n, keys))
                report.profile = await measure_profile(source, n, cycles)


def main() -> int:
    parser = argparse.ArgumentParser(description="balance-bot benchmark")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (< 60 s)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        choices=PARTS,
        help="run only these measurements (repeatable); `profile` runs only if named",
    )
    parser.add_argument(
        "--code",
        default=os.environ.get("BENCH_CODE", ""),
        help="import `bot` and `fakes` from this directory (e.g. a `git archive` export)",
    )
    parser.add_argument("--label", default="", help="what the code is (e.g. a commit hash)")
    args = parser.parse_args()
    # The in-process measurements log as `balance-bot run` does by default (INFO),
    # into /dev/null: every line is still formatted and redacted, but no terminal
    # I/O is measured. A second handler counts warnings and errors.
    setup_logging("human", "INFO", open(os.devnull, "w"))  # noqa: SIM115
    watch = LogWatch()
    logging.getLogger().addHandler(watch)
    plan = Plan.quick() if args.quick else Plan()
    command = " ".join(["python bench/bench.py", *sys.argv[1:]])
    started = time.perf_counter()

    def progress(what: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {what} ...", file=sys.stderr, flush=True)

    report = Report(plan, command, args.label or code_label())
    asyncio.run(run(plan, set(args.only), progress, report))
    report.seconds = time.perf_counter() - started
    report.logs = watch.counts
    progress("done")
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
