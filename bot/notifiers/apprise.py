"""The `apprise` notifier: alerts to any service Apprise knows (Discord, e-mail,
ntfy, PagerDuty, Matrix, Teams, ...), one destination per URL (docs/notifiers.md).

Apprise is synchronous: each send runs `Apprise.notify` in a thread of its URL's
own (bot/notifiers/blocking.py), with one Apprise object per URL built once. The
bot gives it NOTIFY_TIMEOUT: a receiver that trickles its answer a byte at a time
never trips the per-read timeouts of requests, so the call may never end. Apprise's
own limits (2.x: `notify(timeout=)` and the asset's `service_timeout`, 60 s by
default) are turned off: they only stop *waiting*, and leave the call running in
Apprise's process-wide pool of six-or-so threads, which a few stuck calls fill
for every URL, and which the interpreter joins at exit. Apprise only says
whether a message went out, so every failure is retried by the outbox, with its
capped backoff; Apprise's own log line says why it failed.

The URLs are the credentials. Each is registered for redaction whole and in
its secret-looking parts (Apprise and urllib3 log users, hosts and paths on
their own), and the loggers of both redact their records at the source.

`apprise` is an optional extra: it is imported only when a [notifiers.apprise]
section is validated or used, so everything else works without it.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import threading
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import AfterValidator, Field, SecretStr, model_validator

from bot.common.secrets import RedactingFilter, redact, register
from bot.engine.model import EventKind, Severity
from bot.notifiers import DeliveryError, Notifier, NotifierConfig, NotifierContext
from bot.notifiers.blocking import BlockingCalls, Busy
from bot.notifiers.message import Limits, Message, Picture, Piece, Span, fit, pack

if TYPE_CHECKING:
    import apprise as apprise_lib

logger = logging.getLogger(__name__)

EXTRA_MISSING = (
    "[notifiers.apprise] needs the apprise extra: pip install 'cometapi-balance-bot[apprise]'"
)
WIKI = "https://github.com/caronc/apprise/wiki"
APP_ID = "balance-bot"  # what Apprise calls the sender (the User-Agent of its HTTP posts)
# loggers that print parts of the URLs: Apprise's, and urllib3's request lines (DEBUG)
LIBRARY_LOGGERS = ("apprise", "urllib3.connectionpool")
NOTIFY_TIMEOUT = 25.0  # one notify() call, kept by the bot; under the outbox's 30 s per send
BODY_LIMIT = 4000  # characters of one message's body: services with limits are not overrun
TITLE_LIMIT = 250
LINE_LIMIT = 1000
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
# query keys whose values are credentials whatever they look like
SECRET_KEYS = frozenset(
    {"key", "apikey", "api_key", "token", "secret", "pass", "password", "pwd", "auth", "webhook"}
)
# URL parts that are no credentials: a plain lowercase word (`hooks`, `webhooks`), a
# lowercase host name or an IPv4 address, a short number, date or version (`1.0`)
_PLAIN = re.compile(r"[a-z]+|(?:[a-z0-9-]+\.)+[a-z]{2,}|\d{1,3}(?:\.\d{1,3}){3}|[\d.:/-]{0,11}")


# --- the URLs' secrets -------------------------------------------------------------------


def _tokenish(part: str) -> bool:
    """A URL part that may be a credential (a token, a key, a topic, an address)."""
    return not _PLAIN.fullmatch(part)


def secret_parts(url: str) -> list[str]:
    """What of an Apprise URL to mask, as written and percent-decoded: the whole
    URL, the password, and each other part that may be a credential (_tokenish):
    the user, a host that is no host name (discord://<webhook id>/...,
    pagerduty://<key>@<key>), path segments, query values and the fragment; a
    query value named like a credential (?token=...) whatever it looks like."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unbalanced brackets: only the whole URL is known
        return [url]
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host = hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport
    found = [url, password]
    found.extend(p for p in (user, host, *parts.path.split("/"), parts.fragment) if _tokenish(p))
    for key, value in parse_qsl(parts.query):
        if key.lower() in SECRET_KEYS or _tokenish(value):
            found.append(value)
    found.extend([unquote(p) for p in found])
    return [p for p in dict.fromkeys(found) if p]


def guard(url: str) -> None:
    """Mask `url` in every log line, before Apprise has seen it: register its
    secret parts, and redact the records of the libraries that log them."""
    for part in secret_parts(url):
        register(part)
    for name in LIBRARY_LOGGERS:
        carrier = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in carrier.filters):
            carrier.addFilter(RedactingFilter())


