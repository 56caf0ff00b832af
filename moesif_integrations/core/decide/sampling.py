"""Sampling: which share of the exchanges becomes events, from the app config.

The rate of an exchange, first that applies (docs/protocol.md, "App config"): the first
``regex_config`` entry whose conditions all match, ``user_sample_rate[user_id]``,
``company_sample_rate[company_id]``, ``sample_rate``, 100. A kept event's ``weight`` is
``round(100 / rate)``, at least 1; rate 0 keeps nothing.

``early_rate`` decides from the route alone (verb, path, peer address) when the rest cannot
change the answer, so a request dropped that way costs almost nothing: no body is copied and no
hook is called.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Pattern, Sequence, Tuple

from .. import draws
from ..record import ExchangeRecord
from .conditions import (
    MAX_MATCHED_CHARS,
    REQUEST_FIELDS,
    RESPONSE_FIELDS,
    ROUTE_INDEX,
    Problems,
    compile_pattern,
)

FULL_RATE = 100.0
RouteCondition = Tuple[int, Pattern[str]]
# Paths early_rate remembers (a bounded memo: paths are the clients' to choose).
_ROUTES_REMEMBERED = 4096


def as_rate(value: Any) -> Optional[float]:
    """A sample rate (a number 0 to 100), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not 0 <= value <= 100:  # NaN fails too
        return None
    return float(value)


def weight_of(rate: float) -> int:
    """How many real exchanges one event kept at ``rate`` percent stands for."""
    return max(1, round(FULL_RATE / rate))


class SamplingEntry:
    """One ``regex_config`` entry: its route conditions, its status condition, its rate."""

    __slots__ = ("route", "status", "rate")

    def __init__(
        self, route: Tuple[RouteCondition, ...], status: Optional[Pattern[str]], rate: float
    ) -> None:
        self.route = route
        self.status = status
        self.rate = rate

    def route_matches(self, values: Sequence[Optional[str]]) -> bool:
        for index, pattern in self.route:
            value = values[index]
            if value is None or pattern.search(value[:MAX_MATCHED_CHARS]) is None:
                return False
        return True


class Sampling:
    """The sampling part of one app config, compiled."""

    def __init__(
        self,
        default_rate: float = FULL_RATE,
        user_rates: Optional[Dict[str, float]] = None,
        company_rates: Optional[Dict[str, float]] = None,
        entries: Sequence[SamplingEntry] = (),
        draw: Callable[[], float] = draws.draw,
    ) -> None:
        self.default_rate = default_rate
        self.user_rates = user_rates or {}
        self.company_rates = company_rates or {}
        self.entries = tuple(entries)
        self.draw = draw
        # Everything is kept at 100%: nothing to decide, ever.
        self.keeps_all = (
            default_rate >= FULL_RATE
            and not self.entries
            and not any(rate < FULL_RATE for rate in self.user_rates.values())
            and not any(rate < FULL_RATE for rate in self.company_rates.values())
        )
        # early_rate can answer from the route alone for some requests.
        self.decides_early = not self.keeps_all and (
            any(not entry.status for entry in self.entries)
            or not (self.user_rates or self.company_rates)
        )
        # early_rate's answers by path, when the path is all its conditions read: an app serves
        # the same few routes again and again.
        self._by_route: Optional[Dict[Optional[str], Optional[float]]] = None
        if all(index == 1 for entry in self.entries for index, _ in entry.route):
            self._by_route = {}

    def early_rate(
        self, verb: Optional[str], route: Optional[str], ip_address: Optional[str]
    ) -> Optional[float]:
        """The rate when the route alone decides it; None when identity or the status may."""
        by_route = self._by_route
        if by_route is None:
            return self._early_rate(verb, route, ip_address)
        try:
            return by_route[route]
        except KeyError:
            pass
        rate = self._early_rate(verb, route, ip_address)
        if len(by_route) >= _ROUTES_REMEMBERED:
            by_route.clear()
        by_route[route] = rate
        return rate

    def _early_rate(
        self, verb: Optional[str], route: Optional[str], ip_address: Optional[str]
    ) -> Optional[float]:
        values = (verb, route, ip_address)
        for entry in self.entries:
            if entry.route_matches(values):
                if entry.status is not None:
                    return None  # the status decides whether this entry applies
                return entry.rate
        if self.user_rates or self.company_rates:
            return None
        return self.default_rate

    def rate(self, record: ExchangeRecord) -> float:
        """The rate of a finished exchange."""
        values = (record.method, record.path, record.remote_addr)
        status = str(record.status)
        for entry in self.entries:
            if entry.route_matches(values) and (
                entry.status is None or entry.status.search(status) is not None
            ):
                return entry.rate
        user_id = record.user_id
        if user_id is not None:
            rate = self.user_rates.get(user_id)
            if rate is not None:
                return rate
        company_id = record.company_id
        if company_id is not None:
            rate = self.company_rates.get(company_id)
            if rate is not None:
                return rate
        return self.default_rate

    def keeps(self, rate: float) -> bool:
        """One draw: whether an exchange sampled at ``rate`` percent is kept."""
        if rate >= FULL_RATE:
            return True
        if rate <= 0:
            return False
        return self.draw() * FULL_RATE < rate


KEEP_ALL = Sampling()


def compile_sampling(config: Dict[str, Any], problems: Problems) -> Sampling:
    """The sampling of an app config document; bad parts are noted in ``problems`` and left
    out (a bad entry never matches; a bad rate is no rate)."""
    default_rate = FULL_RATE
    if "sample_rate" in config:
        rate = as_rate(config["sample_rate"])
        if rate is None:
            problems.add("sample_rate is not a number from 0 to 100")
        else:
            default_rate = rate
    return Sampling(
        default_rate,
        _rates(config.get("user_sample_rate"), "user_sample_rate", problems),
        _rates(config.get("company_sample_rate"), "company_sample_rate", problems),
        _entries(config.get("regex_config"), problems),
    )


def _rates(data: Any, what: str, problems: Problems) -> Dict[str, float]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.add(f"{what} is not an object")
        return {}
    rates: Dict[str, float] = {}
    for key, value in data.items():
        rate = as_rate(value)
        if rate is None:
            problems.add(f"{what} has a rate that is not a number from 0 to 100")
        else:
            rates[str(key)] = rate
    return rates


def _entries(data: Any, problems: Problems) -> List[SamplingEntry]:
    if data is None:
        return []
    if not isinstance(data, list):
        problems.add("regex_config is not a list")
        return []
    entries: List[SamplingEntry] = []
    for item in data:
        try:
            entries.append(_entry(item))
        except ValueError as exc:
            problems.add(f"regex_config entry skipped: {exc}")
    return entries


def _entry(item: Any) -> SamplingEntry:
    if not isinstance(item, dict):
        raise ValueError("not an object")
    rate = as_rate(item.get("sample_rate"))
    if rate is None:
        raise ValueError("sample_rate is not a number from 0 to 100")
    conditions = item.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise ValueError("no conditions")
    route: List[RouteCondition] = []
    status: Optional[Pattern[str]] = None
    for condition in conditions:
        if not isinstance(condition, dict):
            raise ValueError("a condition is not an object")
        path = condition.get("path")
        pattern = compile_pattern(condition.get("value"))
        if path in REQUEST_FIELDS:
            route.append((ROUTE_INDEX[path], pattern))
        elif path in RESPONSE_FIELDS and status is None:
            status = pattern
        else:
            raise ValueError(f"unknown condition path {str(path)[:80]!r}")
    return SamplingEntry(tuple(route), status, rate)
