"""balance-bot benchmark: cycle throughput against a bare aiohttp loop, rule-engine
speed, start-up time, memory and alert latency. Prints Markdown tables.

    .venv/bin/python bench/bench.py           # the full run (about 6 minutes)
    .venv/bin/python bench/bench.py --quick   # smoke run (< 60 s)
    .venv/bin/python bench/bench.py --only rules --only latency

- cycle: a bare aiohttp loop and the bot's full cycle (fetch, parse, evaluate,
  persist, queue events: `App.cycle()`) over the same URLs at the same
  concurrency, N accounts x 50 keys on a loopback fake CometAPI;
- rules: `evaluate()` on 10,000 keys x 5 rules;
- start: the real `balance-bot run` spawned, to its first completed poll;
- idle: its RSS with Telegram and Slack configured (against fakes) and listening;
- peak: its peak RSS over cycles of N = 5,000 accounts;
- latency: a cycle that detects a crossing, to the fake Telegram receiving it.

Every fake server (CometAPI, Telegram, Slack) runs in a separate process
(bench/fake_upstream.py), so its CPU does not share the measured event loop.
See bench/RESULTS.md for what each figure means and the latest results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
BENCH = SCRIPT.parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]  # `bot`, `fakes` and `fake_upstream`

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

from bot import config as bot_config  # noqa: E402
from bot import secrets  # noqa: E402
from bot.cometapi import parse_quota  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.logs import setup_logging  # noqa: E402
from bot.model import (  # noqa: E402
    EngineState,
    EventKind,
    KeyBalance,
    Rule,
    Snapshot,
)
from bot.rules import Context, evaluate, measures  # noqa: E402
from bot.service import App  # noqa: E402

KEYS = 50  # keys per account in the throughput runs
CONCURRENCY = Settings().max_concurrency  # the bot's default, used by both loops
TELEGRAM_CHAT = 111111

TARGET_RATIO = 1.25  # full cycle time / bare loop time
TARGET_EVALS = 500_000  # subject evaluations per second
TARGET_FIRST_POLL = 1.5  # seconds from spawn to the first completed poll
TARGET_IDLE_RSS = 70.0  # MB
TARGET_LATENCY = 50.0  # ms from detection to sendMessage at the fake Telegram


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full run, or the --quick smoke run."""

    sizes: tuple[int, ...] = (100, 1000, 5000)
    runs: dict[int, int] = field(default_factory=lambda: {100: 5, 1000: 5, 5000: 3})
    rule_keys: int = 10_000
    rule_repeats: int = 7
    first_poll_runs: int = 5
    idle_seconds: float = 10.0
    idle_baseline: bool = True  # also the idle RSS of `run` with the log notifier only
    peak_accounts: int = 5000
    peak_interval: int = 20  # s; the second cycle of the peak RSS run starts this much later
    latency_samples: int = 10
    # (accounts, only one of them crosses); else half of them cross at once
    latency_cases: tuple[tuple[int, bool], ...] = (
        (1, False),
        (100, True),
        (1000, True),
        (1000, False),
    )
    # context, not a target: the same comparison with a simulated upstream latency
    slow_upstream: tuple[int, float] | None = (1000, 50.0)  # (accounts, ms per request)

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            sizes=(100, 500),
            runs={100: 1, 500: 1},
            rule_keys=10_000,
            rule_repeats=2,
            first_poll_runs=1,
            idle_seconds=3.0,
            idle_baseline=False,
            peak_accounts=500,
            peak_interval=4,
            latency_samples=4,
            latency_cases=((1, False), (100, True), (100, False)),
            slow_upstream=None,
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
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
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


# --- 1 + 2: bare loop vs full cycle ----------------------------------------------------


@dataclass
class Throughput:
    accounts: int
    delay_ms: float  # simulated upstream latency per request
    runs: int
    bare_seconds: list[float]
    cycle_seconds: list[float]
    cycle_cpu_seconds: list[float]
    fake_busy: list[float]  # share of wall time the fake server spent on CPU in the bare loop
    events: int  # per measured cycle

    @property
    def bare_rate(self) -> float:
        return self.accounts / statistics.median(self.bare_seconds)

    @property
    def cycle_rate(self) -> float:
        return self.accounts / statistics.median(self.cycle_seconds)

    @property
    def ratio(self) -> float:
        """How many times longer the full cycle takes than the bare loop."""
        return self.bare_rate / self.cycle_rate


