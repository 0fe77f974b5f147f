"""Slack notifier: alerts to a channel, and the /balance slash command over Socket Mode.

Alerts go out with `chat.postMessage` through slack-sdk's AsyncWebClient. That
client has no retry handlers on purpose: the outbox (bot/notify/delivery.py) retries,
so `send()` only maps Slack's answer to a DeliveryError.

Commands arrive over Socket Mode (slack-sdk's aiohttp SocketModeClient) on the
application's own event loop: `connect()` and `close()`, never a handler that
takes over the loop. Every envelope is acknowledged at once (Slack gives 3 s),
and the answer is posted afterwards to the command's `response_url` as an
ephemeral message: it needs no extra scope, works wherever the command was
typed, and only the person who asked sees the numbers.

`format()` turns a neutral Message into Block Kit payloads: mrkdwn section
blocks with every string escaped (`&`, `<`, `>` only), split at line
boundaries so that no payload has more than 50 blocks, no text object more
than 3000 characters, and no payload more than PAYLOAD_BUDGET characters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

from bot.common.backoff import retry_after
from bot.common.logs import log_event
from bot.notifiers import (
    DeliveryError,
)
from bot.notifiers.base import StartError, Unreachable
from bot.notifiers.message import CONTINUED, Message, Picture
from bot.notifiers.slack.answers import SlackAnswers
from bot.notifiers.slack.base import (
    AUTH_ERRORS,
    CHANNEL_ID,
    MAX_BLOCKS,
    PAYLOAD_BUDGET,
    REQUEST_TIMEOUT,
    STOP_WAIT,
    TEXT_LIMIT,
    TRANSIENT_ERRORS,
    SlackConfig,
    missing_scope,
)
from bot.notifiers.slack.blocks import help_lines, render, render_pieces, upload

logger = logging.getLogger(__name__)

__all__ = [
    "CONTINUED",
    "MAX_BLOCKS",
    "PAYLOAD_BUDGET",
    "TEXT_LIMIT",
    "SlackConfig",
    "SlackNotifier",
    "help_lines",
    "render",
    "render_pieces",
]


class SlackNotifier(SlackAnswers):
    """Alerts to a channel (`chat.postMessage`), edits, and the start-up checks."""

    def format(self, message: Message) -> list[dict[str, Any]]:
        return render(message)

    def pieces(self, message: Message) -> list[tuple[Any, Sequence[str]]]:
        if not self._tokens[1]:  # alerts only: a press would reach nobody
            message = replace(message, actions=())
        return list(render_pieces(message))

    def picture(self, picture: Picture) -> dict[str, Any]:
        return upload(picture)

    async def send(self, destination: str, payload: dict[str, Any]) -> str | None:
        if "file" in payload:  # a picture (upload()): files_upload_v2 into the channel
            try:
                await self._web().files_upload_v2(channel=destination, **payload)
            except SlackApiError as exc:
                raise self._api_error(destination, exc) from None
            except (aiohttp.ClientError, TimeoutError, SlackClientError) as exc:
                reason = self._describe(exc)
                raise DeliveryError(f"Slack channel {destination}: {reason}") from None
            return None
        try:
            sent = await self._web().chat_postMessage(
                channel=destination,
                text=payload["text"],
                blocks=payload["blocks"],
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            raise self._api_error(destination, exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"Slack channel {destination}: {self._describe(exc)}") from None
        ts = sent.get("ts")
        return str(ts) if ts else None

    async def edit(self, destination: str, message_id: str, payload: dict[str, Any]) -> None:
        """chat.update of a message the bot posted: its blocks are replaced, so
        buttons left out of the new payload go."""
        try:
            await self._web().chat_update(
                channel=destination, ts=message_id, text=payload["text"], blocks=payload["blocks"]
            )
        except SlackApiError as exc:
            raise self._api_error(destination, exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"Slack channel {destination}: {self._describe(exc)}") from None

    def remedy(self, error: DeliveryError) -> str:
        if error.retry_after is None and error.permanent:
            _, _, hint = error.reason.partition("; ")  # _api_error's hint, if it gave one
            return hint or "check notifiers.slack.channel (an id) and /invite the bot to it"
        return super().remedy(error)

    def _api_error(self, channel: str, exc: SlackApiError) -> DeliveryError:
        where = f"Slack channel {channel}"
        status = exc.response.status_code
        error = _error_code(exc)
        if status == 429 or error == "ratelimited":
            wait = retry_after(exc.response.headers.get("Retry-After"))
            return DeliveryError(f"{where}: rate limited (HTTP 429)", retry_after=wait)
        if status >= 500 or error in TRANSIENT_ERRORS:
            return DeliveryError(f"{where}: {error or 'no answer'} (HTTP {status})")
        if not error:
            return DeliveryError(f"{where}: unexpected answer (HTTP {status})", permanent=True)
        hint = _HINTS.get(error, "")
        if error == "missing_scope":
            hint = missing_scope(exc)
        if error in AUTH_ERRORS:
            hint = "Slack rejected the bot token; check notifiers.slack.bot_token (xoxb-)"
        return DeliveryError(f"{where}: {error}" + (f"; {hint}" if hint else ""), permanent=True)

    # --- lifecycle --------------------------------------------------------------

    async def start(self, listen: bool) -> None:
        """Check the bot token (auth.test) and the channel; with `listen`, also
        connect Socket Mode and answer /balance.

        A rejected token raises StartError. With `listen`, a Slack that
        cannot be reached is retried in the background; alerts wait in the
        outbox meanwhile.
        """
        checked = await self._check_bot(listen)
        if checked:
            await self._check_channel()
        if not listen:
            return
        if not self._tokens[1]:
            log_event(
                logger,
                "slack.alerts_only",
                hint="no app_token: alerts are posted, but /balance and buttons are off; "
                "add an app-level token (xapp-) with Socket Mode to use them (docs/slack.md)",
            )
            return
        self._socket = SocketModeClient(
            app_token=self._tokens[1],
            web_client=AsyncWebClient(
                base_url=self.config.api_url,
                session=self._http(),
                timeout=int(REQUEST_TIMEOUT),
                retry_handlers=[],
            ),
            ping_interval=self.ping_interval,
            auto_reconnect_enabled=True,
        )
        self._socket.socket_mode_request_listeners.append(self._on_request)
        connecting = self.start_later(self._connect(), name="slack.connect")
        done, _ = await asyncio.wait({connecting}, timeout=self.connect_wait)
        if done:
            connecting.result()  # a rejected app token raises here
        else:
            connecting.add_done_callback(_report_late_failure)

    async def _check_bot(self, listen: bool) -> bool:
        """auth.test; False if Slack could not be reached (and `listen` lets us go on)."""
        try:
            who = await self._web().auth_test()
        except SlackApiError as exc:
            error = _error_code(exc)
            if error in AUTH_ERRORS:
                raise StartError(
                    f"Slack rejected the bot token ({error}); check notifiers.slack.bot_token "
                    "(the Bot User OAuth Token, xoxb-) and that the app is installed"
                ) from None
            reason = f"auth.test: {error or 'HTTP ' + str(exc.response.status_code)}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = f"auth.test: {self._describe(exc)}"
        else:
            log_event(
                logger,
                "slack.ready",
                team=who.get("team"),
                bot=who.get("user"),
                bot_user_id=who.get("user_id"),
                channel=self.config.channel,
            )
            return True
        if not listen:
            raise StartError(f"Slack: {reason}")
        log_event(
            logger,
            "slack.unreachable",
            logging.WARNING,
            reason=reason,
            hint="alerts wait in the outbox until Slack answers",
        )
        return False

    async def _check_channel(self) -> None:
        """Can the bot post to the channel? Only answerable with channels:read
        (groups:read for private channels); without that scope it says nothing."""
        channel = self.config.channel
        if not CHANNEL_ID.fullmatch(channel):
            log_event(
                logger,
                "slack.channel_not_id",
                logging.WARNING,
                channel=channel,
                hint="use the channel id (C0123456789, from the channel's details): "
                "/balance compares channel ids",
            )
            return
        try:
            info = await self._web().conversations_info(channel=channel)
        except SlackApiError as exc:
            error = _error_code(exc)
            if error == "channel_not_found":
                log_event(
                    logger,
                    "slack.channel_not_found",
                    logging.WARNING,
                    channel=channel,
                    hint=_HINTS["channel_not_found"],
                )
            else:
                log_event(
                    logger, "slack.channel_unchecked", logging.DEBUG, channel=channel, reason=error
                )
            return
        except (aiohttp.ClientError, TimeoutError):
            return
        data = info.get("channel") or {}
        if data.get("is_member") is False:
            log_event(
                logger,
                "slack.not_in_channel",
                logging.WARNING,
                channel=channel,
                channel_name=data.get("name"),
                hint=_HINTS["not_in_channel"],
            )

    async def _connect(self) -> None:
        """Ask for a Socket Mode URL until Slack answers, then connect; the SDK
        reconnects by itself from then on."""
        socket = self._socket
        assert socket is not None

        async def attempt() -> str:
            try:
                return await socket.issue_new_wss_url()
            except SlackApiError as exc:
                error = _error_code(exc)
                if error in AUTH_ERRORS:
                    raise StartError(
                        f"Slack rejected the app token ({error}); check "
                        "notifiers.slack.app_token (an app-level token, xapp-, with "
                        "connections:write) and that Socket Mode is on"
                    ) from None
                reason = f"apps.connections.open: {error or exc.response.status_code}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = f"apps.connections.open: {self._describe(exc)}"
            raise Unreachable(reason)

        socket.wss_uri = await self.keep_trying(
            attempt, "/balance answers once Socket Mode is connected"
        )
        await socket.connect()
        log_event(
            logger,
            "slack.listening",
            channels=",".join(self.allowed_channels()),
            users=",".join(self.config.allowed_users) or "all",
        )

    async def stop(self) -> None:
        """Stop listening, let answers under way finish (bounded), close connections.
        Safe whether start() succeeded, failed half-way or never ran."""
        await self.cancel_start()
        socket, self._socket = self._socket, None
        if socket:
            try:
                await socket.close()
            except Exception as exc:
                self._stop_failed("socket mode", exc)
            # close() cancels the SDK's tasks without waiting for them
            sdk_tasks = (
                socket.message_processor,
                socket.current_session_monitor,
                socket.message_receiver,
            )
            tasks = [t for t in sdk_tasks if t is not None]
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._answers:
            _, late = await asyncio.wait(self._answers, timeout=STOP_WAIT)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        session, self._session, self._web_client = self._session, None, None
        if session:
            await session.close()

    def _stop_failed(self, step: str, exc: Exception) -> None:
        log_event(
            logger, "slack.stop_failed", logging.WARNING, step=step, reason=self._describe(exc)
        )


_HINTS = {
    "channel_not_found": "check notifiers.slack.channel (the channel id, e.g. C0123456789) "
    "and invite the bot to a private channel",
    "not_in_channel": "invite the bot to the channel (/invite @<bot name> in the channel)",
    "is_archived": "the channel is archived; unarchive it or configure another channel",
    "restricted_action": "the workspace does not let the bot post in this channel",
    "msg_too_long": "the message was too large for Slack; please report this as a bug",
    "msg_blocks_too_long": "the message was too large for Slack; please report this as a bug",
    "invalid_blocks": "Slack rejected the message layout; please report this as a bug",
}


def _error_code(exc: SlackApiError) -> str:
    data = exc.response.data
    return str(data.get("error") or "") if isinstance(data, dict) else ""


def _report_late_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log_event(logger, "slack.start_failed", logging.ERROR, reason=str(task.exception()))
