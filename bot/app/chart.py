"""The one chart: an account's balance over a window, the levels of its total
rules, the spans an alert fired, and the forecast to zero, as PNG bytes.

`chart_of` gathers what a chart shows (pure, cheap); `render` draws it with
matplotlib's Agg canvas (the object API, no pyplot and no global backend),
imported on the first drawing only, so that a bot that never draws a chart
never loads it (tens of MB). Drawing is serialised (matplotlib is not
thread-safe) and runs in its own worker thread (`render_async`), so the event
loop goes on meanwhile. SPEC 6b.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.engine.model import AlertKey, EngineState, Rule, Severity, Target
from bot.engine.text import days, duration, money
from bot.engine.units import Unit, days_left
from bot.state.types import Sample

WIDTH, HEIGHT, DPI = 1200, 600, 100  # pixels: SPEC 6b's limit, and what phones scale down
MAX_BYTES = 200_000
MAX_POINTS = 1500  # drawn per line: more than the pixels across, fewer than a day at 1 s
WINDOWS = {"24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0, "90d": 90 * 86400.0}
UTC_ZONE = ZoneInfo("UTC")
AHEAD = 0.25  # of the window: room right of "now" for the forecast

_draw_lock = threading.Lock()  # matplotlib draws in one thread at a time
_executor: ThreadPoolExecutor | None = None


@dataclass(frozen=True, slots=True)
class Level:
    """A horizontal line: a threshold or recovery level, in money."""

    value: float
    label: str
    severity: Severity
    recovery: bool = False


@dataclass(frozen=True, slots=True)
class FiringSpan:
    start: float  # seconds since the epoch
    end: float
    severity: Severity


@dataclass(frozen=True, slots=True)
class Chart:
    """Everything one picture shows; nothing here is a secret."""

    account: str
    points: tuple[tuple[float, float], ...]  # (seconds since the epoch, balance)
    start: float  # the window's left edge
    now: float  # "now": the window's end; the forecast goes right of it
    window: str  # "7d", as asked
    levels: tuple[Level, ...] = ()
    spans: tuple[FiringSpan, ...] = ()
    rate: float | None = None  # burn per day; None: gathering data; 0: not depleting
    balance: float | None = None  # the latest balance (the forecast starts there)
    zone: ZoneInfo = UTC_ZONE
    currency: str = "USD"

    @property
    def days_left(self) -> float | None:
        if self.balance is None:
            return None
        return days_left(self.balance, self.rate)

    @property
    def edge(self) -> float:
        """The right edge: room after "now" for the forecast."""
        return self.now + (self.now - self.start) * AHEAD

    def forecast(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """The dashed line, ((now, balance), (then, balance then)): to where the
        money reaches zero, or to the right edge; None when not depleting, while
        gathering data, or with nothing left."""
        left = self.days_left
        if not self.rate or self.balance is None or left is None or math.isinf(left):
            return None
        if self.balance <= 0:
            return None
        end = min(self.now + left * 86400, self.edge)
        reached = max(self.balance - self.rate * (end - self.now) / 86400, 0.0)
        return (self.now, self.balance), (end, reached)

    def caption(self) -> tuple[str, ...]:
        """The numbers in text, so that they are there without the picture."""
        left = self.days_left
        if self.rate is None:
            outlook = "burn rate: gathering data"
        elif left is None or math.isinf(left):
            outlook = f"burn {money(self.rate, self.currency)}/day · not depleting"
        else:
            outlook = f"burn {money(self.rate, self.currency)}/day · ≈ {days(left)} left"
        return (
            f"{self.account} · {self.window}",
            f"balance {money(self.balance, self.currency)} · {outlook}",
        )

    def alt(self) -> str:
        """What the picture shows, for a screen reader (the status page's alt text)."""
        low = min((v for _, v in self.points), default=None)
        high = max((v for _, v in self.points), default=None)
        text = (
            f"Balance of {self.account} over {self.window}: from "
            f"{money(self.points[0][1] if self.points else None, self.currency)} to "
            f"{money(self.balance, self.currency)} (lowest {money(low, self.currency)}, "
            f"highest {money(high, self.currency)}); {self.caption()[1]}"
        )
        if self.levels:
            text += "; levels: " + ", ".join(level.label for level in self.levels)
        if self.spans:
            total = sum(s.end - s.start for s in self.spans)
            text += f"; an alert fired for {duration(total)} of it"
        return text + "."


# --- what a chart shows (pure) ---------------------------------------------------


def total_levels(
    rules: Sequence[Rule],
    account: str,
    balance: float,
    used: float | None,
    rate: float | None,
    currency: str,
) -> tuple[Level, ...]:
    """The money levels of the total rules that watch `account`: a `below` rule's
    as they are; a share's of the account's size (balance + used); a runway's at
    the current burn rate (none while gathering data or not depleting). Spend
    rules have no level on a balance."""
    out: list[Level] = []
    for rule in rules:
        if rule.target is not Target.TOTAL or not rule.matches_account(account):
            continue
        kind = rule.kind
        for level, recovery in ((kind.threshold, False), (kind.recover_at, True)):
            said = kind.level(level)
            if kind.unit == Unit.USD:
                value, said = level, money(level, currency)
            elif kind.unit == Unit.DAYS and rate:
                value = level * rate
                said = f"{said} ≈ {money(value, currency)}"
            elif kind.unit == Unit.PERCENT and used is not None:
                value = (balance + used) * level / 100
                said = f"{said} ≈ {money(value, currency)}"
            else:
                continue
            what = "resolves at" if recovery else "below"
            out.append(Level(value, f"{rule.name}: {what} {said}", rule.severity, recovery))
    return tuple(out)


def firing_spans(
    points: Sequence[tuple[float, float]],
    rules: Sequence[Rule],
    account: str,
    state: EngineState,
    now: float,
) -> tuple[FiringSpan, ...]:
    """When an alert on the account's total fired: for a `below` rule, read from
    the balance the way the engine reads it (fires under the threshold after
    `for_polls` samples, resolves at the recovery level); for any total rule
    firing now, since its fire."""
    spans: list[FiringSpan] = []
    for rule in rules:
        if rule.target is not Target.TOTAL or not rule.matches_account(account):
            continue
        if rule.kind.unit == Unit.USD:
            spans.extend(_replayed(points, rule, now))
        alert = state.alerts.get(AlertKey(rule.name, account, "total"))
        if alert and alert.firing and alert.fired_at:
            spans.append(FiringSpan(alert.fired_at.timestamp(), now, rule.severity))
    return _merged(spans)


def _replayed(points: Sequence[tuple[float, float]], rule: Rule, now: float) -> list[FiringSpan]:
    kind, out = rule.kind, []
    began: float | None = None
    below = 0
    for at, value in points:
        if began is None:
            below = below + 1 if kind.fires(value) else 0
            if below >= rule.for_polls:
                began = at
        elif kind.recovers(value):
            out.append(FiringSpan(began, at, rule.severity))
            began, below = None, 0
    if began is not None:
        out.append(FiringSpan(began, now, rule.severity))
    return out


def _merged(spans: list[FiringSpan]) -> tuple[FiringSpan, ...]:
    """Overlapping spans of one severity as one; a critical span stays on top."""
    out: list[FiringSpan] = []
    for severity in (Severity.WARNING, Severity.CRITICAL):
        mine = sorted((s for s in spans if s.severity is severity), key=lambda s: s.start)
        for span in mine:
            if out and out[-1].severity is severity and span.start <= out[-1].end:
                last = out.pop()
                span = FiringSpan(last.start, max(last.end, span.end), severity)
            out.append(span)
    return tuple(out)


def thinned(points: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """At most about MAX_POINTS points: per slice of time its lowest and highest
    sample, in time order, so that neither a dip under a threshold nor a top-up
    is smoothed away."""
    if len(points) <= MAX_POINTS:
        return tuple(points)
    first, last = points[0][0], points[-1][0]
    width = (last - first) / (MAX_POINTS // 2) or 1.0
    out: list[tuple[float, float]] = []
    bucket: list[tuple[float, float]] = []
    edge = first + width
    for point in points:
        if point[0] >= edge and bucket:
            out.extend(_extremes(bucket))
            bucket = []
            edge = first + width * (math.floor((point[0] - first) / width) + 1)
        bucket.append(point)
    out.extend(_extremes(bucket))
    if out[-1] != points[-1]:
        out.append(points[-1])
    return tuple(out)


def _extremes(bucket: list[tuple[float, float]]) -> list[tuple[float, float]]:
    low = min(bucket, key=lambda p: p[1])
    high = max(bucket, key=lambda p: p[1])
    return sorted({low, high})


def chart_of(
    account: str,
    samples: Sequence[Sample],
    rules: Sequence[Rule],
    state: EngineState,
    rate: float | None,
    now: datetime,
    window: str,
    zone: ZoneInfo,
    currency: str = "USD",
) -> Chart | None:
    """The chart of `account` over `window` (a key of WINDOWS), or None with no
    history in it yet."""
    end = now.timestamp()
    start = end - WINDOWS[window]
    points = [(s.at, s.total) for s in samples if start <= s.at <= end]
    if not points:
        return None
    used = next((s.used for s in reversed(samples) if s.at <= end), None)
    balance = points[-1][1]
    return Chart(
        account=account,
        points=thinned(points),
        start=start,
        now=end,
        window=window,
        levels=total_levels(rules, account, balance, used, rate, currency),
        spans=firing_spans(points, rules, account, state, end),
        rate=rate,
        balance=balance,
        zone=zone,
        currency=currency,
    )


# --- drawing (matplotlib, loaded on the first chart) -------------------------------


@dataclass(frozen=True, slots=True)
class Theme:
    background: str
    text: str
    grid: str
    line: str
    warning: str
    critical: str


# Contrast of text on background above 7:1 in both; the line and level colours
# are GitHub's Primer palette for each theme.
THEMES = {
    "light": Theme("#ffffff", "#1f2328", "#d0d7de", "#0969da", "#9a6700", "#cf222e"),
    "dark": Theme("#0d1117", "#e6edf3", "#30363d", "#58a6ff", "#d29922", "#f85149"),
}


def render(chart: Chart, theme: str = "light") -> bytes:
    """The chart as a PNG of WIDTH x HEIGHT pixels. The light theme is an
    opaque white card: it reads the same in a light or a dark chat."""
    with _draw_lock:
        return _draw(chart, THEMES[theme])


async def render_async(chart: Chart, theme: str = "light") -> bytes:
    """render() in the charts' own worker thread: the event loop goes on, and a
    slow drawing holds up no other thread pool's work."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chart")
    return await asyncio.get_running_loop().run_in_executor(_executor, render, chart, theme)


def _draw(chart: Chart, colours: Theme) -> bytes:
    _private_config()
    import matplotlib

    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # the same picture whatever matplotlibrc a machine has
        matplotlib.rcParams["text.parse_math"] = False  # "$" is money here, not TeX
        return _plot(chart, colours)


def _private_config() -> None:
    """matplotlib's config and font cache in a directory of our own: the image's
    root file system is read-only (matplotlib would warn and make one anyway),
    and no user's matplotlibrc changes the charts."""
    if "MPLCONFIGDIR" in os.environ:
        return
    folder = Path(tempfile.gettempdir()) / f"balance-bot-matplotlib-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        mine = folder.stat().st_uid == os.getuid() and not folder.is_symlink()
    except OSError:
        mine = False
    os.environ["MPLCONFIGDIR"] = str(
        folder if mine else tempfile.mkdtemp(prefix="balance-bot-mpl-")
    )


def _plot(chart: Chart, colours: Theme) -> bytes:
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, facecolor=colours.background)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.11, 0.13, 0.86, 0.74))
    ax.set_facecolor(colours.background)
    size = 17  # points: ~6 px high on a phone that shows the picture 400 px wide

    def when(at: float) -> Any:
        return mdates.date2num(datetime.fromtimestamp(at, chart.zone))

    times = [when(at) for at, _ in chart.points]
    values = [v for _, v in chart.points]
    edge = chart.edge
    top = max([*values, *(level.value for level in chart.levels), 0.0])
    ax.set_xlim(when(chart.start), when(edge))
    ax.set_ylim(min(0.0, min(values)), top * 1.12 or 1.0)

    for span in chart.spans:
        colour = colours.critical if span.severity is Severity.CRITICAL else colours.warning
        ax.axvspan(
            when(max(span.start, chart.start)), when(span.end), color=colour, alpha=0.16, lw=0
        )

    ax.plot(times, values, color=colours.line, lw=3, solid_capstyle="round")

    dashed = chart.forecast()
    if dashed is not None:
        (start, balance), (end, reached) = dashed
        ax.plot(
            [when(start), when(end)], [balance, reached], color=colours.line, lw=3, ls=(0, (4, 3))
        )
        if reached <= 0:
            stamp = datetime.fromtimestamp(end, chart.zone).strftime("%a %H:%M")
            ax.annotate(
                f"empty ≈ {stamp}",
                (when(end), 0.0),
                xytext=(0, 14),
                textcoords="offset points",
                ha="right",
                va="bottom",
                fontsize=size,
                color=colours.text,
            )
    ax.axvline(when(chart.now), color=colours.grid, lw=1.5)

    for level in chart.levels:
        colour = colours.critical if level.severity is Severity.CRITICAL else colours.warning
        ax.axhline(level.value, color=colour, lw=2, ls=(0, (1, 2)) if level.recovery else "-")
    _label_levels(ax, chart.levels, colours, size - 3)

    title = "  ·  ".join(chart.caption())
    ax.set_title(title, loc="left", fontsize=size + 2, color=colours.text)
    places = 0 if top >= 10 else 2
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: money(v, chart.currency, places)))
    locator = mdates.AutoDateLocator(tz=chart.zone, minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ticks = mdates.DateFormatter(_time_format(chart.window), tz=chart.zone)
    ax.xaxis.set_major_formatter(ticks)
    ax.tick_params(colors=colours.text, labelsize=size)
    ax.grid(True, color=colours.grid, lw=1)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(colours.grid)
    ax.set_xlabel(str(chart.zone), fontsize=size - 3, color=colours.text, loc="right")

    out = io.BytesIO()
    fig.savefig(
        out, format="png", dpi=DPI, facecolor=colours.background, metadata={"Software": None}
    )
    fig.clear()
    return out.getvalue()


def _label_levels(ax: Any, levels: Sequence[Level], colours: Theme, size: int) -> None:
    """One label per rule, at its threshold, moved up just enough that no two
    labels overlap (levels are often close: warning at 20, critical at 5)."""
    labels: dict[str, tuple[float, str, Severity]] = {}
    for level in levels:
        rule, _, said = level.label.partition(": ")
        value, text, severity = labels.get(rule, (level.value, rule + ":", level.severity))
        labels[rule] = (value if level.recovery else level.value, f"{text} {said}", severity)
    low, high = ax.get_ylim()
    step = size * 1.5 / 72 * DPI / (ax.get_position().height * HEIGHT)  # a line, in axes
    placed: list[float] = []
    for value, text, severity in sorted(labels.values(), key=lambda label: label[0]):
        y = (value - low) / ((high - low) or 1.0)
        if placed:
            y = max(y, placed[-1] + step)
        placed.append(min(y, 1.0 - step))
        colour = colours.critical if severity is Severity.CRITICAL else colours.warning
        ax.annotate(
            text.replace(" resolves", ", resolves"),
            (0.005, placed[-1]),
            xycoords="axes fraction",
            xytext=(0, 2),
            textcoords="offset points",
            va="bottom",
            fontsize=size,
            color=colour,
            bbox={"facecolor": colours.background, "edgecolor": "none", "alpha": 0.85, "pad": 1},
        )


def _time_format(window: str) -> str:
    return {"24h": "%H:%M", "7d": "%a %d"}.get(window, "%d %b")
