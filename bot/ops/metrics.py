"""Prometheus metrics, on a registry of our own (one per running bot).

Balances are read from the latest snapshots when /metrics is scraped, so a
poll cycle pays nothing for them, and keys that vanish leave no stale series.
"""

from __future__ import annotations

import heapq
import io
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from bot.common.version import package_version
from bot.engine.model import (
    AlertState,
    PollFailure,
    PollResult,
    Snapshot,
    days_left,
)

MAX_KEY_SERIES = 1000  # per account: label values stay bounded whatever the upstream sends
MAX_KEY_SERIES_TOTAL = 10_000  # all accounts together
MAX_LABEL = 100
DAY = 86400.0


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


MONEY = ("account", "provider", "currency")
PLAIN = ("account", "provider")
# (name, help, label names) of the balance families, in the page's order
FAMILIES = (
    ("balance_bot_balance", "Account balance, in its currency", MONEY),
    (
        "balance_bot_used",
        "Consumed so far, in its currency (derived from balance drops where the provider "
        "reports none)",
        MONEY,
    ),
    (
        "balance_bot_upstream_requests",
        "Requests the account made, as its provider counts them",
        PLAIN,
    ),
    ("balance_bot_last_success_timestamp_seconds", "Time of the last good poll", PLAIN),
    (
        "balance_bot_key_remaining",
        f"Remaining quota of a limited key (the {MAX_KEY_SERIES_TOTAL} lowest, at most "
        f"{MAX_KEY_SERIES} per account)",
        (*MONEY, "key"),
    ),
    (
        "balance_bot_burn_rate_per_day",
        "Spending over the burn window, per day, in its currency (absent while gathering data)",
        MONEY,
    ),
    (
        "balance_bot_time_left_seconds",
        "Balance / burn rate (absent while gathering data; +Inf when not depleting)",
        PLAIN,
    ),
)
Series = Iterator[tuple[tuple[str, ...], float]]  # label values (as FAMILIES names them), value


class _Balances(Collector):
    """Every account under one namespace, whatever its provider: `provider` and
    `currency` labels instead of names that say USD (SPEC 7). Each family's series
    are made one at a time from the snapshots, for the registry (collect) and for
    the page (text: no metric objects, whatever the number of accounts)."""

    def __init__(
        self,
        snapshots: Callable[[], Iterable[Snapshot]],
        burn: Callable[[], Mapping[str, float | None]],
        providers: Callable[[], Mapping[str, str]],
    ) -> None:
        self._snapshots = snapshots
        self._burn = burn
        self._providers = providers

    def families(self) -> Iterator[tuple[str, str, tuple[str, ...], Series]]:
        snaps, rates, providers = list(self._snapshots()), self._burn(), self._providers()
        of = [(s, providers.get(s.account, "cometapi")) for s in snaps]
        limited = [(s, p) for s, p in of if not s.unlimited]  # no finite balance, nor time left
        rated = [(s, p, r) for s, p in limited if (r := rates.get(s.account)) is not None]
        series: tuple[Series, ...] = (
            (((s.account, p, s.currency), s.total_quota) for s, p in limited),
            (((s.account, p, s.currency), s.total_used_quota) for s, p in of),
            (((s.account, p), s.request_count) for s, p in of if s.request_count is not None),
            (((s.account, p), s.fetched_at.timestamp()) for s, p in of),
            _lowest_keys(limited),
            (((s.account, p, s.currency), r) for s, p, r in rated),
            (((s.account, p), (days_left(s.total_quota, r) or 0.0) * DAY) for s, p, r in rated),
        )
        for (name, text, labels), values in zip(FAMILIES, series, strict=True):
            yield name, text, labels, values

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, text, labels, values in self.families():
            family = GaugeMetricFamily(name, text, labels=list(labels))
            for label_values, value in values:
                family.add_metric(list(label_values), value)
            yield family

    def text(self) -> str:
        """The families as generate_latest() writes them (labels sorted by name)."""
        out = io.StringIO()
        write = out.write
        for name, text, labels, values in self.families():
            write(f"# HELP {name} {_escape_help(text)}\n# TYPE {name} gauge\n")
            order = sorted(range(len(labels)), key=labels.__getitem__)
            for label_values, value in values:
                pairs = ",".join(f'{labels[i]}="{_escape(label_values[i])}"' for i in order)
                write(f"{name}{{{pairs}}} {floatToGoString(value)}\n")
        return out.getvalue()


