"""What a reload (SIGHUP) may change in a running process, and the HTTP client
that follows a new interval, timeout or concurrency."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace

from bot.app.cycle import Clock
from bot.common.logs import log_event
from bot.config import Config
from bot.upstream.client import Client
from bot.upstream.transport import RetryPolicy

logger = logging.getLogger(__name__)

RESTART_ONLY = ("state_path", "state_url", "http_listen")  # of [bot]
POLLING = ("interval", "request_timeout", "max_concurrency")  # of [bot]


def settle(old: Config, new: Config, log: bool = True) -> Config:
    """`new`, with what only a restart applies kept as in `old` (each change
    logged, with `log`): the state's place, the listen address and whether the
    status page is served (its token applies at once)."""
    changed = [f"bot.{n}" for n in RESTART_ONLY if getattr(new.bot, n) != getattr(old.bot, n)]
    if new.web.status_page != old.web.status_page:
        changed.append("web.status_page")
    for setting in changed if log else ():
        hint = "kept as it was; restart balance-bot to apply it"
        if setting == "web.status_page":
            hint += " (the token applies now)"
        log_event(logger, "config.needs_restart", logging.WARNING, setting=setting, hint=hint)
    bot = replace(new.bot, **{n: getattr(old.bot, n) for n in RESTART_ONLY})
    web = replace(new.web, status_page=old.web.status_page)
    return replace(new, bot=bot, web=web)


def client_after(
    old: Config,
    new: Config,
    client: Client,
    retry: RetryPolicy | None,
    stack: contextlib.AsyncExitStack,
    clock: Clock,
) -> Client:
    """The client polls use under `new`: the same one unless a polling setting
    changed; a new session only for a new concurrency (the old one closes at exit)."""
    if all(getattr(new.bot, n) == getattr(old.bot, n) for n in POLLING):
        return client
    session = client.session
    if new.bot.max_concurrency != old.bot.max_concurrency:
        session = Client.new_session(new.bot.max_concurrency)
        stack.push_async_callback(session.close)
    policy = retry or RetryPolicy.for_schedule(new.bot.interval, new.bot.request_timeout)
    return Client(session, new.bot.request_timeout, policy, clock)
