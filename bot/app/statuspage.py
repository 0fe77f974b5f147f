"""The status page's values (bot/ops/status.py renders them): per account the
numbers /balance shows, the chart's address, the alerts firing, snoozed and
acknowledged with since and until when, and the age of the data, read from the
read model and the store; and its charts, drawn off the event loop and kept
until the next poll changes what they show."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

from bot.app.chart import WINDOWS, money
from bot.app.commands import CHART_WINDOW, ChatCommands
from bot.app.readmodel import ReadModel
from bot.app.views import firing_events
from bot.engine.model import Ack, AlertKey, Silence, Snapshot, Target
from bot.engine.text import days, duration, name
from bot.engine.units import days_left
from bot.notifiers.message import plain
from bot.notify.render import event_line
from bot.ops.status import AccountStatus, AlertRow, KeyRow, StatusView
from bot.ops.web import StatusSite

KEYS_SHOWN = 50  # per account; the rest are counted
MIN_REFRESH = 5  # seconds: a 1 s test interval must not reload the page all the time


class StatusPage:
    def __init__(self, model: ReadModel, commands: ChatCommands) -> None:
        self.model, self.commands = model, commands
        # (account, window, theme) -> (the poll it shows, its PNG)
        self._charts: dict[tuple[str, str, str], tuple[datetime | None, bytes]] = {}

    def site(self) -> StatusSite:
        # the token as the config says it now: a reload (SIGHUP) changes it at once
        return StatusSite(
            self.view, self.chart, tuple(WINDOWS), lambda: self.model.config.web.token
        )

    async def chart(self, account: str, window: str, theme: str) -> bytes | None:
        """The PNG /chart/<account>.png answers; None for an unknown account or
        one without history (404)."""
        if account not in self.model.accounts:
            return None
        key = (account, window, theme)
        drawn_at = self.model.last_cycle_at
        kept = self._charts.get(key)
        if kept and kept[0] == drawn_at:
            return kept[1]
        picture = await self.commands.picture(account, window, theme)
        if picture is None:
            return None
        for old in [k for k in self._charts if k[0] not in self.model.accounts]:
            del self._charts[old]
        self._charts[key] = (drawn_at, picture.png)
        return picture.png

    async def view(self) -> StatusView:
        model = self.model
        now = model.now()
        zone = model.timezone
        store = model.store
        silences = await store.silences(now)
        acks = await store.acks()
        firing, _ = firing_events(model.state, model.rules, model.latest, now)
        accounts = []
        for account in model.account_names():
            rows = [
                AlertRow(
                    plain(event_line(e)),
                    _state(e.alert, silences, acks, now),
                    e.severity.value,
                    _local(e.since, zone),
                    _until(e.alert, silences, now, zone),
                    _by(e.alert, silences, acks, now),
                )
                for e in firing
                if e.account == account
            ]
            accounts.append(await self._account(account, rows, now, zone))
        return StatusView(
            tuple(accounts),
            _local(now, zone),
            str(zone),
            max(MIN_REFRESH, math.ceil(model.config.bot.interval)),
            len(firing),
        )

    async def _account(
        self, account: str, alerts: list[AlertRow], now: datetime, zone: ZoneInfo
    ) -> AccountStatus:
        model = self.model
        snapshot = model.latest(account)
        currency = model.currency(account)
        rate = (await model.flow(account)).burn.total
        health = model.state.health.get(account)
        error = health.last_error if health and health.failures else ""
        if snapshot is None:
            return AccountStatus(
                account, "", "—", "—", "—", "no data yet", "", "", "", error, tuple(alerts)
            )
        left = days_left(snapshot.total_quota, rate)
        if rate is None:
            burn, left_text = "gathering data", "gathering data"
        elif left is None or math.isinf(left):
            burn, left_text = "not depleting", "—"
        else:
            burn, left_text = f"{money(rate, currency)}/day", f"≈ {days(left)}"
        balance = money(snapshot.total_quota, currency)
        # a good poll left a history sample: there is something to draw
        chart = f"/chart/{quote(account, safe='')}.png?window={CHART_WINDOW}"
        alt = (
            f"Chart of the balance of {account} over the last 7 days: now {balance}, "
            f"burn rate {burn}, days left {left_text}."
        )
        keys, left_out = _keys(snapshot, model, account, currency)
        return AccountStatus(
            account,
            snapshot.username,
            balance,
            burn,
            left_text,
            duration((now - snapshot.fetched_at).total_seconds()),
            _local(snapshot.fetched_at, zone),
            chart,
            alt,
            error,
            tuple(alerts),
            keys,
            left_out,
        )


def _keys(
    snapshot: Snapshot, model: ReadModel, account: str, currency: str
) -> tuple[tuple[KeyRow, ...], int]:
    firing = {
        a.key.subject
        for a in model.state.alerts.values()
        if a.firing and a.key.account == account and a.key.subject != Target.TOTAL.value
    }
    ordered = sorted(snapshot.keys, key=lambda k: (k.unlimited, k.remain_quota, k.name))
    rows = tuple(
        KeyRow(
            name(k.name),
            "unlimited" if k.unlimited else money(k.remain_quota, currency),
            money(k.used_quota, currency),
            k.name in firing,
        )
        for k in ordered[:KEYS_SHOWN]
    )
    return rows, max(0, len(ordered) - KEYS_SHOWN)


def _state(
    key: AlertKey, silences: Sequence[Silence], acks: Mapping[AlertKey, Ack], now: datetime
) -> str:
    if any(s.covers(key, now) for s in silences):
        return "snoozed"
    if key in acks:
        return "acknowledged"
    return "firing"


def _until(key: AlertKey, silences: Sequence[Silence], now: datetime, zone: ZoneInfo) -> str:
    ends = [s.until for s in silences if s.covers(key, now)]
    return _local(max(ends), zone) if ends else ""


def _by(
    key: AlertKey, silences: Sequence[Silence], acks: Mapping[AlertKey, Ack], now: datetime
) -> str:
    for silence in silences:
        if silence.covers(key, now):
            return silence.who
    ack = acks.get(key)
    return ack.who if ack else ""


def _local(when: datetime | None, zone: ZoneInfo) -> str:
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M") if when else ""
