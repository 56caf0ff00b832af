"""Thread-safe counters behind ``stats()``."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Dict

COUNTER_NAMES = (
    "captured",
    "sent",
    "skipped",
    "sampled_out",
    "dropped_queue_full",
    "dropped_mask_error",
    "dropped_unserializable",
    "failed",
    "capture_errors",
    "hook_errors",
    "retries",
    # users, companies, subscriptions and actions (core/api.py)
    "profiles_sent",
    "profiles_failed",
    "profiles_dropped",
)


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        _live.add(self)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def get(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._values)

    def reset(self) -> None:
        with self._lock:
            for name in self._values:
                self._values[name] = 0


_live: weakref.WeakSet[Counters] = weakref.WeakSet()


def _new_locks_after_fork() -> None:
    # A lock some other thread held at fork() stays locked for ever in the child.
    for counters in list(_live):
        counters._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_locks_after_fork)
