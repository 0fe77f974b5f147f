"""The one command table: name, arguments, help, handler, for every platform.

Notifiers own access control and formatting; this module owns what the
answers say, reading through `views` from a BalanceSource (the monitor).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.app.actions import AlertActions
from bot.app.chart import WINDOWS, chart_of, render_async
from bot.app.views import balance_view, digest_view, firing_events, spend_view, status_view
from bot.engine.forecast import DAY
from bot.engine.model import EngineState, Flow, Rule, Snapshot
from bot.notifiers import Command, Press, Request
from bot.notifiers.message import Message, Picture, Section, Span
from bot.notify.render import digest_message, help_message, spend_message
from bot.state.types import Sample

FRESH_FOR = 30.0  # seconds: /balance reuses data younger than this
SPAN = re.compile(r"\d{1,3}[hd]")  # /spend's period: 24h, 7d, 30d

PICTURES = 5  # charts in one answer, at most (the reply limit of every chat)
CHART_WINDOW = "7d"  # /chart's default, and the digest's and status page's window

REFUSAL = "Sorry, this chat is not allowed to use balance-bot."


class BalanceSource(Protocol):
    @property
    def timezone(self) -> ZoneInfo: ...

    @property
    def rules(self) -> Sequence[Rule]: ...

    @property
    def state(self) -> EngineState: ...

    @property
    def request_timeout(self) -> float: ...

    def now(self) -> datetime: ...

    def currency(self, account: str) -> str:
        """The ISO code of the account's money."""
        ...

    def account_names(self) -> list[str]: ...

    def latest(self, account: str) -> Snapshot | None: ...

    async def flow(self, account: str) -> Flow:
        """What the account's history says now: burn rates (USD per day), spending."""
        ...

    async def samples(self, account: str, since: float, until: float) -> list[Sample]:
        """The account's history from `since` (after a baseline) to `until`."""
        ...

    async def recent_snapshot(self, account: str, max_age: float) -> tuple[Snapshot | None, str]:
        """The newest good data no older than max_age, fetching if needed; on a
        failed fetch, the last good data and the (redacted) reason."""
        ...


