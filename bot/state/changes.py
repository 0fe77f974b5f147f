"""What a cycle's commit changes, whatever the backend writes it to: the rows
to delete and write, and the alerts that ended (their told, acks and messages
end with them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.engine.model import AccountHealth, AlertKey, AlertState, EngineState
from bot.state.types import Commit


@dataclass(frozen=True, slots=True)
class Changes:
    gone: list[AlertKey]  # alerts no longer in the state
    changed: list[AlertState]  # new or different
    health: list[AccountHealth]  # whose failures changed (a good poll's time is its snapshot's)
    ended: list[tuple[str, str, str]]  # alerts and data-unavailable alerts that stopped firing

    @classmethod
    def of(cls, commit: Commit) -> Changes:
        old, new = commit.old, commit.new
        return cls(
            [k for k in old.alerts if k not in new.alerts],
            [s for k, s in new.alerts.items() if old.alerts.get(k) != s],
            [h for a, h in new.health.items() if _failures(old.health.get(a)) != _failures(h)],
            _ended(old, new),
        )

    def resolved(self) -> set[tuple[str, str, str]]:
        """The alerts whose messages resolve: ended, and those of a rule or
        account removed from the config."""
        return {*self.ended, *((k.rule, k.account, k.subject) for k in self.gone)}


def _failures(health: AccountHealth | None) -> tuple[Any, ...] | None:
    """What a health row must be written for: not a good poll's time alone (the
    snapshot written with it has that)."""
    if health is None:
        return None
    return (health.failures, health.failing_since, health.unavailable, health.last_error)


def _ended(old: EngineState, new: EngineState) -> list[tuple[str, str, str]]:
    ended = [
        tuple(k)
        for k, s in old.alerts.items()
        if s.firing and not (k in new.alerts and new.alerts[k].firing)
    ]
    ended += [
        ("", a, "")
        for a, h in old.health.items()
        if h.unavailable and not (a in new.health and new.health[a].unavailable)
    ]
    return ended  # type: ignore[return-value]