def _library() -> Any:
    """The apprise package, or the config error that says how to install it."""
    try:
        return importlib.import_module("apprise")
    except ImportError:
        raise ValueError(EXTRA_MISSING) from None


class _Held(logging.Filter):
    """Keeps this thread's records of a logger from being printed, and the
    (redacted) text of its warnings, which say what is wrong with a URL: the
    problem line says it. Its errors only repeat that the URL did not load."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.said: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True  # a send under way elsewhere (a reload validates while it runs)
        if record.levelno == logging.WARNING:
            self.said.append(redact(record.getMessage()))
        return False


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use `url`, in words that never quote it; None if it can."""
    lib = _library()
    written = SCHEME.match(url)
    if written is None:
        return f"is not an Apprise URL: write <service>://... (the services: {WIKI})"
    held = _Held()
    apprise_logger = logging.getLogger("apprise")
    apprise_logger.addFilter(held)
    try:
        usable = lib.Apprise.instantiate(url) is not None
    finally:
        apprise_logger.removeFilter(held)
    if usable:
        return None
    scheme = written[1].lower()
    if scheme in ("http", "https"):
        return (
            f"no Apprise service is known by this {scheme}:// address: write the service's "
            "own URL (discord://, workflows://, ...), json://host/path for a plain JSON "
            f"POST, or use [notifiers.webhook] (the services: {WIKI})"
        )
    if scheme not in lib.NotificationManager():
        return f"unknown scheme '{scheme}': Apprise has no such service (the services: {WIKI})"
    said = f" (Apprise: {' '.join(held.said)})" if held.said else ""
    return (
        f"this {scheme}:// URL is incomplete or malformed, or the service is not "
        f"available here{said}; the form of each URL: {WIKI}"
    )


def _known_url(value: SecretStr) -> SecretStr:
    url = value.get_secret_value()
    guard(url)
    problem = url_problem(url)
    if problem:
        raise ValueError(problem)
    return value


