"""The package logger and a guard that keeps repeated failures from flooding the host's logs."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Dict, Mapping, Optional, Tuple

from .lifecycle import reset_in_forked_child

logger = logging.getLogger("moesif_integrations")

# ``extra=`` of a line the user must see even when they configured no logging at all: every
# event rejected (a wrong application id) would otherwise go unnoticed for ever.
VISIBLE: Mapping[str, Any] = {"moesif_visible": True}


class _UnheardLines(logging.Handler):
    """The package logger's own handler. It is what a ``NullHandler`` is (its presence keeps
    ``logging.lastResort`` from printing the package's warnings in apps that configured no
    logging), except for a line logged with ``extra=VISIBLE``: when no other handler on the
    logger's way up would show that line, the first such line of the process goes to stderr.

    The root logger and the host's handlers are never touched.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.told = False
        reset_in_forked_child(self)

    def emit(self, record: logging.LogRecord) -> None:
        # handle() holds this handler's lock: one line at most, whatever the threads do.
        if self.told or not getattr(record, "moesif_visible", False) or self._heard(record):
            return
        self.told = True
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
        record = logging.makeLogRecord(record.__dict__)
        record.msg = (
            record.getMessage() + " (shown once on stderr: no logging handler is configured for "
            "the 'moesif_integrations' logger)"
        )
        record.args = None
        record.exc_info = None
        stderr.handle(record)

    def _heard(self, record: logging.LogRecord) -> bool:
        """Whether a handler other than this one would show ``record``, as Logger.callHandlers
        walks the loggers."""
        current: Optional[logging.Logger] = logger
        while current is not None:
            for handler in current.handlers:
                if handler is self or isinstance(handler, logging.NullHandler):
                    continue
                if record.levelno >= handler.level:
                    return True
            if not current.propagate:
                return False
            current = current.parent
        return False

    def after_fork_in_child(self) -> None:
        self.told = False  # a forked worker is a process of its own, to be told once too
        self.createLock()


logger.addHandler(_UnheardLines())


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
        self,
        key: str,
        level: int,
        message: str,
        *args: object,
        exc_info: bool = False,
        extra: Optional[Mapping[str, Any]] = None,
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
        logger.log(level, message, *args, exc_info=exc_info, extra=extra)
        return True

    def after_fork_in_child(self) -> None:
        # A lock another thread held at fork() stays locked for ever in the child.
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
