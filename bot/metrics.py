"""Prometheus metrics, on a registry of our own (one per running bot)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from bot.model import AlertState, PollFailure, PollResult, Snapshot

MAX_KEY_SERIES = 1000  # per account: label values stay bounded whatever the upstream sends
MAX_LABEL = 100


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def package_version() -> str:
    try:
        return version("cometapi-balance-bot")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.balance = Gauge(
            "cometapi_balance_usd", "Account balance (total_quota)", ["account"], registry=r
        )
        self.used = Gauge(
            "cometapi_used_usd", "Consumed so far (total_used_quota)", ["account"], registry=r
        )
        self.requests = Gauge(
            "cometapi_request_count", "Requests made by the account", ["account"], registry=r
        )
        self.key_remaining = Gauge(
            "cometapi_key_remaining_usd",
            "Remaining quota of a limited key",
            ["account", "key"],
            registry=r,
        )
        self.poll_failures = Counter(
            "cometapi_poll_failures", "Polls that produced no data", ["account", "kind"], registry=r
        )
        self.last_success = Gauge(
            "cometapi_last_success_timestamp_seconds",
            "Time of the last good poll",
            ["account"],
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
        self.build = Info("balance_bot_build", "Build information", registry=r)
        self.build.info({"version": package_version()})
        self._key_series: dict[str, set[str]] = {}

    def observe_polls(self, results: Mapping[str, PollResult]) -> None:
        for account, result in results.items():
            if isinstance(result, PollFailure):
                self.poll_failures.labels(account, result.kind.value).inc()
            else:
                self._observe_snapshot(result)

    def _observe_snapshot(self, snap: Snapshot) -> None:
        a = snap.account
        self.balance.labels(a).set(snap.total_quota)
        self.used.labels(a).set(snap.total_used_quota)
        if snap.request_count is not None:
            self.requests.labels(a).set(snap.request_count)
        self.last_success.labels(a).set(snap.fetched_at.timestamp())
        keys = sorted((k for k in snap.keys if not k.unlimited), key=lambda k: k.remain_quota)
        fresh = {}
        for key in keys[:MAX_KEY_SERIES]:  # the lowest remainders matter most
            fresh.setdefault(_label(key.name), key.remain_quota)
        for gone in self._key_series.get(a, set()) - fresh.keys():
            self.key_remaining.remove(a, gone)
        for name, value in fresh.items():
            self.key_remaining.labels(a, name).set(value)
        self._key_series[a] = set(fresh)

    def observe_alerts(self, alerts: Iterable[AlertState], severity_of: Mapping[str, str]) -> None:
        counts: dict[tuple[str, str], int] = {}
        for state in alerts:
            if state.firing and state.key.rule in severity_of:
                label = (state.key.rule, severity_of[state.key.rule])
                counts[label] = counts.get(label, 0) + 1
        for rule, severity in severity_of.items():
            self.alerts_firing.labels(rule, severity).set(counts.get((rule, severity), 0))

    def observe_backlog(self, backlog: Mapping[str, int], notifiers: Iterable[str]) -> None:
        for name in {*notifiers, *backlog}:
            self.backlog.labels(name).set(backlog.get(name, 0))