async def bare_loop(session: aiohttp.ClientSession, urls: list[str], concurrency: int) -> float:
    """The floor: the same GETs, the same concurrency, read the body, nothing else."""
    gate = asyncio.Semaphore(concurrency)

    async def one(url: str) -> None:
        async with gate, session.get(url) as resp:
            await resp.read()

    started = time.perf_counter()
    await asyncio.gather(*(one(url) for url in urls))
    return time.perf_counter() - started


async def measure_throughput(
    fake: FakeUpstream, accounts: int, runs: int, delay_ms: float = 0.0
) -> Throughput:
    """The bare loop `runs` times before the full cycle and `runs` times after it
    (so that a change in the machine's load shows in both), each time on its own:
    no App alive, so that the App's heap does not slow it down through the
    garbage collector. Per run of the full cycle: an untimed cycle that puts every
    account at $100 (resolving the last run's alerts), and the timed cycle in
    which half the accounts are at $10: fetch, parse, evaluate, persist, and queue
    accounts/2 FIRE events. Both loops are warmed up once."""
    urls = [f"{fake.comet_url}?key={key_for(i)}" for i in range(accounts)]
    bare: list[float] = []
    busy: list[float] = []
    cycle: list[float] = []
    cpu: list[float] = []
    events = 0
    await fake.control(f"delay?ms={delay_ms:g}")

    async def bare_runs() -> None:
        async with aiohttp.ClientSession() as session:
            await bare_loop(session, urls, CONCURRENCY)  # warm-up: connections, code paths
            for _ in range(runs):
                gc.collect()
                before = await fake.control("stats")
                bare.append(await bare_loop(session, urls, CONCURRENCY))
                after = await fake.control("stats")
                busy.append((after["cpu_seconds"] - before["cpu_seconds"]) / bare[-1])

    await bare_runs()
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as tmp:
        cfg = load_config(config_text(fake.comet_url, accounts, Path(tmp) / "state.db"))
        async with App(cfg) as app:
            # warm-up: connections, first inserts, the daily prune, code paths
            for low in (False, True):
                await fake.set_low(low)
                await app.cycle()
            for _ in range(runs):
                await fake.set_low(False)
                await app.cycle()
                await fake.set_low(True)
                gc.collect()
                cpu_started, started = time.process_time(), time.perf_counter()
                result = await app.cycle()
                cycle.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
                fired = [e for e in result.events if e.kind is EventKind.FIRE]
                if not result.committed or len(fired) != (accounts + 1) // 2:
                    raise RuntimeError(f"cycle of {accounts}: unexpected result {result.events!r}")
                events = len(fired)
            if not app.store.backlog().get("log"):
                raise RuntimeError("no events were queued in the outbox")
    gc.collect()
    await bare_runs()
    await fake.set_low(False)
    await fake.control("delay?ms=0")
    return Throughput(accounts, delay_ms, runs, bare, cycle, cpu, busy, events)


def json_floor(repeats: int = 2000) -> tuple[float, float]:
    """Microseconds, per account at K keys, of the stdlib JSON work any full cycle
    does on top of the bare loop: decoding the body, and encoding the snapshot
    that is stored in the state file."""
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
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},  # the `bot` next to this bench/
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


async def idle_rss_of(fake: FakeUpstream, extra: str, ready: list[str], idle: float) -> IdleRss:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        path = Path(tmp) / "rules.toml"
        text = config_text(fake.comet_url, 1, Path(tmp) / "state.db", "1h", "127.0.0.1:0", extra)
        path.write_text(text)
        async with BotRun(path) as bot:
            for needle in ready:
                await bot.wait_line(needle)
            await asyncio.sleep(idle)
            return IdleRss(bot.status("VmRSS"), bot.status("VmHWM"), None)


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
    rss_mb: float  # VmRSS at the end
    telegram_messages: int  # sendMessage calls the second cycle's alerts took


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


async def wait_backlog_empty(http: aiohttp.ClientSession, base: str, within: float) -> None:
    """Until /metrics shows no queued message for any notifier."""
    async with asyncio.timeout(within):
        while True:
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            backlog = [
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("balance_bot_outbox_backlog{")
            ]
            if backlog and not any(backlog):
                return
            await asyncio.sleep(0.25)


