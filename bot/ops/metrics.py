"""Prometheus metrics, on a registry of our own (one per running bot).

Balances are read from the latest snapshots when /metrics is scraped, so a
poll cycle pays nothing for them, and keys that vanish leave no stale series.
"""

from __future__ import annotations

import functools
import heapq
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

from bot.common.version import package_version
from bot.engine.model import AlertState, PollFailure, PollResult, Snapshot, days_left

MAX_KEY_SERIES = 1000  # per account: label values stay bounded whatever the upstream sends
MAX_KEY_SERIES_TOTAL = 10_000  # all accounts together
MAX_LABEL = 100


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


class _Balances(Collector):
    def __init__(
        self,
        snapshots: Callable[[], Iterable[Snapshot]],
        burn: Callable[[], Mapping[str, float | None]],
    ) -> None:
        self._snapshots = snapshots
        self._burn = burn

    def collect(self) -> Iterator[GaugeMetricFamily]:
        account = ["account"]
        balance = GaugeMetricFamily(
            "cometapi_balance_usd", "Account balance (total_quota)", labels=account
        )
        used = GaugeMetricFamily(
            "cometapi_used_usd", "Consumed so far (total_used_quota)", labels=account
        )
        requests = GaugeMetricFamily(
            "cometapi_request_count", "Requests made by the account", labels=account
        )
        success = GaugeMetricFamily(
            "cometapi_last_success_timestamp_seconds", "Time of the last good poll", labels=account
        )
        keys = GaugeMetricFamily(
            "cometapi_key_remaining_usd",
            f"Remaining quota of a limited key (the {MAX_KEY_SERIES_TOTAL} lowest, at most "
            f"{MAX_KEY_SERIES} per account)",
            labels=["account", "key"],
        )
        burn = GaugeMetricFamily(
            "cometapi_burn_rate_usd_per_day",
            "Spending over the burn window, per day (absent while gathering data)",
            labels=account,
        )
        left = GaugeMetricFamily(
            "cometapi_days_left",
            "Balance / burn rate (absent while gathering data; +Inf when not depleting)",
            labels=account,
        )
        rates = self._burn()
        lowest: list[tuple[float, str, str]] = []
        for snap in self._snapshots():
            rate = rates.get(snap.account)
            if rate is not None:
                burn.add_metric([snap.account], rate)
                left.add_metric([snap.account], days_left(snap.total_quota, rate) or 0.0)
            a = [snap.account]
            balance.add_metric(a, snap.total_quota)
            used.add_metric(a, snap.total_used_quota)
            if snap.request_count is not None:
                requests.add_metric(a, snap.request_count)
            success.add_metric(a, snap.fetched_at.timestamp())
            limited = heapq.nsmallest(
                MAX_KEY_SERIES,
                (k for k in snap.keys if not k.unlimited),
                key=lambda k: k.remain_quota,
            )
            lowest.extend((k.remain_quota, snap.account, k.name) for k in limited)
        # bounded whatever the number of accounts: a page of 250,000 series takes
        # seconds to render and a hundred MB to hold
        seen: set[tuple[str, str]] = set()
        for remain, owner, name in heapq.nsmallest(MAX_KEY_SERIES_TOTAL, lowest):
            label = (owner, _label(name))
            if label not in seen:
                seen.add(label)
                keys.add_metric(list(label), remain)
        yield from (balance, used, requests, success, keys, burn, left)


class Metrics:
    def __init__(self, snapshots: Callable[[], Iterable[Snapshot]] = tuple) -> None:
        # the instruments (thread-safe) apart from the balances (read from live state)
        r = self._instruments = CollectorRegistry()
        self.registry = CollectorRegistry()
        self.registry.register(_Balances(lambda: self.snapshots(), lambda: self.burn()))
        self.registry.register(r)
        self.snapshots = snapshots
        self.burn: Callable[[], Mapping[str, float | None]] = dict  # burn rates by account
        self.poll_failures = Counter(
            "cometapi_poll_failures", "Polls that produced no data", ["account", "kind"], registry=r
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
        snaps, burn = list(self.snapshots()), dict(self.burn())
        page = CollectorRegistry()
        page.register(_Balances(lambda: snaps, lambda: burn))
        page.register(self._instruments)
        return functools.partial(generate_latest, page)

    def observe_polls(self, results: Mapping[str, PollResult]) -> None:
        for account, result in results.items():
            if isinstance(result, PollFailure):
                self.poll_failures.labels(account, result.kind.value).inc()

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
        for name in {*notifiers, *backlog}:
            self.backlog.labels(name).set(backlog.get(name, 0))
