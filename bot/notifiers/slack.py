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
import html
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any, ClassVar

import aiohttp
from pydantic import Field, SecretStr, field_validator
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.common.backoff import retry_after
from bot.common.logs import log_event
from bot.engine.model import Severity
from bot.notifiers import (
    Command,
    DeliveryError,
    GroupName,
    NotifierConfig,
    NotifierContext,
    Press,
    Request,
)
from bot.notifiers.base import ChatNotifier, StartError, Unreachable, capped, shaped
from bot.notifiers.message import CONTINUED, Limits, Message, Span, buttons, fit, pack, units

logger = logging.getLogger(__name__)

MAX_BLOCKS = 50
TEXT_LIMIT = 3000  # per text object
# Slack also rejects a message whose blocks hold ~12,000 characters in total
# (msg_blocks_too_long; not in the docs, see slackapi/bolt-js#2509).
PAYLOAD_BUDGET = 10_000
# Escaping can grow a 200-character name fivefold (& -> &amp;), so each piece
# of a block has a budget; a heading plus a line always fit in TEXT_LIMIT.
TITLE_BUDGET = 500
HEADING_BUDGET = 500
LINE_BUDGET = TEXT_LIMIT - HEADING_BUDGET - len(CONTINUED) - 1
FALLBACK_CHARS = 150  # the notification text: the title, cut short (escaped length)

RESPONSE_URL_USES = 5  # Slack accepts five posts to one response_url (within 30 min)
REQUEST_TIMEOUT = 15.0  # one Web API or response_url request
STOP_WAIT = 5.0  # answers under way get this long on stop()

DEFAULT = "balance"  # the command the slash command runs without a sub-command word
SEVERITY_MARK = {Severity.CRITICAL: "🔴", Severity.WARNING: "🟠"}
# Retrying cannot fix these token problems; the hint says what to check.
AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
    }
)
# The only Web API errors worth retrying; every other `ok: false` is permanent.
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
# slack-sdk's loggers; the configured tokens are masked in their records too.
SDK_LOGGERS = (
    "slack_sdk.web.async_base_client",
    "slack_sdk.socket_mode.aiohttp",
    "slack_sdk.webhook.async_client",
)


class SlackConfig(NotifierConfig):
    bot_token: Annotated[SecretStr, shaped("xoxb-", "must be a bot token starting with xoxb-")]
    # optional: without it alerts are posted, and there are no commands or buttons
    app_token: (
        Annotated[SecretStr, shaped("xapp-", "must be an app-level token starting with xapp-")]
        | None
    ) = None
    channel: str = Field(min_length=1)
    # where commands and buttons work; empty: the channel and every group's channels
    allowed_channels: list[str] = Field(default_factory=list)
    allowed_users: list[str] = Field(default_factory=list)  # empty: everyone in those channels
    groups: dict[GroupName, Annotated[list[str], Field(min_length=1)]] = Field(default_factory=dict)
    api_url: str = "https://slack.com/api/"

    @field_validator("app_token", mode="before")
    @classmethod
    def _no_app_token(cls, value: Any) -> Any:
        return None if value == "" else value  # "${SLACK_APP_TOKEN:-}" left unset

    @field_validator("channel")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        """Posting takes a #name, but commands, buttons and uploads compare ids."""
        if not CHANNEL_ID.fullmatch(value):
            name = ", not a #name" if value.startswith("#") else ""
            raise ValueError(
                f"must be a channel id such as C0123456789{name}: it is at the bottom of "
                "the channel's details (click the channel name), or type /balance id there"
            )
        return value


