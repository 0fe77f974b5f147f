"""The Slack notifier's ground: its config, limits, and the one HTTP session
and Web API client that sending and answering share."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Annotated, Any, ClassVar

import aiohttp
from pydantic import Field, SecretStr, field_validator
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine.model import Severity
from bot.notifiers import (
    GroupName,
    NotifierConfig,
    NotifierContext,
)
from bot.notifiers.base import ChatNotifier, shaped
from bot.notifiers.message import CONTINUED

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


def missing_scope(exc: SlackApiError) -> str:
    """What to do about `missing_scope`: Slack names the scope it needed."""
    data = exc.response.data
    needed = str(data.get("needed") or "") if isinstance(data, dict) else ""
    needed = needed or "chat:write"
    return (
        f"the app lacks the {needed} scope; add it (OAuth & Permissions, or "
        "slack-app-manifest.yaml) and reinstall the app"
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


class SlackBase(ChatNotifier):
    """What both halves use: the config, the tokens, the one HTTP session and Web API client."""

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
