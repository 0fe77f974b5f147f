"""A neutral Message as Block Kit payloads: mrkdwn section blocks, every string
escaped, split under Slack's limits (see the package docstring)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from bot.notifiers import (
    Command,
)
from bot.notifiers.base import capped
from bot.notifiers.message import Limits, Message, Picture, Span, buttons, fit, pack, units
from bot.notifiers.slack.base import (
    DEFAULT,
    FALLBACK_CHARS,
    HEADING_BUDGET,
    LINE_BUDGET,
    MAX_BLOCKS,
    PAYLOAD_BUDGET,
    SEVERITY_MARK,
    TEXT_LIMIT,
    TITLE_BUDGET,
)


def help_lines(table: Sequence[Command], command: str = "/balance") -> tuple[tuple[str, str], ...]:
    """The slash command alone is /balance for every account; other commands are its words."""
    lines = [
        (command, "balance, usage and keys of every account"),
        (f"{command} <account>", "one account"),
    ]
    lines += [(f"{command} {c.name} {c.args}".rstrip(), c.help) for c in table if c.name != DEFAULT]
    return tuple(lines)


def upload(picture: Picture) -> dict[str, Any]:
    """A picture as files_upload_v2's arguments: the PNG, and the message around
    it (its caption in mrkdwn, the first line bold) saying the numbers."""
    lines = [
        fit((Span(line, bold=i == 0),), LINE_BUDGET // 2, _span)
        for i, line in enumerate(picture.caption)
    ]
    return {
        "file": picture.png,
        "filename": picture.name,
        "title": picture.caption[0] if picture.caption else picture.name,
        "alt_txt": picture.alt[:1000],
        "initial_comment": "\n".join(lines),
    }


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