class AppriseConfig(NotifierConfig):
    # one destination each, labelled #1, #2, ... in their order here
    urls: Annotated[list[Annotated[SecretStr, AfterValidator(_known_url)]], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _installed(cls, data: Any) -> Any:
        _library()  # one clear error for the section, rather than one per URL
        return data


# --- the notifier ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Post:
    """One Apprise notification: a piece of a message."""

    title: str
    body: str
    notify_type: str  # Apprise's NotifyType value: the colour or icon services show
    attachment: Picture | None = None  # a chart, where the service takes attachments


@dataclass(frozen=True, slots=True)
class _Target:
    label: str
    apprise: apprise_lib.Apprise
    attachments: bool = False  # the service takes attachments (e-mail, Discord, ntfy, ...)


def scheme_of(url: str, plugin: Any, known: Container[str]) -> str:
    """The service a URL names: its scheme if Apprise `known` it, else (an address
    Apprise recognised, https://discord.com/api/webhooks/...) the service's own."""
    written = SCHEME.match(url)
    scheme = written[1].lower() if written else ""
    if scheme in known:
        return scheme
    for protocol in (plugin.secure_protocol, plugin.protocol):
        if isinstance(protocol, str) and protocol:
            return protocol
        if isinstance(protocol, list | tuple) and protocol:
            return str(protocol[0])
    return scheme


def notify_type(message: Message) -> str:
    """How urgent a message looks: failure for critical, warning, success when all
    is well again, else info."""
    kinds = {e.kind for e in message.events}
    if message.severity is Severity.CRITICAL:
        return "failure"
    if message.severity is Severity.WARNING or EventKind.UNAVAILABLE in kinds:
        return "warning"
    if kinds and kinds <= {EventKind.RESOLVE, EventKind.AVAILABLE}:
        return "success"
    return "info"


def _text(text: str, bold: bool) -> str:
    return text


def render(message: Message) -> list[tuple[str, str]]:
    """(title, body) of each piece: the plain lines, split between lines so that no
    body is longer than BODY_LIMIT; the title of each piece of several says (i/n)."""
    title = fit((Span(message.title),), TITLE_LIMIT, _text)
    sections = [
        (
            fit((Span(s.heading),), LINE_LIMIT, _text) if s.heading else "",
            [(fit(line, LINE_LIMIT, _text), s.ref(i)) for i, line in enumerate(s.lines)],
        )
        for s in message.sections
    ]
    pieces = [p for p in pack(sections, Limits(room=BODY_LIMIT, separator=1)) if p.blocks]
    pieces = pieces or [Piece()]
    total = len(pieces)
    return [
        (f"{title} ({i}/{total})" if total > 1 else title, "\n".join(p.blocks) or title)
        for i, p in enumerate(pieces, 1)
    ]


class AppriseNotifier(Notifier):
    Config = AppriseConfig
    config: AppriseConfig

    def __init__(self, name: str, config: AppriseConfig, context: NotifierContext) -> None:
        super().__init__(name, config, context)
        try:
            import apprise
        except ImportError:
            raise RuntimeError(EXTRA_MISSING) from None
        urls = [u.get_secret_value() for u in config.urls]
        for url in urls:
            guard(url)
        # one line per message sent would repeat delivery.sent: Apprise says only what fails
        library = logging.getLogger("apprise")
        if library.level == logging.NOTSET:
            library.setLevel(max(logging.WARNING, logging.getLogger().level))
        # Apprise 2 would run each call in its shared pool to time it out (see above);
        # 1.x has no such setting and runs a lone URL's call in the caller's thread
        unbounded: dict[str, Any] = (
            {"service_timeout": 0}
            if "service_timeout" in inspect.signature(apprise.AppriseAsset).parameters
            else {}
        )
        asset = apprise.AppriseAsset(app_id=APP_ID, secure_logging=True, **unbounded)
        known = apprise.NotificationManager()
        self._calls = BlockingCalls(name)
        self._targets: dict[str, _Target] = {}
        for number, url in enumerate(urls, 1):
            plugin = apprise.Apprise.instantiate(url, asset=asset)
            if plugin is None:  # validated, so only if the system changed since
                raise RuntimeError(f"notifiers.{name}.urls[{number - 1}]: {url_problem(url)}")
            label = f"#{number} ({scheme_of(url, plugin, known)})"
            self._targets[str(number)] = _Target(
                label,
                apprise.Apprise(plugin, asset=asset),
                bool(getattr(plugin, "attachment_support", False)),
            )

    def destinations(self) -> Sequence[str]:
        return list(self._targets)

    def label(self, destination: str) -> str:
        target = self._targets.get(destination)
        return target.label if target else f"#{destination}"

    def format(self, message: Message) -> list[Post]:
        kind = notify_type(message)
        return [Post(title, body, kind) for title, body in render(message)]

    def picture(self, picture: Picture) -> Post:
        """A chart as an attachment, its caption the body; a service that takes
        no attachments is sent nothing (the digest's text has the numbers)."""
        title = picture.caption[0] if picture.caption else picture.name
        return Post(title, "\n".join(picture.caption), "info", picture)

    async def send(self, destination: str, payload: Post) -> None:
        target = self._targets.get(destination)
        if target is None:
            raise DeliveryError(f"Apprise #{destination}: no such URL", permanent=True)
        attach = None
        if payload.attachment is not None:
            if not target.attachments:
                return None
            attach = _attachment(payload.attachment)
        try:
            result = await self._calls.run(
                destination,
                target.label,
                NOTIFY_TIMEOUT,
                target.apprise.notify,
                body=payload.body,
                title=payload.title,
                notify_type=payload.notify_type,
                body_format="text",
                attach=attach,
            )
        except TimeoutError:
            raise DeliveryError(
                f"Apprise {target.label}: no answer within {NOTIFY_TIMEOUT:g}s"
            ) from None
        except Busy as exc:
            raise DeliveryError(f"Apprise {target.label}: not sent: {exc}") from None
        except Exception as exc:  # Apprise's texts may quote the URL: only the type
            raise DeliveryError(
                f"Apprise {target.label}: not delivered ({type(exc).__name__})"
            ) from None
        if not result:
            raise DeliveryError(f"Apprise {target.label}: not delivered")
        return None

    def remedy(self, error: DeliveryError) -> str:
        return f"Apprise's log line says why; check the URL's form at {WIKI}"


def _attachment(picture: Picture) -> Any:
    """The PNG as an in-memory Apprise attachment (no temporary file)."""
    from apprise import AppriseAttachment
    from apprise.attachment.memory import AttachMemory

    attach = AppriseAttachment()
    attach.add(AttachMemory(content=picture.png, name=picture.name, mimetype="image/png"))
    return attach
