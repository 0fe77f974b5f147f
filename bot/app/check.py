"""`balance-bot check` output: a Nagios/Icinga plugin line, or JSON (README, "Commands").

Pure: a function of the cycle's results, the rules and the state it left.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

from bot.app.views import Latest, firing_events
from bot.engine.kinds import Kind, kinds
from bot.engine.model import (
    Account,
    EngineState,
    PollFailure,
    PollResult,
    Rule,
    Severity,
    Snapshot,
    Target,
    days_left,
)
from bot.engine.text import money
from bot.notifiers.message import plain
from bot.notify.render import event_line


class Status(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True, slots=True)
class Report:
    status: Status
    text: str  # the plugin output
    data: dict[str, Any]  # the --json object

    def output(self, as_json: bool) -> str:
        return json.dumps(self.data, indent=2, ensure_ascii=False) if as_json else self.text


def build(
    results: Mapping[str, PollResult],
    rules: Sequence[Rule],
    state: EngineState,
    latest: Latest,
    now: datetime,
    burn: Mapping[str, float | None] | None = None,
    configured: Mapping[str, Account] | None = None,
) -> Report:
    """`burn`: each account's burn rate in its currency per day (None or absent:
    gathering data); `configured`: the accounts by name (provider, currency)."""
    burn, configured = burn or {}, configured or {}
    firing, _ = firing_events(state, rules, latest, now)
    failed = {a: r for a, r in results.items() if isinstance(r, PollFailure)}
    fresh = [e for e in firing if e.account not in failed]
    # a fact of the data, not a failed poll: the provider says no API call will pass
    blocked = [a for a, r in results.items() if isinstance(r, Snapshot) and not r.available]
    if blocked or any(e.severity is Severity.CRITICAL for e in fresh):
        status = Status.CRITICAL
    elif failed:
        status = Status.UNKNOWN
    elif fresh:
        status = Status.WARNING
    else:
        status = Status.OK
    order = {Severity.CRITICAL: 0, Severity.WARNING: 1}
    firing.sort(key=lambda e: (order[e.severity], e.account, e.rule, e.subject))

    problems = [f"{a}: not available for API calls" for a in blocked]
    problems += [f"{a}: {r.reason}" for a, r in failed.items()]
    problems += [plain(event_line(e)) for e in firing if e.account not in failed]
    if problems:
        summary = "; ".join(problems[:3]) + (
            f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        )
    else:
        totals = [
            f"{a} {'unlimited' if r.unlimited else money(r.total_quota, r.currency)}"
            for a, r in results.items()
            if isinstance(r, Snapshot)
        ]
        summary = "all balances above their thresholds: " + ", ".join(totals)
    perf = " ".join(
        p
        for a, r in results.items()
        if isinstance(r, Snapshot) and (p := _perfdata(rules, a, r, burn.get(a)))
    )
    text = f"BALANCE {status.name} - {_one_line(summary)}" + (f" | {perf}" if perf else "")

    accounts = [_account_json(a, r, burn.get(a), configured.get(a)) for a, r in results.items()]
    alerts = [
        {
            "rule": e.rule,
            "account": e.account,
            "subject": e.subject,
            "severity": e.severity.value,
            "state": "firing",
            "value": e.value,
            "threshold": e.threshold,
            "unit": e.unit,
        }
        for e in firing
    ]
    return Report(status, text, {"status": status.name, "accounts": accounts, "alerts": alerts})


def unknown(reason: str) -> Report:
    data = {"status": "UNKNOWN", "accounts": [], "alerts": [], "error": reason}
    return Report(Status.UNKNOWN, f"BALANCE UNKNOWN - {_one_line(reason)}", data)


def _one_line(text: str) -> str:
    return " ".join(text.replace("|", "/").split())


def _perf_label(text: str) -> str:
    return re.sub(r"['=\s]", "_", text)


def _perfdata(rules: Sequence[Rule], account: str, snap: Snapshot, rate: float | None) -> str:
    """'main_total'=12.34;20:;5: - warn/crit are the thresholds of total rules, in
    the plugin guidelines' range syntax, where "alert below 20" is `20:`; with a
    forecast rule also 'main_days_left'=2.4;3:;1: (U while gathering data or
    when not depleting)."""
    label = _perf_label(account)
    if snap.unlimited:
        return ""  # no finite total to measure
    out = []
    for kind in kinds():
        if kind.perf_label is None:
            continue
        levels = _levels(rules, account, kind)
        if kind.is_remainder or levels != ";":  # the balance always; others with a rule
            out.append(
                f"'{label}_{kind.perf_label}'={kind.perf_value(snap.total_quota, rate)};{levels}"
            )
    return " ".join(out)


def _levels(rules: Sequence[Rule], account: str, kind: type[Kind]) -> str:
    """`warn;crit` from the total rules of `kind`: the highest threshold of each severity."""
    levels: dict[Severity, float] = {}
    for rule in rules:
        if (
            rule.target is Target.TOTAL
            and type(rule.kind) is kind
            and rule.matches_account(account)
        ):
            current = levels.get(rule.severity)
            threshold = rule.kind.threshold
            levels[rule.severity] = max(current, threshold) if current else threshold
    warn, crit = levels.get(Severity.WARNING), levels.get(Severity.CRITICAL)
    return ";".join("" if v is None else f"{v:g}:" for v in (warn, crit))


def _account_json(
    account: str, result: PollResult, rate: float | None, config: Account | None
) -> dict[str, Any]:
    provider = config.provider if config else "cometapi"
    if isinstance(result, PollFailure):
        return {
            "name": account,
            "provider": provider,
            "currency": config.currency if config else "USD",
            "username": None,
            "total_quota": None,
            "total_used_quota": None,
            "request_count": None,
            "burn_usd_per_day": None,
            "days_left": None,
            "keys": [],
            "error": result.reason,
        }
    left = None if result.unlimited else days_left(result.total_quota, rate)
    return {
        "name": account,
        "provider": provider,
        "currency": result.currency,
        "username": result.username,
        "total_quota": None if result.unlimited else result.total_quota,
        "total_used_quota": result.total_used_quota,
        "request_count": result.request_count,
        "burn_usd_per_day": rate,
        "days_left": None if left is None or math.isinf(left) else left,  # unrounded (SPEC 3)
        "keys": [
            {
                "name": k.name,
                "remain_quota": k.remain_quota,
                "used_quota": k.used_quota,
                "unlimited": k.unlimited,
            }
            for k in result.keys
        ],
        "error": None,
    }
