"""A bounded memo: a dict that computes what it lacks and remembers it, up to a limit.

The wire remembers what it derives from names and values that repeat from event to event
(header names and their masking, client addresses) where that pays (each use says by how
much). Those come from clients, so each memo is bounded: past ``limit`` entries, values are
computed each time and memory stays put. A hit is one dict lookup; entries are never changed,
so threads may share a memo.
"""

from __future__ import annotations

from typing import Callable, Dict, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


class Memo(Dict[_K, _V]):
    """``memo[key]`` is ``make(key)``, remembered for the first ``limit`` keys."""

    __slots__ = ("_make", "limit")

    def __init__(self, make: Callable[[_K], _V], limit: int) -> None:
        super().__init__()
        self._make = make
        self.limit = limit

    def __missing__(self, key: _K) -> _V:
        value = self._make(key)
        if len(self) < self.limit:
            self[key] = value
        return value