async def measure_peak_rss(fake: FakeUpstream, accounts: int, interval: int) -> PeakRss:
    """`balance-bot run` with N accounts and both notifiers: a first cycle with every
    account at $100, then the fake puts half of them at $10 and the second cycle
    (`interval` s later) fires N/2 alerts, which go out to the fake Telegram and
    Slack. VmHWM of the process once that is all done."""
    await fake.set_low(False)
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
            await wait_backlog_empty(http, base, 300)
            sent = len((await fake.control("stats"))["telegram_received"]) - sent
            peak, rss = bot.status("VmHWM"), bot.status("VmRSS")
    await fake.set_low(False)
    return PeakRss(accounts, first_hwm, peak, rss, sent)


# --- detection to send ---------------------------------------------------------------


@dataclass
class Latency:
    accounts: int
    events: int  # alerts per sample (accounts that cross)
    detect_ms: list[float]  # poll results in hand (evaluation starts) -> first sendMessage
    cycle_ms: list[float]  # cycle start (first request) -> first sendMessage


async def measure_latency(
    fake: FakeUpstream, accounts: int, samples: int, one: bool = False
) -> Latency:
    """In-process `App.serve` (what `balance-bot run` runs) with the Telegram notifier
    started and listening. Each sample flips the balances (half the accounts cross,
    or only the first one if `one`; down on even samples, back up on odd ones),
    runs a cycle and takes the time from the moment the cycle has its poll results
    and starts evaluating them (detection), and from the cycle's start, to the fake
    Telegram receiving the first sendMessage of it. The next sample starts once the
    outbox is empty."""
    crossing = 1 if one else (accounts + 1) // 2
    await fake.set_low(False)
    detect_ms: list[float] = []
    cycle_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        state = Path(tmp) / "state.db"
        text = config_text(fake.comet_url, accounts, state, "1h", "", telegram_toml(fake))
        async with App(load_config(text)) as app:
            detected: list[float] = []
            apply = app.monitor._apply  # fetch is done; evaluate, persist, queue

            def timed_apply(*args: Any, **kwargs: Any) -> Any:
                detected.append(time.monotonic())
                return apply(*args, **kwargs)

            app.monitor._apply = timed_apply  # type: ignore[method-assign]
            stop, ready = asyncio.Event(), asyncio.Event()
            serving = asyncio.create_task(app.serve(stop, lambda _: ready.set()))
            await asyncio.wait_for(ready.wait(), 60)
            await app.monitor.wait_cycles(1)  # the scheduler's first cycle: nothing to send
            for i in range(samples):
                received = len((await fake.control("stats"))["telegram_received"])
                await fake.set_low(i % 2 == 0, 1 if one else None)
                gc.collect()
                started = time.monotonic()
                result = await app.cycle()
                if len(result.events) != crossing:
                    raise RuntimeError(f"unexpected events: {result.events!r}")
                await outbox_empty(app)
                first = (await fake.control("stats"))["telegram_received"][received]
                detect_ms.append((first - detected[-1]) * 1000)
                cycle_ms.append((first - started) * 1000)
            stop.set()
            await asyncio.wait_for(serving, 30)
    await fake.set_low(False)
    return Latency(accounts, crossing, detect_ms, cycle_ms)


async def outbox_empty(app: App, within: float = 60.0) -> None:
    """Wait until every queued message went out. The first look is 0.5 s later, so
    that our polling does not compete with the delivery being timed."""
    await asyncio.sleep(0.5)
    async with asyncio.timeout(within):
        while app.store.backlog().get("telegram"):  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.1)


# --- report --------------------------------------------------------------------------


@dataclass
class Report:
    plan: Plan
    command: str
    throughput: list[Throughput] = field(default_factory=list)
    slow: Throughput | None = None
    json_us: tuple[float, float] | None = None  # json.loads of a body, json.dumps of a snapshot
    rules: list[RuleEngine] = field(default_factory=list)
    first_poll: list[FirstPoll] = field(default_factory=list)
    idle: IdleRss | None = None
    peak: PeakRss | None = None
    latencies: list[Latency] = field(default_factory=list)


def machine() -> str:
    cpu, mem = "unknown CPU", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        mem = f", {kib / 1024**2:.0f} GiB RAM"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"bot at {commit or '?'}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def median(values: list[float]) -> float:
    return statistics.median(values)


