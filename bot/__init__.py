"""balance-bot: warns a team before its AI credit (CometAPI, OpenRouter, DeepSeek,
new-api sites) runs out."""

import sys
import types

# httpx (under python-telegram-bot) imports its command-line tool, and with it
# click and pygments, whenever those happen to be installed (click comes with the
# apprise extra): megabytes of idle memory for a tool the bot never runs. This
# placeholder makes that import fail at once, as it does where they are missing.
sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))
