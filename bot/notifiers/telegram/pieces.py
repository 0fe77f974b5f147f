"""A neutral Message as Telegram HTML posts: every span escaped, split at line
boundaries under the 4096-character limit, buttons as an inline keyboard."""

from __future__ import annotations

import html
from typing import Any

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)
from telegram.constants import ParseMode

from bot.notifiers.base import capped
from bot.notifiers.message import Limits, Message, Picture, Piece, Span, fit, pack, units
from bot.notifiers.telegram.base import (
    CAPTION_LIMIT,
    CONTINUED,
    HEADING_BUDGET,
    LIMIT,
    LINE_BUDGET,
    NO_PREVIEW,
    TITLE_BUDGET,
    Photo,
    Post,
)


def render(message: Message) -> list[str]:
    """The message as Telegram HTML, split into parts of at most LIMIT UTF-16 units.

    Parts break between lines; each repeats the title with an (i/n) marker, and
    a part that starts inside a section repeats its heading. Deterministic.
    """
    return [part for part, _ in render_pieces(message)]


def render_pieces(message: Message, answer: str = "") -> list[tuple[str, list[str]]]:
    """render(), each part with the references of its lines; `answer`: the
    command the message answers (an answer is cut to REPLY_LIMIT parts: capped)."""
    title = fit((Span(message.title, bold=True),), TITLE_BUDGET - 16, _span)
    sections = [
        (
            fit((Span(s.heading, bold=True),), HEADING_BUDGET - len(CONTINUED), _span)
            if s.heading
            else "",
            [(fit(line, LINE_BUDGET, _span), s.ref(i)) for i, line in enumerate(s.lines)],
        )
        for s in message.sections
    ]
    reserve = 0
    while True:
        # the title, its blank line and the (i/n) marker aside; sections apart by a blank line
        limits = Limits(room=LIMIT - units(title) - reserve - 2, separator=2)
        pieces = [p for p in pack(sections, limits) if p.blocks] or [Piece()]
        marker = len(f" ({len(pieces)}/{len(pieces)})") if len(pieces) > 1 else 0
        if marker <= reserve:
            break
        reserve = marker
    if answer:
        pieces = capped(pieces, message, _note, answer)
    total = len(pieces)
    parts = []
    for index, piece in enumerate(pieces, 1):
        head = f"{title} ({index}/{total})" if total > 1 else title
        body = "\n\n".join(piece.blocks)
        parts.append((f"{head}\n\n{body}" if body else head, piece.refs))
    return parts


def _note(text: str) -> str:
    return fit((Span(text, bold=True),), LINE_BUDGET, _span)


def _span(text: str, bold: bool) -> str:
    return f"<b>{_esc(text)}</b>" if bold else _esc(text)


def _esc(text: str) -> str:
    # Quotes need no escaping outside attributes; leaving them keeps messages short.
    return html.escape(text, quote=False)


def _keyboard(post: Post) -> InlineKeyboardMarkup | None:
    if not post.buttons:
        return None
    row = [InlineKeyboardButton(label, callback_data=data) for label, data in post.buttons]
    return InlineKeyboardMarkup([row])


def _text(payload: Post | str) -> dict[str, Any]:
    """What sendMessage and editMessageText both take: HTML text, no link
    previews, the buttons (none: the keyboard goes)."""
    post = Post(payload) if isinstance(payload, str) else payload
    return {
        "text": post.text,
        "parse_mode": ParseMode.HTML,
        "link_preview_options": NO_PREVIEW,
        "reply_markup": _keyboard(post),
    }


def photo(picture: Picture) -> Photo:
    """A picture for sendPhoto: its caption in HTML, the first line bold, under
    Telegram's 1024 characters (the lines are short; a long name is cut)."""
    budget = CAPTION_LIMIT // max(len(picture.caption), 1) - 8
    lines = [
        fit((Span(line, bold=i == 0),), budget, _span) for i, line in enumerate(picture.caption)
    ]
    return Photo(picture.png, picture.name, "\n".join(lines))