def render(report: Report) -> str:
    out = [f"Machine: {machine()}", f"Command: `{report.command}`", ""]
    if report.throughput or report.slow:
        out.append(
            f"Cycle throughput: K = {KEYS} keys per account, max_concurrency = {CONCURRENCY} "
            "(the bot's default) for both loops, the same URLs; median of the runs (the "
            "bare loop runs that many times before the full cycle and again after it)."
        )
        out.append("")
        out.append(
            "| accounts N | runs | bare aiohttp loop (acc/s) | full cycle (acc/s) "
            "| full/bare time | target | |\n|---:|---:|---:|---:|---:|---|---|"
        )
    for t in report.throughput:
        out.append(
            f"| {t.accounts:,} | {t.runs} | {fmt_rate(t.bare_rate)} | {fmt_rate(t.cycle_rate)} "
            f"| {t.ratio:.2f}x | ≤ {TARGET_RATIO}x | {verdict(t.ratio <= TARGET_RATIO)} |"
        )
    if report.slow:
        t = report.slow
        out.append(
            f"| {t.accounts:,}, upstream answering after {t.delay_ms:g} ms (context) "
            f"| {t.runs} | {fmt_rate(t.bare_rate)} | {fmt_rate(t.cycle_rate)} "
            f"| {t.ratio:.2f}x | (≤ {TARGET_RATIO}x) | {verdict(t.ratio <= TARGET_RATIO)} |"
        )
    if report.json_us and report.throughput:
        loads, dumps = report.json_us
        t = report.throughput[-1]
        bare_us = median(t.bare_seconds) / t.accounts * 1e6
        out.append("")
        out.append(
            f"For scale, per account: the bare loop takes {bare_us:.0f} µs (N = {t.accounts:,}); "
            f"the stdlib alone takes {loads:.0f} µs to decode a {KEYS}-key body (json.loads) "
            f"and {dumps:.0f} µs to encode the snapshot stored in the state file "
            f"(json.dumps), {(loads + dumps) / bare_us:.2f}x the bare loop's time together."
        )
    out.append("")
    out.append("| measurement | result | target | |\n|---|---:|---|---|")
    for r in report.rules:
        out.append(
            f"| rule engine, {r.label}: {r.keys:,} keys x {r.rules} rules = "
            f"{r.evaluations:,} subject evaluations per poll, steady state "
            f"| {fmt_rate(r.steady_rate)}/s | ≥ {TARGET_EVALS:,}/s "
            f"| {verdict(r.steady_rate >= TARGET_EVALS)} |"
        )
        out.append(
            f"| rule engine, {r.label}: the same from an empty state ({r.firing:,} alerts "
            f"fire) | {fmt_rate(r.first_rate)}/s | ≥ {TARGET_EVALS:,}/s "
            f"| {verdict(r.first_rate >= TARGET_EVALS)} |"
        )
    for f in report.first_poll:
        ok = median(f.to_poll_ok)
        out.append(
            f"| `balance-bot run` spawned → first poll completed (`poll.ok`), {f.label}; "
            f"median of {len(f.to_poll_ok)} | {ok:.2f} s | ≤ {TARGET_FIRST_POLL} s "
            f"| {verdict(ok <= TARGET_FIRST_POLL)} |"
        )
    if report.idle:
        i = report.idle
        out.append(
            f"| idle RSS of `balance-bot run`, Telegram + Slack listening, "
            f"{report.plan.idle_seconds:g} s after start-up | {i.rss_mb:.1f} MB "
            f"| ≤ {TARGET_IDLE_RSS:g} MB | {verdict(i.rss_mb <= TARGET_IDLE_RSS)} |"
        )
        if i.log_only_rss_mb is not None:
            out.append(
                f"| idle RSS of `balance-bot run`, log notifier only (comparison) "
                f"| {i.log_only_rss_mb:.1f} MB | | |"
            )
    if report.peak:
        p = report.peak
        out.append(
            f"| peak RSS (VmHWM) of `balance-bot run`, N = {p.accounts:,}, Telegram + Slack: "
            f"first cycle, then a cycle firing {p.accounts // 2:,} alerts and their sends "
            f"| {p.peak_mb:.1f} MB | — | |"
        )
    for lat in report.latencies:
        med = median(lat.detect_ms)
        plural = "s" if lat.events != 1 else ""
        out.append(
            f"| detection → first sendMessage at the fake Telegram, N = {lat.accounts:,}, "
            f"{lat.events:,} alert{plural} per cycle; median of {len(lat.detect_ms)} "
            f"(max {max(lat.detect_ms):.1f} ms) | {med:.1f} ms | ≤ {TARGET_LATENCY:g} ms "
            f"| {verdict(med <= TARGET_LATENCY)} |"
        )
    out.extend(["", "Raw figures:", ""])
    for t in [*report.throughput, *([report.slow] if report.slow else [])]:
        delay = f" ({t.delay_ms:g} ms upstream latency)" if t.delay_ms else ""
        out.append(
            f"- N={t.accounts}{delay}: bare {_secs(t.bare_seconds)}; "
            f"full cycle {_secs(t.cycle_seconds)} (CPU {_secs(t.cycle_cpu_seconds)}); "
            f"{t.events} FIRE events queued per timed cycle; the fake server's CPU was "
            f"busy {max(t.fake_busy):.0%} of the bare loop's time at most"
        )
    for r in report.rules:
        out.append(
            f"- rule engine, {r.label}: steady {_secs(r.steady_seconds)}; "
            f"empty state {_secs(r.first_seconds)}"
        )
    for f in report.first_poll:
        out.append(
            f"- start-up, {f.label}: spawn → first upstream request {_secs(f.to_request)}; "
            f"spawn → poll.ok {_secs(f.to_poll_ok)}"
        )
    if report.idle:
        out.append(f"- idle, Telegram + Slack: VmHWM {report.idle.hwm_mb:.1f} MB")
    if report.peak:
        p = report.peak
        out.append(
            f"- peak, N={p.accounts}: VmHWM after the first cycle {p.first_hwm_mb:.1f} MB, "
            f"after the second and its sends {p.peak_mb:.1f} MB ({p.telegram_messages} "
            f"Telegram messages); VmRSS then {p.rss_mb:.1f} MB"
        )
    for lat in report.latencies:
        out.append(
            f"- detection → send, N={lat.accounts} (ms): "
            f"{', '.join(f'{x:.1f}' for x in lat.detect_ms)}; cycle start → send (ms): "
            f"{', '.join(f'{x:.1f}' for x in lat.cycle_ms)}"
        )
    return "\n".join(out)


