"""Injected faults: how the collector misbehaves on purpose, settable while it runs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, Dict, Optional, Tuple

MODES = ("fail", "delay", "hang", "drop")


@dataclass(frozen=True)
class Fault:
    """One way to misbehave.

    ``count`` is how many more requests get it (None: until healed). ``all`` extends it from the
    data POSTs to the config and rules GETs.
    """

    mode: str
    status: int = 503
    retry_after: Optional[float] = None
    seconds: float = 0.0
    count: Optional[int] = None
    all: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"fault mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not isinstance(self.status, int) or not 200 <= self.status <= 599:
            raise ValueError(f"fault status must be an integer 200 to 599, not {self.status!r}")
        if self.retry_after is not None and not _non_negative_number(self.retry_after):
            raise ValueError(f"retry_after must be a number >= 0, not {self.retry_after!r}")
        if not _non_negative_number(self.seconds):
            raise ValueError(f"seconds must be a number >= 0, not {self.seconds!r}")
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1
        ):
            raise ValueError(f"count must be an integer >= 1 or None, not {self.count!r}")

    def retry_after_header(self) -> Optional[str]:
        if self.retry_after is None:
            return None
        # Retry-After is delta-seconds, an integer on the wire; keep fractions if asked for.
        if float(self.retry_after).is_integer():
            return str(int(self.retry_after))
        return str(self.retry_after)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> Optional[Fault]:
        """A fault from the read API's JSON; None for ``{"mode": "heal"}``. Raises ValueError."""
        mode = data.get("mode")
        if mode == "heal":
            return None
        known = {"mode", "status", "retry_after", "seconds", "count", "all"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        if not isinstance(mode, str):
            raise ValueError(f"fault mode must be one of heal, {', '.join(MODES)}")
        kwargs = {key: value for key, value in data.items() if value is not None}
        if not isinstance(kwargs.get("all", False), bool):
            raise ValueError("fault field 'all' must be true or false")
        return cls(**kwargs)


def _non_negative_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


class FaultSwitch:
    """The current fault, shared by all handler threads.

    Hung requests wait on an event that ``heal`` (or ``close``) sets, so they sleep rather than
    poll, and a stop never waits for them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: Optional[Fault] = None
        self._release = threading.Event()
        self._closed = False

    @property
    def current(self) -> Optional[Fault]:
        with self._lock:
            return self._fault

    def set(self, fault: Optional[Fault]) -> None:
        """Replaces the fault; None heals, which also releases every hung request."""
        with self._lock:
            self._fault = fault
            if fault is None:
                self._release.set()
                self._release = threading.Event()

    def take(self, config_request: bool) -> Tuple[Optional[Fault], threading.Event]:
        """The fault that applies to one request (counting it down) and the event that
        releases it if it hangs."""
        with self._lock:
            fault = self._fault
            release = self._release
            if self._closed:
                # Stopping: answer nothing new, hold nothing.
                return Fault("drop"), release
            if fault is None or (config_request and not fault.all):
                return None, release
            if fault.count is not None:
                remaining = fault.count - 1
                self._fault = replace(fault, count=remaining) if remaining else None
            return fault, release

    def close(self) -> None:
        """Releases hung requests for good: used when the server stops."""
        with self._lock:
            self._closed = True
            self._release.set()
