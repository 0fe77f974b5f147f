"""balance-bot chart benchmark: how long one chart takes to draw from 90 days of
history (SPEC 6b: within 1 s), the first one (with matplotlib's import) and the
next ones, and what drawing costs in memory. Prints a Markdown table.

    .venv/bin/python bench/chart.py            # 20 charts per window
    .venv/bin/python bench/chart.py --repeats 5

The history is what the bot keeps after 90 days of 5-minute polls (full
resolution for a day, hourly to 14 days, daily beyond: bot/state/sqlite/samples.py),
with a top-up whenever the balance runs low; the rules are a warning, a critical
and a runway rule on the total. Every chart goes through `chart_of` and `render`
(bot/app/chart.py), as `/chart` and the status page draw them.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench import code_label, machine  # noqa: E402
from bot.app.chart import MAX_BYTES, WINDOWS, chart_of, render  # noqa: E402
from bot.config import build_rule  # noqa: E402
from bot.engine.model import EngineState  # noqa: E402
from bot.state.types import Sample  # noqa: E402

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DAY = 86400.0


def history() -> list[Sample]:
    """90 days as the bot keeps them: daily beyond 14 days, hourly beyond a day,
    every 5 minutes in the last day; spending $3/day, topped up by $200 under $10."""
    end = NOW.timestamp()
    out: list[Sample] = []
    at, balance, used = end - 90 * DAY, 250.0, 0.0
    while at <= end:
        age = end - at
        step = DAY if age > 14 * DAY else 3600.0 if age > DAY else 300.0
        out.append(Sample("main", at, balance, used, None, used))
        spent = 3.0 * step / DAY
        balance, used = balance - spent, used + spent
        if balance < 10:
            balance += 200
        at += step
    return out


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="charts per window")
    args = parser.parse_args()
    samples = history()
    rules = [
        build_rule({"name": "low", "target": "total", "below": 20.0}),
        build_rule({"name": "empty", "target": "total", "below": 5.0, "severity": "critical"}),
        build_rule({"name": "runway", "target": "total", "days_left_below": 3}),
    ]
    zone = ZoneInfo("Europe/Berlin")
    before = rss_mib()

    def one(window: str, theme: str = "light") -> tuple[float, int]:
        started = time.perf_counter()
        chart = chart_of("main", samples, rules, EngineState(), 3.0, NOW, window, zone)
        assert chart is not None
        png = render(chart, theme)
        return time.perf_counter() - started, len(png)

    first, _ = one("90d")
    rows = []
    for window in WINDOWS:
        for theme in ("light", "dark"):
            runs = [one(window, theme) for _ in range(args.repeats)]
            times = sorted(t for t, _ in runs)
            rows.append(
                (
                    f"{window} {theme}",
                    statistics.median(times),
                    times[-1],
                    max(size for _, size in runs),
                )
            )
    print(f"# chart benchmark\n\n{machine(code_label())}\n")
    print(f"{len(samples)} samples over 90 days; {args.repeats} charts per row.\n")
    print("| chart | median s | slowest s | largest PNG | budget (1 s, 200 KB) |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| first chart (90d), matplotlib's import included | {first:.3f} | | | |")
    for label, median, slowest, size in rows:
        ok = slowest < 1.0 and size <= MAX_BYTES
        print(
            f"| {label} | {median:.3f} | {slowest:.3f} | {size / 1000:.0f} KB | "
            f"{'met' if ok else '**missed**'} |"
        )
    print(
        f"\npeak RSS {rss_mib():.0f} MiB after {len(rows) * args.repeats + 1} charts "
        f"(before the first: {before:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