def _secs(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "] s"


# --- main ----------------------------------------------------------------------------


async def run(plan: Plan, only: set[str], progress: Callable[[str], None], report: Report) -> None:
    wanted = (lambda name: name in only) if only else (lambda name: True)
    if wanted("rules"):
        for label, toml in (
            ("5 rules on every key", ALL_KEYS_RULES_TOML),
            ("5 rules with mixed globs", MIXED_RULES_TOML),
        ):
            progress(f"rule engine, {label}")
            report.rules.append(measure_rules(label, toml, plan.rule_keys, plan.rule_repeats))
    accounts = max((*plan.sizes, plan.peak_accounts))
    async with FakeUpstream(accounts, KEYS) as fake:
        if wanted("cycle"):
            for n in plan.sizes:
                progress(f"bare loop vs full cycle, N={n}")
                report.throughput.append(await measure_throughput(fake, n, plan.runs[n]))
            report.json_us = json_floor()
            if plan.slow_upstream:
                n, delay = plan.slow_upstream
                progress(f"bare loop vs full cycle, N={n}, {delay:g} ms upstream latency")
                report.slow = await measure_throughput(fake, n, 3, delay)
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
            for n, one in plan.latency_cases:
                progress(f"detection to send, N={n}, {'one' if one else 'half'} crossing")
                lat = await measure_latency(fake, n, plan.latency_samples, one)
                report.latencies.append(lat)


def main() -> int:
    parser = argparse.ArgumentParser(description="balance-bot benchmark")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (< 60 s)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        choices=["cycle", "rules", "start", "idle", "peak", "latency"],
        help="run only these measurements (repeatable)",
    )
    args = parser.parse_args()
    # The in-process measurements log as `balance-bot run` does by default (INFO),
    # into /dev/null: every line is still formatted and redacted, but no terminal
    # I/O is measured.
    setup_logging("human", "INFO", open(os.devnull, "w"))  # noqa: SIM115
    plan = Plan.quick() if args.quick else Plan()
    command = " ".join(["python bench/bench.py", *sys.argv[1:]])
    started = time.perf_counter()

    def progress(what: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {what} ...", file=sys.stderr, flush=True)

    report = Report(plan, command)
    asyncio.run(run(plan, set(args.only), progress, report))
    progress("done")
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
