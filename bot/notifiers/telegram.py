"""Telegram notifier: alerts to chat_ids, and /balance, /status, /help."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator

from bot.notifiers import Notifier, NotifierConfig
from bot.render import Message


class TelegramConfig(NotifierConfig):
    token: SecretStr
    chat_ids: list[int] = Field(min_length=1)
    api_url: str = "https://api.telegram.org"

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr) -> SecretStr:
        if ":" not in v.get_secret_value():
            raise ValueError("does not look like a bot token from @BotFather (123456:ABC...)")
        return v


class TelegramNotifier(Notifier):
    Config = TelegramConfig

    def destinations(self) -> list[str]:
        return [str(c) for c in self.config.chat_ids]

    def format(self, message: Message) -> list[Any]:
        raise NotImplementedError

    async def send(self, destination: str, payload: Any) -> None:
        raise NotImplementedError
