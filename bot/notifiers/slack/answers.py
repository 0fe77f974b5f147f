"""The /balance slash command and the buttons, over Socket Mode: acknowledged at
once, answered afterwards to the response_url, ephemeral."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.common.logs import log_event
from bot.notifiers import (
    Command,
    Press,
    Request,
)
from bot.notifiers.message import Message, Picture
from bot.notifiers.slack.base import DEFAULT, REQUEST_TIMEOUT, SlackBase, missing_scope
from bot.notifiers.slack.blocks import help_lines, render_pieces, upload

logger = logging.getLogger(__name__)


class SlackAnswers(SlackBase):
    """The half of the Slack notifier that answers people."""

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
                text = await self.context.commands.press(press)
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
        """Post the answer to response_url, ephemeral; Slack takes at most five
        posts. Pictures are uploaded into the channel (a response_url takes no
        files); a refused upload is said in the answer."""
        for picture in message.pictures:
            problem = await self._upload(picture, channel)
            if problem:
                await self._respond_text(url, Message(problem, ()), channel, command)
                return
        if message.pictures and not message.sections:
            return  # the pictures and the text around them said it all
        await self._respond_text(url, message, channel, command)

    async def _upload(self, picture: Picture, channel: str) -> str:
        """files_upload_v2 into `channel`; "" when done, else what to tell the asker."""
        try:
            await self._web().files_upload_v2(channel=channel, **upload(picture))
        except SlackApiError as exc:
            data = exc.response.data
            error = str(data.get("error") or "") if isinstance(data, dict) else ""
            log_event(
                logger, "slack.upload_failed", logging.WARNING, channel_id=channel, reason=error
            )
            if error == "missing_scope":
                return f"Charts cannot be posted here: {missing_scope(exc)}."
            if error in ("not_in_channel", "channel_not_found"):
                return "Charts cannot be posted here: invite the bot to this channel first."
            return f"Charts cannot be posted here: Slack said {error or 'no'}."
        except (aiohttp.ClientError, TimeoutError, SlackClientError) as exc:
            log_event(
                logger,
                "slack.upload_failed",
                logging.WARNING,
                channel_id=channel,
                reason=type(exc).__name__,
            )
            return "Charts could not be uploaded just now; try again in a minute."
        return ""

    async def _respond_text(self, url: str, message: Message, channel: str, command: str) -> None:
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
