"""The built-in `log` notifier: alert messages as log lines on stderr.

Always available; used by default when no other notifier is configured, and
the smallest complete example of the notifier contract.
"""

from __future__ import annotations

import logging

from bot.common.logs import log_event
from bot.notifiers import Notifier, NotifierConfig
from bot.notifiers.message import Message

logger = logging.getLogger("bot.alerts")


class LogConfig(NotifierConfig):
    pass


class LogNotifier(Notifier):
    Config = LogConfig

    def format(self, message: Message) -> list[str]:
        return ["\n".join(message.plain_lines())]

    async def send(self, destination: str, payload: str) -> None:
        for line in payload.splitlines():
            log_event(logger, "notify", text=line)
