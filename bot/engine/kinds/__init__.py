"""Rule kinds: each is one class that knows what only it knows — the value it
measures, its unit, how its levels and values read, its config keys and its
perfdata. The engine, the renderer, the views and `check` ask the kind; none
tests which kind it is.

A new kind is a module here (a `Kind` subclass: it registers itself by its
unit), its import below, and its keys in `bot.config.RuleSection`.
"""

from bot.engine.kinds.base import Kind, Reading, kind_of, kinds
from bot.engine.kinds.below import Below
from bot.engine.kinds.percent import BelowPercent
from bot.engine.kinds.runway import DaysLeft
from bot.engine.kinds.spend import SpendAbove

__all__ = ["Below", "BelowPercent", "DaysLeft", "Kind", "Reading", "SpendAbove", "kind_of", "kinds"]
