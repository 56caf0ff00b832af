"""Thread-safe counters behind ``stats()``."""

from __future__ import annotations

import threading
from typing import Dict

from .lifecycle import reset_in_forked_child

COUNTER_NAMES = (
    "captured",
    "sent",
    "skipped",
    "sampled_out",
    "dropped_queue_full",
    "dropped_mask_error",
    "dropped_unserializable",
    # Events larger on the wire than BATCH_MAX_BYTES.
    "dropped_too_large",
    "failed",
    "capture_errors",
    "hook_errors",
    "retries",
    # users, companies, subscriptions and actions (delivery/profile_senders.py)
    "profiles_sent",
    "profiles_failed",
    "profiles_dropped",
)


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        reset_in_forked_child(self)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def get(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._values)

    def after_fork_in_child(self) -> None:
        # A lock another thread held at fork() stays locked for ever in the child.
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            for name in self._values:
                self._values[name] = 0
