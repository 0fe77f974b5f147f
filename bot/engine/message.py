"""The neutral message: what every notifier formats and the outbox keeps for a
message rendered ahead. A Message is a title plus sections of lines; a line is a
tuple of spans, each plain or bold, every span text to be escaped by the notifier.
A section may tag its lines with references (the alert a line is about), and a
message may offer actions (buttons) on what it references; plugins that have no
buttons ignore both. Packing it under a platform's limits is bot/notifiers/message.py.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from bot.engine.model import AlertKey, Event, Severity

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
class Picture:
    """An image a message carries (a chart): sent as a photo or a file where the
    platform takes one, with its caption; other notifiers leave it out."""

    png: bytes = field(repr=False)
    name: str  # a file name, e.g. "main-7d.png"
    caption: tuple[str, ...]  # plain lines: the numbers, so they are there without it
    alt: str = ""  # what it shows, for people who cannot see it

    def to_dict(self) -> dict[str, Any]:
        return {
            "png": base64.b64encode(self.png).decode(),
            "name": self.name,
            "caption": list(self.caption),
            "alt": self.alt,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Picture:
        return cls(
            base64.b64decode(data["png"], validate=True),
            str(data["name"]),
            tuple(str(line) for line in data["caption"]),
            str(data.get("alt", "")),
        )


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
    pictures: tuple[Picture, ...] = ()  # after the text, each on its own

    def plain_lines(self) -> list[str]:
        out = [self.title]
        for section in self.sections:
            if section.heading:
                out.append(section.heading)
            out.extend(plain(line) for line in section.lines)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for a message rendered ahead of its sending (the digest)."""
        data: dict[str, Any] = {
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
        if self.pictures:  # only then: rows without pictures read as before
            data["pictures"] = [p.to_dict() for p in self.pictures]
        return data

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
            pictures=tuple(Picture.from_dict(p) for p in data.get("pictures", ())),
        )


def plain(line: Line) -> str:
    return "".join(span.text for span in line)