class SlackNotifier(ChatNotifier):
    Config = SlackConfig
    config: SlackConfig
    library_loggers = SDK_LOGGERS
    # Socket Mode keep-alive: the SDK pings this often and, after a drop it did
    # not see as a close frame, notices within about this long and reconnects.
    ping_interval: ClassVar[float] = 5.0
    # start() waits this long for Socket Mode, then lets it go on connecting
    connect_wait: ClassVar[float] = 5.0

    def __init__(self, name: str, config: SlackConfig, context: NotifierContext) -> None:
        app = config.app_token.get_secret_value() if config.app_token else ""
        self._tokens = (config.bot_token.get_secret_value(), app)
        super().__init__(name, config, context, secrets=[t for t in self._tokens if t])
        self._session: aiohttp.ClientSession | None = None
        self._web_client: AsyncWebClient | None = None
        self._socket: SocketModeClient | None = None
        self._answers: set[asyncio.Task[None]] = set()

    def destinations(self) -> list[str]:
        return [self.config.channel]

    def groups(self) -> dict[str, list[str]]:
        return {g: list(channels) for g, channels in self.config.groups.items()}

    def allowed_channels(self) -> list[str]:
        config = self.config
        return config.allowed_channels or [
            config.channel,
            *(c for members in config.groups.values() for c in members),
        ]

    # --- alerts -----------------------------------------------------------------

    def format(self, message: Message) -> list[dict[str, Any]]:
        return render(message)

    def pieces(self, message: Message) -> list[tuple[Any, Sequence[str]]]:
        if not self._tokens[1]:  # alerts only: a press would reach nobody
            message = replace(message, actions=())
        return list(render_pieces(message))

    async def send(self, destination: str, payload: dict[str, Any]) -> str | None:
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

    # --- commands ---------------------------------------------------------------

    async def _on_request(
        self, client: AsyncBaseSocketModeClient, request: SocketModeRequest
    ) -> None:
        # Acknowledge first: Slack tells the user the command failed after 3 s.
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))
        payload = request.payload
        if request.type == "slash_commands":
            work = self._answer(payload)
        elif request.type == "interactive" and payload.get("type") == "block_actions":
            work = self._pressed(payload)
        else:
            return
        task = asyncio.create_task(work, name="slack.answer")
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _answer(self, payload: dict[str, Any]) -> None:
        command = str(payload.get("command") or "/balance")
        text = str(payload.get("text") or "").strip()
        channel, user = str(payload.get("channel_id", "")), str(payload.get("user_id", ""))
        url = payload.get("response_url")
        if not url:
            log_event(logger, "slack.no_response_url", logging.WARNING, channel_id=channel)
            return
        chosen, args = self._chosen(text)
        if not chosen.public and self._refused(channel, user, command, payload.get("channel_name")):
            await self._respond(str(url), self.context.commands.refusal(), channel, command)
            return

        async def reply() -> None:
            try:
                log_event(
                    logger,
                    "slack.command",
                    command=f"{command} {text}".rstrip(),
                    channel_id=channel,
                    user_id=user,
                )
                name = payload.get("user_name")
                who = f"@{name}" if name else user
                usage = help_lines(self.context.commands.table(), command)
                message = await chosen.run(Request(args, channel, user, usage, who))
            except Exception as exc:
                logger.error(
                    "slack.command_failed",
                    exc_info=exc,
                    extra={"fields": {"channel_id": channel, "user_id": user}},
                )
                message = Message("balance-bot could not answer; the reason is in its log.", ())
            await self._respond(str(url), message, channel, command)

        if chosen.public:  # /balance id: always, at once
            await reply()
            return
        # Answers are ephemeral, seen by the one who asked: one at a time per person.
        written = command if chosen.name == DEFAULT else f"{command} {chosen.name}"
        await self.one_at_a_time(
            f"{channel}/{user}",
            written,
            reply,
            lambda note: self._respond(str(url), note, channel, command),
        )

    async def _pressed(self, payload: dict[str, Any]) -> None:
        """A button of an alert message: acted on if the channel and user are
        allowed; the answer goes to the presser only (ephemeral)."""
        channel = str((payload.get("channel") or {}).get("id", ""))
        person = payload.get("user") or {}
        user = str(person.get("id", ""))
        url = payload.get("response_url")
        actions = payload.get("actions") or [{}]
        verb, _, token = str(actions[0].get("value") or "").partition(":")
        if self._refused(channel, user, "button"):
            text = self.context.commands.refusal().title
        else:
            name = person.get("username") or person.get("name")
            press = Press(self.name, channel, verb, token, f"@{name}" if name else user)
            try:
                text = self.context.commands.press(press)
            except Exception as exc:
                logger.error(
                    "slack.press_failed",
                    exc_info=exc,
                    extra={"fields": {"channel_id": channel, "user_id": user}},
                )
                text = "balance-bot could not do that; the reason is in its log."
            log_event(logger, "slack.pressed", verb=verb, channel_id=channel, user_id=user)
        if url:
            await self._respond(str(url), Message(text, ()), channel, "button")

    def _refused(self, channel: str, user: str, what: str, channel_name: Any = None) -> bool:
        """Whether access is refused; if so, logged with the ids to allow."""
        hint = self._refusal_hint(channel, user)
        if hint:
            log_event(
                logger,
                "slack.refused",
                logging.WARNING,
                channel_id=channel,
                channel_name=channel_name,
                user_id=user,
                command=what,
                hint=hint,
            )
        return bool(hint)

    def _refusal_hint(self, channel: str, user: str) -> str:
        if channel not in self.allowed_channels():
            return "add the channel id to notifiers.slack.allowed_channels to allow this channel"
        if self.config.allowed_users and user not in self.config.allowed_users:
            return "add the user id to notifiers.slack.allowed_users to allow this user"
        return ""

    def _chosen(self, text: str) -> tuple[Command, str]:
        """`/balance <word> ...` runs the sub-command `word`; anything else is
        `/balance [account]`. A sub-command wins over an account of its name."""
        table = self.context.commands.table()
        word, _, rest = text.partition(" ")
        chosen = next((c for c in table if c.name == word.lower() and c.name != DEFAULT), None)
        if chosen is None:
            return next(c for c in table if c.name == DEFAULT), text
        return chosen, rest.strip()

    async def _respond(self, url: str, message: Message, channel: str, command: str) -> None:
        """Post the answer to response_url, ephemeral; Slack takes at most five posts."""
        # a response_url takes five posts (RESPONSE_URL_USES), the reply limit of every chat
        payloads = [payload for payload, _ in render_pieces(message, command)]
        hook = AsyncWebhookClient(url, timeout=int(REQUEST_TIMEOUT), session=self._http())
        for payload in payloads:
            try:
                response = await hook.send_dict(
                    {"response_type": "ephemeral", "replace_original": False, **payload}
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                # never the URL: it lets anyone answer in the user's name for 30 minutes
                reason = f"{type(exc).__name__}"
            else:
                if response.status_code == 200:
                    continue
                reason = f"HTTP {response.status_code}: {self.clean(response.body)[:200]}"
            log_event(
                logger,
                "slack.answer_failed",
                logging.WARNING,
                channel_id=channel,
                reason=reason,
            )
            return

    # --- helpers ----------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        """The one HTTP session for Slack's Web API and response URLs (made on the loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            )
            self._web_client = None
        return self._session

    def _web(self) -> AsyncWebClient:
        session = self._http()
        if self._web_client is None:
            self._web_client = AsyncWebClient(
                token=self._tokens[0],
                base_url=self.config.api_url,
                session=session,
                timeout=int(REQUEST_TIMEOUT),
                retry_handlers=[],  # the outbox retries, with backoff and Retry-After
            )
        return self._web_client

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"no answer within {REQUEST_TIMEOUT:g}s"
        return f"{type(exc).__name__}: {self.clean(exc)}"


_HINTS = {
    "channel_not_found": "check notifiers.slack.channel (the channel id, e.g. C0123456789) "
    "and invite the bot to a private channel",
    "not_in_channel": "invite the bot to the channel (/invite @<bot name> in the channel)",
    "is_archived": "the channel is archived; unarchive it or configure another channel",
    "missing_scope": "the app lacks the chat:write scope; add it and reinstall the app",
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


def help_lines(table: Sequence[Command], command: str = "/balance") -> tuple[tuple[str, str], ...]:
    """The slash command alone is /balance for every account; other commands are its words."""
    lines = [
        (command, "balance, usage and keys of every account"),
        (f"{command} <account>", "one account"),
    ]
    lines += [(f"{command} {c.name} {c.args}".rstrip(), c.help) for c in table if c.name != DEFAULT]
    return tuple(lines)


# --- Message -> Block Kit -------------------------------------------------------


def render(message: Message) -> list[dict[str, Any]]:
    """The message as Block Kit payloads `{"text", "blocks"}`, deterministic.

    Payloads break between lines; each starts with the title (with an (i/n)
    marker when there are several), and one that starts inside a section
    repeats its heading. The `text` is the notification fallback: the title.
    """
    return [payload for payload, _ in render_pieces(message)]


def render_pieces(message: Message, answer: str = "") -> list[tuple[dict[str, Any], list[str]]]:
    """render(), each payload with the references of its lines; `answer`: the
    command the message answers (an answer is cut to REPLY_LIMIT payloads: capped)."""
    mark = SEVERITY_MARK.get(message.severity, "") if message.severity else ""
    plain_title = message.title if message.title.strip() else "balance-bot"
    title = fit((Span(plain_title, bold=True),), TITLE_BUDGET, _span)
    fallback = fit((Span(plain_title),), FALLBACK_CHARS, _span)
    if mark:
        title, fallback = f"{mark} {title}", f"{mark} {fallback}"
    sections = [
        (
            fit((Span(s.heading, bold=True),), HEADING_BUDGET, _span) if s.heading.strip() else "",
            [
                (text, s.ref(i))
                for i, text in enumerate(fit(line, LINE_BUDGET, _span) for line in s.lines)
                if text.strip()
            ],
        )
        for s in message.sections
    ]
    # the title block, and the buttons' block where there may be buttons
    reserved = 2 if message.ref and message.actions else 1
    limits = Limits(
        room=PAYLOAD_BUDGET - units(title) - 16, block=TEXT_LIMIT, blocks=MAX_BLOCKS - reserved
    )
    pieces = pack(sections, limits)
    if answer:
        pieces = capped(pieces, message, _note, answer)
    total = len(pieces)
    payloads = []
    for index, piece in enumerate(pieces, 1):
        part = f" ({index}/{total})" if total > 1 else ""
        blocks = [_block(title + part), *(_block(t) for t in piece.blocks)]
        pressable = buttons(message, index - 1, piece.refs)
        if pressable:
            blocks.append(_actions(pressable))
        payloads.append(({"text": fallback + part, "blocks": blocks}, piece.refs))
    return payloads


def _actions(pressable: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A Block Kit actions block: one button per (label, value); the value says
    what to do to which message (message.buttons)."""
    return {
        "type": "actions",
        "block_id": "balance-bot-actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": label},
                "action_id": value.partition(":")[0],
                "value": value,
            }
            for label, value in pressable
        ],
    }


def _block(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _note(text: str) -> str:
    return fit((Span(text, bold=True),), LINE_BUDGET, _span)


def _span(text: str, bold: bool) -> str:
    text = _esc(text)
    if not bold:
        return text
    # *bold* only works with no space inside the asterisks: keep it outside.
    core = text.strip()
    if not core:
        return text
    start = text.index(core)
    return f"{text[:start]}*{core}*{text[start + len(core) :]}"


def _esc(text: str) -> str:
    # Slack mrkdwn needs exactly &, < and > escaped; escaped quotes would show as &#x27;.
    return html.escape(text, quote=False)
