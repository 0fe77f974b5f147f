"""The Telegram notifier's ground: its config, limits, the TLS and HTTP
settings, and what sending and answering share."""

from __future__ import annotations

import functools
import logging
import os
import re
import ssl
from typing import Annotated, Any, NamedTuple

import aiohttp
import httpx
from pydantic import BeforeValidator, Field, SecretStr
from telegram import (
    LinkPreviewOptions,
)
from telegram.constants import MessageLimit
from telegram.ext import (
    ApplicationBuilder,
)
from telegram.request import HTTPXRequest

from bot.notifiers import (
    GroupName,
    NotifierConfig,
    NotifierContext,
)
from bot.notifiers.base import ChatNotifier, shaped

# Time periods as timedelta, as PTB 23 will do by default; without this opt-in
ANSWER_TRIES = 3  # a command's answer, per message, when Telegram asks to wait
ANSWER_WAIT_MAX = 10.0  # seconds: a longer wait and the answer is given up (logged)

# PTB 22 warns that the int form is deprecated each time it builds a RetryAfter.
os.environ.setdefault("PTB_TIMEDELTA", "1")

logger = logging.getLogger(__name__)

LIMIT = MessageLimit.MAX_TEXT_LENGTH  # 4096
CAPTION_LIMIT = MessageLimit.CAPTION_LENGTH  # 1024, a photo's caption
# Escaping can grow a 200-character name fivefold (& -> &amp;), so every piece
# of a message has a budget; together they always fit in LIMIT.
TITLE_BUDGET = 1000
HEADING_BUDGET = 1000
LINE_BUDGET = LIMIT - TITLE_BUDGET - HEADING_BUDGET - 16
CONTINUED = " (continued)"  # what message.pack adds to a repeated heading

POLL_TIMEOUT = 30  # seconds a getUpdates long poll stays open
STOP_WAIT = 5.0  # seconds to let command answers under way finish on stop
# Edited messages are not even fetched; my_chat_member tells when the bot joins a chat.
UPDATES = ("message", "channel_post", "my_chat_member", "callback_query")

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
# Loggers whose records carry the token: httpx logs each URL at INFO
# (.../bot<token>/sendMessage) and PTB's bot logs its base URL at DEBUG.
TOKEN_CARRIERS = ("httpx", "telegram.Bot", "telegram.ext.ExtBot")


def _chat_id(value: Any) -> Any:
    """A chat id is a number; a @username or a t.me link is not (the Bot API
    takes @channel names, but commands and buttons compare ids)."""
    if isinstance(value, str) and not re.fullmatch(r"\s*-?\d+\s*", value):
        name = ", not a @username" if value.strip().startswith("@") else ""
        raise ValueError(
            f"must be a numeric chat id such as 123456789 or -1001234567890{name}: send /id "
            "to the bot in that chat to see it (until then any number runs the bot, e.g. 1)"
        )
    return value


ChatId = Annotated[int, BeforeValidator(_chat_id)]


class TelegramConfig(NotifierConfig):
    token: Annotated[
        SecretStr,
        shaped(".*:", "does not look like a bot token from @BotFather (123456:ABC...)"),
    ]
    chat_ids: list[ChatId] = Field(min_length=1)
    # may use commands and buttons; empty: chat_ids and the chats of every group
    allowed_chats: list[ChatId] = Field(default_factory=list)
    allowed_users: list[int] = Field(
        default_factory=list
    )  # if set, only these users may (in an allowed chat)
    groups: dict[GroupName, Annotated[list[ChatId], Field(min_length=1)]] = Field(
        default_factory=dict
    )
    api_url: str = "https://api.telegram.org"


class Post(NamedTuple):
    """One Telegram message: HTML text, and inline buttons as (label, callback data)."""

    text: str
    buttons: tuple[tuple[str, str], ...] = ()


class Photo(NamedTuple):
    """One picture for sendPhoto: the PNG, its file name, its HTML caption."""

    png: bytes
    name: str
    caption: str


class TelegramBase(ChatNotifier):
    """What both halves use: the config, the bot's Application, the access rule."""

    Config = TelegramConfig
    config: TelegramConfig
    library_loggers = TOKEN_CARRIERS

    def __init__(self, name: str, config: TelegramConfig, context: NotifierContext) -> None:
        self._token = config.token.get_secret_value()
        super().__init__(name, config, context, secrets=[self._token])
        api = config.api_url.rstrip("/")
        # Our own request objects, so stop() can close them even if start() never ran.
        self._requests = (
            # one TLS context for both (each would load the CA bundle: ~1 MB)
            HTTPXRequest(connection_pool_size=8, read_timeout=10.0, httpx_kwargs=_tls()),
            HTTPXRequest(connection_pool_size=1, read_timeout=10.0, httpx_kwargs=_tls()),
        )
        self._app = (
            ApplicationBuilder()
            .token(self._token)
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            .request(self._requests[0])
            .get_updates_request(self._requests[1])
            .job_queue(None)  # the service has its own scheduler
            .concurrent_updates(True)  # a slow /balance never holds up another command
            .build()
        )
        self._offset = 0  # the next update to read, as the state remembers it
        self._add_handlers()

    @property
    def offset_key(self) -> str:
        """Where the state keeps how far this bot's updates are read."""
        return f"{self.name}.update_offset"

    def _add_handlers(self) -> None:
        """The command and button handlers: TelegramAnswers adds them."""

    def destinations(self) -> list[str]:
        return [str(c) for c in self.config.chat_ids]

    def groups(self) -> dict[str, list[str]]:
        return {g: [str(c) for c in chats] for g, chats in self.config.groups.items()}

    def allowed(self, chat_id: int | None, user_id: int | None) -> bool:
        """Access (docs/telegram.md): the chat must be allowed and, if
        allowed_users is set, the user listed (a channel post, with no user,
        then never is)."""
        config = self.config
        chats = config.allowed_chats or [
            *config.chat_ids,
            *(c for members in config.groups.values() for c in members),
        ]
        if chat_id not in chats:
            return False
        return not config.allowed_users or user_id in config.allowed_users


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The verifying context aiohttp made at import (the system's CA store, as
    for CometAPI and Slack): one set of certificates in memory, not two (~1 MB)."""
    shared = getattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", None)
    return shared if isinstance(shared, ssl.SSLContext) else httpx.create_ssl_context()


def _tls() -> dict[str, Any]:
    return {"verify": _tls_context()}
