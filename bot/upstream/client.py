"""The upstream client the app uses: poll(account) -> Snapshot or PollFailure,
whatever the account's provider. Each provider (loaded from the
``balance_bot.providers`` entry points) says how its balance is read; the client
retries transient failures within the poll's bound and redacts what comes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, date, datetime

import aiohttp
import stamina
from stamina.instrumentation import RetryDetails

from bot.common.logs import log_event
from bot.common.plugins import load_provider
from bot.common.secrets import MASK, redact
from bot.engine.forecast import DailyUse
from bot.engine.model import Account, FailureKind, PollFailure, Snapshot
from bot.upstream.provider import Provider
from bot.upstream.transport import (
    FetchError,
    NotOffered,
    RetryPolicy,
    Transport,
    new_session,
    safe_chars,
)

logger = logging.getLogger(__name__)


def _log_retry(details: RetryDetails) -> None:
    log_event(  # DEBUG: a failed poll is one poll.failed line, whatever its retries
        logger,
        "poll.retry",
        logging.DEBUG,
        reason=redact(str(details.caused_by)),
        retry=details.retry_num,
        wait=round(details.wait_for, 2),
    )


# stamina's default hooks log through "stamina" and count in the global
# Prometheus registry; ours says which failure is being retried, redacted.
stamina.instrumentation.set_on_retry_hooks([_log_retry])


DEFAULT_RETRY = RetryPolicy()


class Client:
    """Every account of one process, on one session and its transport."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        request_timeout: float,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._http = Transport(session, clock)
        self._timeout = request_timeout
        self._retry = retry
        self._clock = clock
        self._providers: dict[str, Provider] = {}

    new_session = staticmethod(new_session)

    def now(self) -> datetime:
        return self._clock()

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._http.session

    def provider(self, account: Account) -> Provider:
        """The account's provider, loaded once (the config checked that it exists)."""
        if account.provider not in self._providers:
            self._providers[account.provider] = load_provider(account.provider)()
        return self._providers[account.provider]

    def seeds(self, account: Account) -> bool:
        """Whether the account's provider offers past days of usage to seed burn rates."""
        return self.provider(account).seeds

    async def poll(self, account: Account) -> Snapshot | PollFailure:
        """Like fetch, with the failure as a value."""
        try:
            return await self.fetch(account)
        except FetchError as exc:
            return PollFailure(account.name, exc.kind, exc.reason, self._clock())

    async def fetch(self, account: Account) -> Snapshot:
        policy = self._retry
        started = time.monotonic()
        try:  # the first attempt runs on its own: the retry loop costs, and most succeed
            return await self._fetch_once(account, min(self._timeout, policy.deadline))
        except FetchError as exc:
            # without its frames: they hold what the attempt read (up to a body's
            # bound), which must not live on through the waits of the retries
            failed = exc.with_traceback(None)
            failed.__context__ = failed.__cause__ = None  # hidden anyway (`from None`)
        return await self._retried(account, started, failed)

    async def _retried(self, account: Account, started: float, failed: FetchError) -> Snapshot:
        """The attempts after a first one that failed, if its failure is transient."""
        policy = self._retry

        def backoff_hook(exc: BaseException) -> bool | float:
            """Retry transient failures, honouring Retry-After, within the deadline."""
            if not isinstance(exc, FetchError) or not exc.transient:
                return False
            left = policy.deadline - (time.monotonic() - started)
            if exc.retry_after is not None:
                return exc.retry_after if exc.retry_after + 1.0 < left else False
            # room for the longest wait plus a worthwhile attempt
            return left > policy.wait_max + policy.wait_jitter + min(1.0, self._timeout / 2)

        try:
            if policy.attempts < 2 or backoff_hook(failed) is False:
                raise failed
            first: FetchError | None = failed
            async for attempt in stamina.retry_context(
                on=backoff_hook,
                attempts=policy.attempts,
                timeout=None,  # the hook enforces the deadline, waits included
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
                wait_jitter=policy.wait_jitter,
            ):
                with attempt:
                    if first is not None:  # stamina's first attempt is the one that failed:
                        failure, first = first, None  # its wait and log line are stamina's own
                        raise failure
                    left = policy.deadline - (time.monotonic() - started)
                    return await self._fetch_once(account, min(self._timeout, max(left, 0.1)))
        except FetchError as exc:
            # the upstream may echo the key in an error body
            exc.reason = redact(safe_chars(exc.reason).replace(account.key, MASK))
            exc.args = (exc.reason,)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch_once(self, account: Account, seconds: float) -> Snapshot:
        return await self.provider(account).fetch(account, self._http, seconds)

    async def daily(self, account: Account, first: date, last: date) -> list[DailyUse]:
        """The provider's past days of usage first..last, one attempt; raises
        FetchError when the provider or the upstream does not offer them, or answers
        garbage."""
        provider = self.provider(account)
        if not provider.seeds:
            raise NotOffered(f"{account.provider} offers no daily usage")
        try:
            return await provider.daily(account, self._http, self._timeout, first, last)
        except FetchError as exc:
            exc.reason = redact(safe_chars(exc.reason).replace(account.key, MASK))
            raise


async def poll_all(
    client: Client, accounts: list[Account], concurrency: int
) -> dict[str, Snapshot | PollFailure]:
    """Poll every account concurrently, at most `concurrency` at a time."""
    return {name: result async for name, result in poll_each(client, accounts, concurrency)}


async def poll_each(
    client: Client,
    accounts: Sequence[Account],
    concurrency: int,
    gate: asyncio.Event | None = None,
) -> AsyncIterator[tuple[str, Snapshot | PollFailure]]:
    """Every account's poll result as soon as it is in, `concurrency` polls at a
    time; while `gate` is clear no new poll starts. Leaving the loop early
    cancels the polls still under way."""
    queue: asyncio.Queue[tuple[str, Snapshot | PollFailure]] = asyncio.Queue()
    pending = iter(accounts)

    async def worker() -> None:
        for account in pending:  # shared: each account is taken by one worker
            if gate is not None and not gate.is_set():
                await gate.wait()
            try:
                result = await client.poll(account)
            except Exception as exc:  # a bug must not leave the cycle waiting forever
                logger.error(
                    "poll.crashed", exc_info=exc, extra={"fields": {"account": account.name}}
                )
                reason = f"could not poll ({type(exc).__name__}); see the log"
                result = PollFailure(account.name, FailureKind.BAD_RESPONSE, reason, client.now())
            queue.put_nowait((account.name, result))

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(accounts)))]
    try:
        for _ in range(len(accounts)):
            yield await queue.get()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
