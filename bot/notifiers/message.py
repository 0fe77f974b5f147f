"""The neutral message every notifier formats, and the one packer that splits
it under a platform's limits.

A Message is a title plus sections of lines; a line is a tuple of spans, each
plain or bold, every span text to be escaped by the notifier. A section may
tag its lines with references (the alert a line is about), and a message may
offer actions (buttons) on what it references; plugins that have no buttons
ignore both. Imports only bot.model and the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bot.model import AlertKey, Event, Severity

CONTINUED = " (continued)"
KEY_REF = "key:"  # the reference of a line about a key: "key:<account>/<key>"
# the reference of a line standing for keys left out: "keys:<count>/<account>"
KEYS_REF = "keys:"
ALERT_REF = "alert:"  # the reference of a line announcing an alert (buttons act on it)
_SEP = "\x1f"  # between an alert's rule, account and subject (never in a name: stripped)


def keys_ref(account: str, count: int) -> str:
    return f"{KEYS_REF}{count}/{account}"


def keys_in(ref: str | None) -> int:
    """How many keys a line with reference `ref` is about (see KEY_REF, KEYS_REF)."""
    if ref is None:
        return 0
    if ref.startswith(KEY_REF):
        return 1
    if ref.startswith(KEYS_REF):
        return int(ref.removeprefix(KEYS_REF).partition("/")[0])
    return 0


def alert_ref(key: AlertKey) -> str:
    return ALERT_REF + _SEP.join(key)


def alert_of(ref: str) -> AlertKey | None:
    """The alert an ALERT_REF reference names, or None."""
    if not ref.startswith(ALERT_REF):
        return None
    parts = ref.removeprefix(ALERT_REF).split(_SEP)
    return AlertKey(*parts) if len(parts) == 3 else None


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


@dataclass(frozen=True, slots=True)
class Span:
    text: str
    bold: bool = False


Line = tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class Section:
    heading: str
    lines: tuple[Line, ...]
    # refs[i]: what lines[i] is about (an alert id), or None; () when nothing is
    refs: tuple[str | None, ...] = ()

    def ref(self, index: int) -> str | None:
        return self.refs[index] if index < len(self.refs) else None


@dataclass(frozen=True, slots=True)
class Action:
    """A button offered for every referenced line of a message (or piece)."""

    label: str  # what the button says, e.g. "Snooze 1h"
    verb: str  # what it does, short and stable, e.g. "s1h"


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    sections: tuple[Section, ...]
    severity: Severity | None = None  # the worst severity of a firing alert in it, if any
    actions: tuple[Action, ...] = field(default=())
    ref: str = ""  # what actions name this message by (the outbox row id), once it has one
    # for notifiers that send data rather than text (a webhook): what the message
    # is ("alerts", "still_firing", "digest", "test") and the events it tells of
    kind: str = "alerts"
    events: tuple[Event, ...] = ()
    # an answer cut to a chat's reply limit says this after what it left out: how
    # to ask for less ("{command}" is the chat's command); "" says nothing
    narrower: str = ""

    def plain_lines(self) -> list[str]:
        out = [self.title]
        for section in self.sections:
            if section.heading:
                out.append(section.heading)
            out.extend(plain(line) for line in section.lines)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for a message rendered ahead of its sending (the digest)."""
        return {
            "title": self.title,
            "ref": self.ref,
            "severity": self.severity,
            "actions": [[a.label, a.verb] for a in self.actions],
            "sections": [
                {
                    "heading": s.heading,
                    "lines": [[[span.text, span.bold] for span in line] for line in s.lines],
                    "refs": list(s.refs),
                }
                for s in self.sections
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            data["title"],
            tuple(
                Section(
                    s["heading"],
                    tuple(tuple(Span(t, bool(b)) for t, b in line) for line in s["lines"]),
                    tuple(s.get("refs", ())),
                )
                for s in data["sections"]
            ),
            Severity(data["severity"]) if data.get("severity") else None,
            tuple(Action(label, verb) for label, verb in data.get("actions", ())),
            data.get("ref", ""),
        )


def plain(line: Line) -> str:
    return "".join(span.text for span in line)


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
