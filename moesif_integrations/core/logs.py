"""The package logger and a guard that keeps repeated failures from flooding the host's logs."""

from __future__ import annotations

import logging
import threading
import time
from typing import Dict, Tuple

from .lifecycle import reset_in_forked_child

logger = logging.getLogger("moesif_integrations")
logger.addHandler(logging.NullHandler())


class LogOnce:
    """Logs a given kind of problem once, then at most once per ``interval`` seconds.

    Repeats in between are counted and the count is reported with the next line, so a hook that
    raises on every request costs one log line a minute, not one per request.
    """

    def __init__(self, interval: float = 60.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        # key -> (time of the last line, repeats suppressed since)
        self._seen: Dict[str, Tuple[float, int]] = {}
        reset_in_forked_child(self)

    def log(
        self, key: str, level: int, message: str, *args: object, exc_info: bool = False
    ) -> bool:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._seen.get(key, (None, 0))
            if last is not None and now - last < self._interval:
                self._seen[key] = (last, suppressed + 1)
                return False
            self._seen[key] = (now, 0)
        if suppressed:
            message += " (%d more like this since the last report)"
            args = args + (suppressed,)
        logger.log(level, message, *args, exc_info=exc_info)
        return True

    def after_fork_in_child(self) -> None:
        # A lock another thread held at fork() stays locked for ever in the child.
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
