"""The notifier plugins of one process: built from the config, started and
stopped, swapped on a reload, and what each destination's last delivery said
(for /healthz, the metrics and one log line per change)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from bot import notifiers as registry
from bot.app.views import DestinationState
from bot.common.logs import log_event
from bot.config import Config
from bot.notifiers import Notifier, NotifierContext
from bot.notify.delivery import Outcome
from bot.notify.routing import QuietHours, Router
from bot.ops.metrics import Metrics

logger = logging.getLogger(__name__)

STOP_WITHIN = 10.0  # seconds a retired notifier has to stop on a reload


def active_notifier_names(config: Config) -> list[str]:
    """Configured notifiers, and the fallback when nothing else is or a rule names it."""
    names = list(config.notifiers)
    fallback = registry.FALLBACK
    wanted = any(rule.notify and fallback in rule.notify for rule in config.rules)
    if fallback not in names and (not names or wanted):
        names.append(fallback)
    return names


@dataclass
class Fleet:
    metrics: Metrics
    clock: Callable[[], datetime]
    # by name; delivery reads this very dict, so a swap is seen at the next send
    notifiers: dict[str, Notifier] = field(default_factory=dict)
    states: dict[tuple[str, str], DestinationState] = field(default_factory=dict)

    def build(self, config: Config, context: NotifierContext) -> None:
        for name in active_notifier_names(config):
            self.notifiers[name] = _new(name, config, context)

    async def start(self, listen: bool) -> None:
        await asyncio.gather(*(_start(x, listen) for x in self.notifiers.values()))

    async def stop(self, left: Callable[[], float]) -> None:
        """Each notifier within what is `left` of the shutdown deadline."""
        for notifier in self.notifiers.values():
            await _stop(notifier, left())

    async def swap(self, old: Config, config: Config, context: NotifierContext) -> list[str]:
        """New instances for the notifiers whose section changed, the rest
        untouched. The old ones stop first: Telegram answers a second listener on
        one token with 409 Conflict (a send meanwhile waits in the outbox)."""
        wanted = active_notifier_names(config)
        notifiers = self.notifiers
        changed = [
            n
            for n in wanted
            if n not in notifiers or old.notifiers.get(n) != config.notifiers.get(n)
        ]
        for name in [n for n in notifiers if n not in wanted or n in changed]:
            await _stop(notifiers[name], STOP_WITHIN)
        for name in changed:
            plugin = _new(name, config, context)
            await _start(plugin, listen=True)
            notifiers[name] = plugin
        for name in [n for n in notifiers if n not in wanted]:
            del notifiers[name]
        for plugin in notifiers.values():
            plugin.context = context  # the time zone, for the ones kept
        return changed

    def router(self, config: Config) -> Router:
        quiet = config.bot.quiet
        return Router(
            {n: list(x.destinations()) for n, x in self.notifiers.items()},
            {n: dict(x.groups()) for n, x in self.notifiers.items()},
            QuietHours(*quiet, config.bot.zone) if quiet else None,
        )

    def label(self, notifier: str, destination: str) -> str:
        plugin = self.notifiers.get(notifier)
        return plugin.label(destination) if plugin else destination

    def destination_states(self) -> dict[str, DestinationState]:
        """Every destination's state by its printable name, for /healthz."""
        return {
            f"{n} {self.label(n, d)}": self.states.get((n, d), DestinationState())
            for n, plugin in self.notifiers.items()
            for d in plugin.destinations()
        }

    def record(self, outcome: Outcome) -> None:
        """One send's outcome: the metrics, the destination's state, and a log
        line when it starts or stops failing."""
        self.metrics.notifications.labels(outcome.notifier, outcome.outcome).inc()
        queue = (outcome.notifier, outcome.destination)
        before = self.states.get(queue, DestinationState())
        ok = outcome.outcome == "delivered"
        if before.ok is not ok:
            self.states[queue] = DestinationState(ok, outcome.reason, self.clock())
        elif not ok:
            self.states[queue] = replace(before, last_error=outcome.reason)
        label = self.label(*queue)
        self.metrics.destination_up.labels(outcome.notifier, label).set(int(ok))
        if before.ok is not False and not ok:
            log_event(
                logger,
                "destination.failing",
                logging.ERROR,
                notifier=outcome.notifier,
                destination=label,
                reason=outcome.reason,
                hint="messages for it wait in the outbox (or, if failed for good, it is told "
                "of the alerts still firing at the next start); /healthz shows its state",
            )
        elif before.ok is False and ok:
            log_event(logger, "destination.ok", notifier=outcome.notifier, destination=label)


def _new(name: str, config: Config, context: NotifierContext) -> Notifier:
    cls = registry.load(name)
    section = config.notifiers.get(name)
    return cls(name, section if section is not None else cls.Config(), context)


async def _start(notifier: Notifier, listen: bool) -> None:
    """Start a notifier; one that cannot start is logged, and its sends are
    retried from the outbox (its destinations show it in /healthz)."""
    try:
        await notifier.start(listen)
    except Exception as exc:
        log_event(
            logger,
            "notifier.start_failed",
            logging.ERROR,
            notifier=notifier.name,
            reason=f"{type(exc).__name__}: {exc}",
        )


async def _stop(notifier: Notifier, within: float) -> None:
    try:
        await asyncio.wait_for(notifier.stop(), within)
    except Exception as exc:
        log_event(
            logger,
            "notifier.stop_failed",
            logging.WARNING,
            notifier=notifier.name,
            reason=f"{type(exc).__name__}: {exc}",
        )
