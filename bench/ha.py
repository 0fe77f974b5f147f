"""PostgreSQL state and replicas (SPEC 7b), measured.

- cycle: full cycles of 1,000 accounts x 50 keys whose figures move at every
  poll (bench/fake_upstream.py), on SQLite and on a local PostgreSQL started
  for the run (initdb + pg_ctl, fakes/postgres.py, as the tests do), side by side.
- failover: two `balance-bot run` processes on that database; the active one
  is SIGKILLed, and the time from the kill to the standby's `replica.active`
  line is taken, `--rounds` times in a row (a new standby is started each round).

    .venv/bin/python bench/ha.py [--quick] [--rounds 20]

Prints a Markdown report (bench/RESULTS.md keeps one)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from bench import (  # noqa: E402
    App,
    BotRun,
    FakeUpstream,
    Snapshot,
    bot_gc,
    code_label,
    config_text,
    load_config,
    machine,
)
from fakes.postgres import server  # noqa: E402

FAILOVER_BUDGET = 10.0  # s (SPEC 8)


async def cycles(fake: FakeUpstream, accounts: int, runs: int, url: str = "") -> list[float]:
    """Seconds of each of `runs` timed cycles (after two untimed ones), on the
    database at `url`, else on an SQLite file."""
    with tempfile.TemporaryDirectory(prefix="bench-ha-") as tmp:
        path = Path(tmp) / "state.db"
        text = config_text(fake.comet_url, accounts, path)
        if url:
            text = text.replace(f'state_path = "{path}"', f'state_url = "{url}"')
        async with App(load_config(text)) as app:
            for _ in range(2):
                await app.cycle()
            seconds = []
            with bot_gc():
                for _ in range(runs):
                    gc.collect()
                    started = time.perf_counter()
                    result = await app.cycle()
                    seconds.append(time.perf_counter() - started)
                    failed = [r for r in result.results.values() if not isinstance(r, Snapshot)]
                    if not result.committed or failed:
                        raise RuntimeError(f"a cycle was not committed, or failed: {failed[:3]}")
            return seconds


async def failovers(fake: FakeUpstream, url: str, rounds: int, tmp: Path) -> list[float]:
    """Seconds from each SIGKILL of the active process to the standby's takeover."""
    config = tmp / "replica.toml"
    config.write_text(
        config_text(fake.comet_url, 10, tmp / "unused.db", interval="5s").replace(
            f'state_path = "{tmp / "unused.db"}"', f'state_url = "{url}"'
        )
    )
    taken: list[float] = []
    active = await BotRun(config).__aenter__()
    await active.wait_line("replica.active")
    try:
        for _ in range(rounds):
            standby = await BotRun(config).__aenter__()
            await standby.wait_line("replica.standby")
            assert active.proc is not None
            killed = time.monotonic()
            active.proc.send_signal(signal.SIGKILL)
            await active.proc.wait()
            await active.__aexit__()
            at = await standby.wait_line("replica.active", within=30)
            taken.append(at - killed)
            active = standby
    finally:
        await active.__aexit__()
    return taken


async def main_async(quick: bool, rounds: int) -> str:
    accounts, runs = (200, 2) if quick else (1000, 5)
    lines = [f"## PostgreSQL state and failover (bench/ha.py{' --quick' if quick else ''})", ""]
    lines.append(machine(code_label()))
    with server() as pg, tempfile.TemporaryDirectory(prefix="bench-ha-") as tmp:
        async with FakeUpstream(accounts, 50) as fake:
            await fake.set_low(False)
            await fake.set_moving(True)
            sqlite = await cycles(fake, accounts, runs)
            postgres = await cycles(fake, accounts, runs, pg.fresh())
            await fake.set_moving(False)
            took = await failovers(fake, pg.fresh(), rounds, Path(tmp))
    lines += [
        "",
        f"Full cycles of {accounts:,} accounts x 50 keys, figures moving at every poll "
        f"(median of {runs}; the same fake upstream, one after the other):",
        "",
        "| state | median | min | max |",
        "| --- | --- | --- | --- |",
    ]
    for name, seconds in (("SQLite", sqlite), ("PostgreSQL (local, fsync off)", postgres)):
        lines.append(
            f"| {name} | {statistics.median(seconds):.3f} s | {min(seconds):.3f} s | "
            f"{max(seconds):.3f} s |"
        )
    ratio = statistics.median(postgres) / statistics.median(sqlite)
    lines += [
        "",
        f"PostgreSQL / SQLite: {ratio:.2f}x.",
        "",
        f"Failover: {rounds} SIGKILLs of the active process, each time to the standby's "
        f"`replica.active`: median {statistics.median(took):.2f} s, max {max(took):.2f} s "
        f"(budget {FAILOVER_BUDGET:g} s: {'ok' if max(took) < FAILOVER_BUDGET else 'OVER'}); "
        "the standby tries the lock every 2 s, so up to 2 s is its wait.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 accounts, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="failovers (default 20)")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 20)
    print(asyncio.run(main_async(args.quick, rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