def _lowest_keys(accounts: list[tuple[Snapshot, str]]) -> Series:
    """The limited keys with the least left: at most MAX_KEY_SERIES per account and
    MAX_KEY_SERIES_TOTAL in all, bounded whatever the number of accounts (a page of
    250,000 series takes seconds to render and a hundred MB to hold). Candidates
    are made one at a time: no more than the chosen ones are held at once."""
    lowest = [
        (
            snap,
            provider,
            heapq.nsmallest(
                MAX_KEY_SERIES,
                (k for k in snap.keys if not k.unlimited),
                key=lambda k: k.remain_quota,
            ),
        )
        for snap, provider in accounts
    ]
    candidates = (
        (k.remain_quota, snap.account, k.name, provider, snap.currency)
        for snap, provider, keys in lowest
        for k in keys
    )
    seen: set[tuple[str, str]] = set()
    for remain, owner, name, provider, currency in heapq.nsmallest(
        MAX_KEY_SERIES_TOTAL, candidates
    ):
        label = (owner, _label(name))
        if label not in seen:
            seen.add(label)
            yield (owner, provider, currency, label[1]), remain


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


class Metrics:
    def __init__(self, snapshots: Callable[[], Iterable[Snapshot]] = tuple) -> None:
        # the instruments (thread-safe) apart from the balances (read from live state)
        r = self._instruments = CollectorRegistry()
        self._backlog: dict[str, int] = {}  # the backlog gauge's values, by notifier
        self.registry = CollectorRegistry()
        self.registry.register(
            _Balances(lambda: self.snapshots(), lambda: self.burn(), lambda: self.providers())
        )
        self.registry.register(r)
        self.snapshots = snapshots
        self.burn: Callable[[], Mapping[str, float | None]] = dict  # burn rates by account
        self.providers: Callable[[], Mapping[str, str]] = dict  # provider by account
        self.poll_failures = Counter(
            "balance_bot_poll_failures",
            "Polls that produced no data",
            ["account", "provider", "kind"],
            registry=r,
        )
        self.poll_duration = Histogram(
            "balance_bot_cycle_duration_seconds",
            "Time to poll every account and persist",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.alerts_firing = Gauge(
            "balance_bot_alerts_firing", "Firing alerts", ["rule", "severity"], registry=r
        )
        self.notifications = Counter(
            "balance_bot_notifications",
            "Outbox delivery outcomes",
            ["notifier", "outcome"],
            registry=r,
        )
        self.backlog = Gauge(
            "balance_bot_outbox_backlog", "Undelivered outbox entries", ["notifier"], registry=r
        )
        self.destination_up = Gauge(
            "balance_bot_destination_up",
            "1 if the last send to this destination succeeded, 0 if it failed",
            ["notifier", "destination"],
            registry=r,
        )
        self.silences_active = Gauge(
            "balance_bot_silences_active", "Snoozes running (set from chat)", registry=r
        )
        self.active = Gauge(
            "balance_bot_active",
            "1 in the process that polls and sends, 0 in a standby (SPEC 7b)",
            registry=r,
        )
        self._rule_labels: set[tuple[str, str]] = set()
        self.build = Info("balance_bot_build", "Build information", registry=r)
        self.build.info({"version": package_version()})

    def page(self) -> Callable[[], bytes]:
        """The /metrics page, to render in a worker thread: called on the event
        loop, it copies what the balances are read from (the state the loop
        changes); the instruments lock for themselves. At 5,000 accounts the
        rendering takes about a second that the loop then does not wait."""
        snaps, burn, providers = list(self.snapshots()), dict(self.burn()), dict(self.providers())
        balances = _Balances(lambda: snaps, lambda: burn, lambda: providers)
        instruments = self._instruments

        def render() -> bytes:
            return balances.text().encode() + generate_latest(instruments)

        return render

    def observe_polls(self, results: Mapping[str, PollResult]) -> None:
        providers = self.providers()
        for account, result in results.items():
            if isinstance(result, PollFailure):
                provider = providers.get(account, "cometapi")
                self.poll_failures.labels(account, provider, result.kind.value).inc()

    def observe_alerts(self, alerts: Iterable[AlertState], severity_of: Mapping[str, str]) -> None:
        counts: dict[tuple[str, str], int] = {}
        for state in alerts:
            if state.firing and state.key.rule in severity_of:
                label = (state.key.rule, severity_of[state.key.rule])
                counts[label] = counts.get(label, 0) + 1
        for rule, severity in severity_of.items():
            self.alerts_firing.labels(rule, severity).set(counts.get((rule, severity), 0))
        current = set(severity_of.items())
        for gone in self._rule_labels - current:  # a rule removed or re-graded by a reload
            self.alerts_firing.remove(*gone)
        self._rule_labels = current

    def observe_backlog(self, backlog: Mapping[str, int], notifiers: Iterable[str]) -> None:
        self._backlog = {name: backlog.get(name, 0) for name in {*notifiers, *backlog}}
        for name, count in self._backlog.items():
            self.backlog.labels(name).set(count)

    def left_backlog(self, notifier: str) -> None:
        """One entry of `notifier` left the outbox (until the next count says so)."""
        count = self._backlog.get(notifier, 0)
        if count > 0:
            self._backlog[notifier] = count - 1
            self.backlog.labels(notifier).set(count - 1)
