"""Slack notifier: alerts to a channel, and the /balance slash command over Socket Mode."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator

from bot.notifiers import Notifier, NotifierConfig
from bot.render import Message


class SlackConfig(NotifierConfig):
    bot_token: SecretStr
    app_token: SecretStr
    channel: str = Field(min_length=1)
    allowed_channels: list[str] = []
    allowed_users: list[str] = []
    api_url: str = "https://slack.com/api/"

    @field_validator("bot_token")
    @classmethod
    def _bot_token(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return v

    @field_validator("app_token")
    @classmethod
    def _app_token(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return v


class SlackNotifier(Notifier):
    Config = SlackConfig

    def destinations(self) -> list[str]:
        return [self.config.channel]

    def format(self, message: Message) -> list[Any]:
        raise NotImplementedError

    async def send(self, destination: str, payload: Any) -> None:
        raise NotImplementedError
