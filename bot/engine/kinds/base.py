"""The rule kind's interface and the registry of kinds by unit."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

from bot.engine.units import Unit


class Reading(Protocol):
    """What a kind reads of an alert event (bot.engine.model.Event) to say it."""

    @property
    def value(self) -> float | None: ...  # in the kind's unit
    @property
    def usd(self) -> float | None: ...  # the money that remains
    @property
    def recover_at(self) -> float | None: ...
    @property
    def rate(self) -> float | None: ...
    @property
    def window(self) -> float | None: ...
    @property
    def gathering(self) -> bool: ...
    @property
    def currency(self) -> str: ...  # of the money in it


_BY_UNIT: dict[str, type[Kind]] = {}


class Kind:
    """A rule's condition. By default it falls: fires below `threshold`,
    resolves at or above `recover_at`."""

    __slots__ = ()
    threshold: float
    recover_at: float

    unit: ClassVar[str]  # a `Unit` for the built-in kinds
    # its keys in a [[rules]] entry
    config_key: ClassVar[str]
    recovery_key: ClassVar[str]
    extra_keys: ClassVar[tuple[str, ...]] = ()  # more of its keys, its later fields
    rising: ClassVar[bool] = False  # fires above its threshold (spending)
    needs_rate: ClassVar[bool] = False  # measured from each subject's burn rate
    is_remainder: ClassVar[bool] = False  # the value is what remains, in money
    is_share: ClassVar[bool] = False  # the value is a share: the money is looked up
    with_forecast: ClassVar[bool] = False  # a fire line adds days left at the rate
    perf_label: ClassVar[str | None] = None  # its perfdata label in `check`, if any

    if TYPE_CHECKING:  # each kind is a dataclass: its levels, then its extra keys

        def __init__(self, threshold: float, recover_at: float, *extra: float) -> None: ...

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "unit" in cls.__dict__:
            _BY_UNIT[cls.unit] = cls

    def fires(self, value: float) -> bool:
        return value > self.threshold if self.rising else value < self.threshold

    def recovers(self, value: float) -> bool:
        return value <= self.recover_at if self.rising else value >= self.recover_at

    def spend_window(self) -> float | None:
        """The seconds of spending it sums, for a kind that watches spending."""
        return None

    def measure(
        self, remain: float, used: float, rate: float | None, spent: float | None
    ) -> float | None:
        """Its value for one subject (None: not known yet, e.g. gathering data)."""
        raise NotImplementedError

    @staticmethod
    def default_recovery(threshold: float) -> float:
        raise NotImplementedError

    @classmethod
    def level(cls, value: float | None) -> str:
        """A threshold or recovery level as it reads in a message."""
        raise NotImplementedError

    @classmethod
    def level_in(cls, value: float | None, currency: str) -> str:
        """A level of an account whose money is `currency` (kinds in money say it)."""
        return cls.level(value)

    @classmethod
    def now(cls, event: Reading) -> str:
        """What the subject's value is now, in the kind's terms."""
        raise NotImplementedError

    @classmethod
    def resolved(cls, event: Reading) -> str:
        """What a resolve line says about the value."""
        raise NotImplementedError

    @classmethod
    def perf_value(cls, total: float, rate: float | None) -> str:
        """The account's perfdata value for `perf_label`, from its balance and burn rate."""
        raise NotImplementedError


def kind_of(unit: str) -> type[Kind]:
    """The kind of an event's unit; a unit this version does not know reads as money."""
    return _BY_UNIT.get(unit) or _BY_UNIT[Unit.USD]


def kinds() -> tuple[type[Kind], ...]:
    """Every registered kind, in registration order."""
    return tuple(_BY_UNIT.values())
