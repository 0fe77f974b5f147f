"""What notifiers need to format the neutral message (bot/engine/message.py, whose
names are here too, for plugins): the one packer that splits a message under a
platform's limits, fitting a line into a budget, the buttons of a piece, and an
edit trimmed to one payload. Imports only the engine and the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from bot.engine.message import (
    ALERT_REF,
    KEY_REF,
    KEYS_REF,
    Action,
    Line,
    Message,
    Picture,
    Section,
    Span,
    alert_of,
    alert_ref,
    keys_in,
    keys_ref,
    plain,
)

__all__ = [
    "ALERT_REF",
    "CONTINUED",
    "KEYS_REF",
    "KEY_REF",
    "Action",
    "Limits",
    "Line",
    "Message",
    "Picture",
    "Piece",
    "Section",
    "Span",
    "alert_of",
    "alert_ref",
    "buttons",
    "fit",
    "keys_in",
    "keys_ref",
    "pack",
    "piece_ref",
    "plain",
    "trimmed",
    "units",
]

CONTINUED = " (continued)"


def piece_ref(ref: str, index: int) -> str:
    """What the buttons of piece `index` of a message name it by: "<row>.<piece>"
    (an edit keeps the reference of the piece it replaces)."""
    return ref if "." in ref else f"{ref}.{index}"


def buttons(message: Message, index: int, refs: Sequence[str]) -> list[tuple[str, str]]:
    """(label, data) of the buttons of piece `index`, whose lines have `refs`:
    the message's actions if the piece announces an alert, each with data
    "<verb>:<piece_ref>" (at most 64 bytes: Telegram's limit)."""
    if not (message.ref and message.actions and any(r.startswith(ALERT_REF) for r in refs)):
        return []
    token = piece_ref(message.ref, index)
    return [(a.label, f"{a.verb}:{token}") for a in message.actions]


def trimmed(message: Message, keep: int) -> Message:
    """`message` with only its first `keep` lines, then a line saying how many
    were left out, and its last section (the notes of an edit) whole."""
    *body, last = message.sections or (Section("", ()),)
    sections: list[Section] = []
    dropped = 0
    for section in body:
        room = max(0, keep - sum(len(s.lines) for s in sections))
        dropped += max(0, len(section.lines) - room)
        if room:
            sections.append(Section(section.heading, section.lines[:room], section.refs[:room]))
    if dropped:
        sections.append(Section("", ((Span(f"… {dropped} more lines not shown"),),)))
    return replace(message, sections=(*sections, last))


def units(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts it: an upper bound for any count."""
    return len(text.encode("utf-16-le")) // 2


def fit(line: Line, budget: int, span: Callable[[str, bool], str]) -> str:
    """`line` in a platform's markup within `budget` units, cut with an ellipsis if
    longer. `span(text, bold)` escapes and marks up one span; the cut is made in
    the raw text, so never inside an escape or a markup tag."""
    full = "".join(span(s.text, s.bold) for s in line)
    if units(full) <= budget:
        return full
    out: list[str] = []
    used = 0
    for part in line:
        piece = span(part.text, part.bold)
        if used + units(piece) + 1 <= budget:
            out.append(piece)
            used += units(piece)
            continue
        room, kept = budget - used - units(span("…", part.bold)), 0
        for char in part.text:
            room -= units(span(char, False))
            if room < 0:
                break
            kept += 1
        out.append(span(part.text[:kept] + "…", part.bold))
        break
    return "".join(out)


# --- packing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """What one payload may hold, in UTF-16 units (the title aside)."""

    room: int  # every block of a piece together, separators included
    block: int | None = None  # one block's text; None: no limit
    blocks: int | None = None  # blocks per piece; None: no limit
    separator: int = 0  # units between two blocks of a piece ("\n\n" is 2)


@dataclass(slots=True)
class Piece:
    """One payload's body: its blocks of text (lines joined by "\\n"), and the
    references of the lines in it, in order."""

    blocks: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    used: int = 0


RenderedSection = tuple[str, Sequence[tuple[str, str | None]]]  # heading, (line, ref)s


def pack(sections: Sequence[RenderedSection], limits: Limits) -> list[Piece]:
    """Rendered lines into pieces within `limits`, deterministically.

    Breaks only between lines. A heading stays with its first line; a piece
    that starts inside a section repeats the heading, marked (continued). A
    line fills the current block, else starts a new block, else a new piece.
    """
    pieces = [Piece()]

    def cost(text: str, new_block: bool) -> int:
        if not new_block:
            return units(text) + 1  # "\n" inside the block
        return units(text) + (limits.separator if pieces[-1].blocks else 0)

    def new_block(text: str, force: bool = False) -> bool:
        piece = pieces[-1]
        full = limits.blocks is not None and len(piece.blocks) >= limits.blocks
        if not force and (full or piece.used + cost(text, True) > limits.room):
            return False
        piece.used += cost(text, True)
        piece.blocks.append(text)
        return True

    def extend_block(text: str) -> bool:
        piece = pieces[-1]
        if not piece.blocks or piece.used + cost(text, False) > limits.room:
            return False
        if limits.block is not None and units(piece.blocks[-1]) + cost(text, False) > limits.block:
            return False
        piece.used += cost(text, False)
        piece.blocks[-1] += "\n" + text
        return True

    def new_piece(text: str) -> None:
        if pieces[-1].blocks:
            pieces.append(Piece())
        new_block(text, force=True)

    def note(ref: str | None) -> None:
        if ref is not None and ref not in pieces[-1].refs:
            pieces[-1].refs.append(ref)

    for heading, lines in sections:
        if not heading and not lines:
            continue
        first, first_ref = lines[0] if lines else ("", None)
        opening = "\n".join(x for x in (heading, first) if x)
        if not new_block(opening):
            new_piece(opening)
        note(first_ref)
        for line, ref in lines[1:]:
            if not (extend_block(line) or new_block(line)):
                new_piece(f"{heading}{CONTINUED}\n{line}" if heading else line)
            note(ref)
    return pieces
