"""`balance-bot init`: a starter config that validates as soon as the
variables it names are set (README, "Commands"). Every option is in rules.example.toml,
installed with the package next to this module."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "rules.example.toml"  # the full reference

HEAD = """\
# balance-bot starter config, written by `balance-bot init`.
# Check it with `balance-bot validate`, try the chats with `balance-bot test-notify`.
# Every option, annotated: {example}

[bot]
interval = "5m"                  # how often each account is polled
state_path = "balance-bot.db"    # alert state and history; next to this file
timezone = "UTC"                 # for times in messages, quiet hours and the digest
# quiet_hours = "22:00-07:00"    # hold warnings at night; criticals still go out

[[accounts]]
name = "main"
key = "${{COMETAPI_QUERY_KEY}}"    # a query-only key (balance 0), as CometAPI recommends
url = "${{COMETAPI_URL:-https://query.cometapi.com/user/quota}}"   # a proxy, or a test server

[[rules]]
name = "account-low"
target = "total"
below = 20                       # USD
recover_above = 25
severity = "warning"
repeat = "12h"

[[rules]]
name = "account-empty"
target = "total"
below = 5
recover_above = 10
severity = "critical"
repeat = "1h"

[[rules]]
name = "key-low"
target = "key"
exclude_keys = ["balance-query"] # the name of your query-only key: it always shows 0
below_percent = 10
recover_above_percent = 15
severity = "warning"

[[rules]]
name = "runway"
target = "total"
days_left_below = 3              # at the current burn rate, the money lasts < 3 days
severity = "warning"

[digest]
at = "09:00"                     # a daily summary, in `timezone`
"""

SECTIONS = {
    "telegram": """
[notifiers.telegram]
token = "${TELEGRAM_BOT_TOKEN}"          # from @BotFather (docs/telegram.md)
chat_ids = ["${TELEGRAM_CHAT_ID}"]       # /id in the chat shows its id
api_url = "${TELEGRAM_API_URL:-https://api.telegram.org}"  # or a fake (docs/offline.md)
""",
    "slack": """
[notifiers.slack]
bot_token = "${SLACK_BOT_TOKEN}"         # xoxb-…: posts alerts (docs/slack.md)
channel = "${SLACK_CHANNEL}"             # a channel id, C0123456789
app_token = "${SLACK_APP_TOKEN:-}"       # optional xapp-…: /balance and buttons
api_url = "${SLACK_API_URL:-https://slack.com/api/}"      # or a fake (docs/offline.md)
""",
    "webhook": """
[notifiers.webhook]
url = "${WEBHOOK_URL}"                   # gets a JSON POST per message (docs/notifiers.md)
secret = "${WEBHOOK_SECRET:-}"           # optional: signs each body (X-Balance-Bot-Signature)
""",
}

VARIABLES = {
    "": [("COMETAPI_QUERY_KEY", "the CometAPI query key")],
    "telegram": [
        ("TELEGRAM_BOT_TOKEN", "the bot's token from @BotFather"),
        ("TELEGRAM_CHAT_ID", "where alerts go; /id in the chat shows it"),
    ],
    "slack": [
        ("SLACK_BOT_TOKEN", "xoxb-…"),
        ("SLACK_CHANNEL", "a channel id such as C0123456789"),
        ("SLACK_APP_TOKEN", "optional, xapp-…: /balance and buttons"),
    ],
    "webhook": [
        ("WEBHOOK_URL", "where alerts are POSTed"),
        ("WEBHOOK_SECRET", "optional: the HMAC key of the signature header"),
    ],
}

PROVIDERS = {
    "newapi": """
[[accounts]]
name = "newapi"
provider = "newapi"              # a new-api / one-api site (docs/providers.md)
url = "${NEWAPI_URL}"            # the site's base, e.g. https://api.example.com
key = "${NEWAPI_KEY}"            # an API token of the site
# currency = "CNY"               # if the site shows CNY; then give it rules of its own
""",
    "openrouter": """
[[accounts]]
name = "openrouter"
provider = "openrouter"
key = "${OPENROUTER_MANAGEMENT_KEY}"   # a *management* key (openrouter.ai/settings/keys)
""",
    "deepseek": """
[[accounts]]
name = "deepseek"
provider = "deepseek"
key = "${DEEPSEEK_API_KEY}"      # a normal API key (platform.deepseek.com/api_keys)
# currency = "CNY"               # default: USD if offered; CNY needs rules of its own
""",
}

PROVIDER_VARIABLES = {
    "newapi": [
        ("NEWAPI_URL", "the new-api site's base URL, e.g. https://api.example.com"),
        ("NEWAPI_KEY", "an API token of that site"),
    ],
    "openrouter": [("OPENROUTER_MANAGEMENT_KEY", "an OpenRouter management key")],
    "deepseek": [("DEEPSEEK_API_KEY", "a DeepSeek API key")],
}

NO_CHAT = """
# No chat yet: alerts are written to the log (stderr). Add a chat with
# `balance-bot init --telegram` (or --slack, --webhook) into another file, or
# copy a [notifiers.*] section from the reference.
"""


def starter(
    telegram: bool = False,
    slack: bool = False,
    webhook: bool = False,
    providers: Sequence[str] = (),
) -> str:
    """The text of a starter config with the notifier sections and the accounts
    of other providers asked for."""
    chosen = [n for n, on in (("telegram", telegram), ("slack", slack), ("webhook", webhook)) if on]
    text = HEAD.format(example=EXAMPLE)
    accounts = "".join(PROVIDERS[p] for p in dict.fromkeys(providers))
    at = text.index("\n[[rules]]")  # after the CometAPI account
    text = text[:at] + accounts.rstrip("\n") + "\n" + text[at:] if accounts else text
    text += "".join(SECTIONS[n] for n in chosen) or NO_CHAT
    return text


def variables(
    telegram: bool = False,
    slack: bool = False,
    webhook: bool = False,
    providers: Sequence[str] = (),
) -> list[str]:
    """The `export NAME=...` lines for what the starter config reads."""
    chosen = [
        "",
        *(n for n, on in (("telegram", telegram), ("slack", slack), ("webhook", webhook)) if on),
    ]
    pairs = [pair for n in chosen for pair in VARIABLES[n]]
    pairs[1:1] = [pair for p in dict.fromkeys(providers) for pair in PROVIDER_VARIABLES[p]]
    return [f"export {name}=...   # {what}" for name, what in pairs]


def write_starter(
    output: str | None,
    telegram: bool,
    slack: bool,
    webhook: bool,
    providers: Sequence[str] = (),
) -> int:
    path = Path(output or "rules.toml")
    try:
        with path.open("x", encoding="utf-8") as f:  # never overwrites
            f.write(starter(telegram, slack, webhook, providers))
    except FileExistsError:
        print(f"{path} exists; left untouched (choose another file with -o FILE)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{path}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    for line in variables(telegram, slack, webhook, providers):
        print(line)
    return 0