class ChatCommands:
    def __init__(self, source: BalanceSource, actions: AlertActions | None = None) -> None:
        self.source = source
        self.actions = actions  # None: no snoozes or acks (check, tests of the views)
        self._balances: dict[tuple[str, ...], asyncio.Task[Message]] = {}  # being made

    def table(self) -> tuple[Command, ...]:
        """Every command, in the order platforms list them."""
        return (
            Command("balance", "[account]", "balance, usage and keys per account", self._balance),
            Command("status", "", "alerts firing now and accounts without data", self._status),
            Command(
                "spend",
                "[account] [24h|7d|30d]",
                "spending, burn rate, days left and top keys",
                self._spend,
            ),
            Command("digest", "", "the daily summary, now", self._digest),
            Command(
                "chart",
                "[account] [24h|7d|30d|90d]",
                "a picture of the balance, its levels and the forecast",
                self._chart,
            ),
            Command(
                "snooze",
                "<pattern> <duration>",
                "no alert messages for what matches (account, account/subject or rule)",
                self._snooze,
            ),
            Command("unsnooze", "<pattern|all>", "end snoozes", self._unsnooze),
            Command("id", "", "this chat's and your id, for the config", self._id, public=True),
            Command("help", "", "these commands", self._help),
        )

    async def balance(self, arg: str = "") -> Message:
        """/balance [account]. Asked again for the same accounts while an answer
        is being made, it shares that answer: a storm makes one, not hundreds."""
        names = self._accounts(arg)
        if isinstance(names, Message):
            return names
        key = tuple(names)
        making = self._balances.get(key)
        if making is None:
            making = asyncio.create_task(self._make_balance(names), name="balance")
            self._balances[key] = making
            making.add_done_callback(lambda task: self._made(key, task))
        return await asyncio.shield(making)  # one asker giving up does not end it for all

    def _made(self, key: tuple[str, ...], task: asyncio.Task[Message]) -> None:
        if self._balances.get(key) is task:
            del self._balances[key]
        if not task.cancelled():
            task.exception()  # seen: every asker may have given up

    async def _make_balance(self, names: list[str]) -> Message:
        source = self.source
        fetched = await self._fetch(names)
        burn = {a: (await source.flow(a)).burn for a in names}
        return balance_view(
            fetched, source.rules, source.state, burn, source.now(), source.timezone
        )

    def _accounts(self, arg: str) -> list[str] | Message:
        """The accounts an argument names (all for none), or the answer to a typo."""
        names = self.source.account_names()
        arg = arg.strip()
        if not arg:
            return names
        chosen = [n for n in names if n == arg] or [n for n in names if n.lower() == arg.lower()]
        return chosen or _note(f"Unknown account {arg!r}. Accounts: {', '.join(names)}")

    async def spend(self, args: str = "") -> Message:
        """/spend [account] [24h|7d|30d]: what each account spent over the period."""
        words = args.split()
        period, text = DAY, "24h"
        if words and SPAN.fullmatch(words[-1].lower()):
            text = words.pop().lower()
            period = float(text[:-1]) * (3600 if text.endswith("h") else DAY)
        names = self._accounts(" ".join(words))
        if isinstance(names, Message):
            return names
        source, now = self.source, self.source.now().timestamp()
        views = []
        for account in names:
            latest = source.latest(account)
            samples = await source.samples(account, now - period, now)
            remaining = latest.total_quota if latest else None
            rate = (await source.flow(account)).burn.total  # what /balance says: one truth
            currency = latest.currency if latest else "USD"
            views.append(spend_view(account, samples, remaining, rate, now, period, currency))
        return spend_message(views, text)

    async def chart(self, args: str = "") -> Message:
        """/chart [account] [24h|7d|30d|90d]: one picture per account (at most
        PICTURES), its numbers in the caption; a note for an account with no
        history in the window."""
        words = args.split()
        window = CHART_WINDOW
        if words and words[-1].lower() in WINDOWS:
            window = words.pop().lower()
        names = self._accounts(" ".join(words))
        if isinstance(names, Message):
            return names
        pictures: list[Picture] = []
        notes: list[str] = []
        for account in names:
            if len(pictures) == PICTURES:
                left = len(names) - names.index(account)
                notes.append(
                    f"… {left} more accounts not shown (an answer holds at most {PICTURES} "
                    "pictures); name one to see its chart"
                )
                break
            picture = await self.picture(account, window)
            if picture is None:
                notes.append(f"{account}: no history in the last {window} yet")
            else:
                pictures.append(picture)
        lines = tuple((Span(note),) for note in notes)
        sections = (Section("", lines),) if lines else ()
        return Message(f"Balance charts · {window}", sections, pictures=tuple(pictures))

    async def picture(
        self, account: str, window: str = CHART_WINDOW, theme: str = "light"
    ) -> Picture | None:
        """The chart of `account` over `window`, drawn off the event loop; None
        with no history in the window."""
        source = self.source
        now = source.now()
        at = now.timestamp()
        chart = chart_of(
            account,
            await source.samples(account, at - WINDOWS[window], at),
            source.rules,
            source.state,
            (await source.flow(account)).burn.total,
            now,
            window,
            source.timezone,
            source.currency(account),
        )
        if chart is None:
            return None
        png = await render_async(chart, theme)
        return Picture(png, f"{account}-{window}.png", chart.caption(), chart.alt())

    async def digest(self, day: date | None = None) -> Message:
        """The daily digest, as of now; `day`: the date it is for (a scheduled
        one sent late, after midnight, is still yesterday's)."""
        source = self.source
        now = source.now()
        firing, _ = firing_events(source.state, source.rules, source.latest, now)
        silences = await self.actions.store.silences(now) if self.actions else []
        at = now.timestamp()
        views = []
        for account in source.account_names():
            view = digest_view(
                account,
                source.latest(account),
                (await source.flow(account)).burn.total,
                await source.samples(account, at - 7 * DAY, at),
                source.rules,
                firing,
                now,
                source.timezone,
                silences,
            )
            health = source.state.health.get(account)
            if health and health.failures:  # an account not read shows why, not just "no data"
                view = replace(view, error=health.last_error)
            views.append(view)
        day = day or now.astimezone(source.timezone).date()
        return digest_message(views, day.isoformat())

    async def _fetch(self, names: list[str]) -> dict[str, tuple[Snapshot | None, str]]:
        """Fresh data of every account at once, each within request_timeout; one
        that does not answer in time is shown from its last good data."""
        source = self.source
        timeout = source.request_timeout
        asked = {a: asyncio.ensure_future(source.recent_snapshot(a, FRESH_FOR)) for a in names}
        await asyncio.wait(asked.values(), timeout=timeout)
        fetched = {}
        for account, task in asked.items():
            if task.done():
                fetched[account] = task.result()
            else:
                task.cancel()
                fetched[account] = (source.latest(account), f"no answer within {timeout:g}s")
        await asyncio.gather(*asked.values(), return_exceptions=True)
        return fetched

    async def status(self) -> Message:
        source, now = self.source, self.source.now()
        store = self.actions.store if self.actions else None
        silences = await store.silences(now) if store else []
        acks = list((await store.acks()).values()) if store else []
        return status_view(
            source.state, source.rules, source.latest, now, silences, acks, source.timezone
        )

    @staticmethod
    def refusal() -> Message:
        return _note(REFUSAL)

    async def press(self, press: Press) -> str:
        if self.actions is None:
            return "Buttons do nothing here."
        return await self.actions.press(press)

    async def _balance(self, request: Request) -> Message:
        return await self.balance(request.args)

    async def _status(self, request: Request) -> Message:
        return await self.status()

    async def _spend(self, request: Request) -> Message:
        return await self.spend(request.args)

    async def _digest(self, request: Request) -> Message:
        return await self.digest()

    async def _chart(self, request: Request) -> Message:
        return await self.chart(request.args)

    async def _snooze(self, request: Request) -> Message:
        if self.actions is None:
            return _note("Snoozing needs the running bot.")
        return await self.actions.snooze(request.args, request.who or request.user or request.chat)

    async def _unsnooze(self, request: Request) -> Message:
        if self.actions is None:
            return _note("Snoozing needs the running bot.")
        return await self.actions.unsnooze(
            request.args, request.who or request.user or request.chat
        )

    async def _id(self, request: Request) -> Message:
        return _note(f"chat {request.chat or 'none'} · user {request.user or 'none'}")

    async def _help(self, request: Request) -> Message:
        return help_message(request.usage)


def _note(text: str) -> Message:
    return Message(text, ())
