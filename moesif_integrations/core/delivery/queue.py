"""What the event sender (dispatch.py) and the profile sender (api.py) share: a queue under one
lock, the count of items being sent, waiting for the queue to empty, shutdown within a budget,
and fresh state in a forked child. What they queue and how they send it is their own.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Deque, List, Optional

from ..logs import logger


class QueueSender:
    """Base of the two background senders. Subclasses call ``_reset_queue_state()`` from their
    own ``_reset_state()``, start their threads, and say what they hold (``_unsent_what``)."""

    # The subclass's options: they carry ``shutdown_timeout``.
    options: Any
    # Words for the log line of a shutdown that left items unsent ("events").
    _unsent_what = "items"
    # lifecycle.py shuts senders down in this order at exit (lower first).
    exit_order = 0

    def _reset_queue_state(self) -> None:
        """Fresh queue and locks: at construction and in a forked child (where a lock another
        thread held at the fork would stay held for ever)."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._queue: Deque[Any] = collections.deque()
        self._queued_bytes = 0
        self._in_flight = 0
        self._stop = threading.Event()
        self._closed = False
        # While a flush with a time budget runs, retries must not wait past it.
        self._deadline: Optional[float] = None

    def _reset_state(self) -> None:
        self._reset_queue_state()

    def _sender_threads(self) -> List[threading.Thread]:
        """The threads running now (called with the lock held)."""
        return []

    def _wake_senders(self) -> None:
        """Wakes every waiting sender thread (called with the lock held)."""
        self._wake.notify_all()

    # ------------------------------------------------------------------ sender threads

    def _done(self, count: int) -> None:
        """``count`` taken items were sent or given up."""
        with self._lock:
            self._in_flight -= count
            if not self._queue and not self._in_flight:
                self._idle.notify_all()

    # ------------------------------------------------------------------ lifecycle

    def queued(self) -> int:
        """Items waiting or being sent."""
        with self._lock:
            return len(self._queue) + self._in_flight

    def _wait_until_idle(self, deadline: Optional[float]) -> bool:
        """With the lock held: waits until nothing is queued or in flight; False when the
        ``time.monotonic()`` deadline passed first. Retries meanwhile stop at the deadline."""
        previous = self._deadline
        if deadline is not None and (previous is None or deadline < previous):
            self._deadline = deadline
        try:
            while self._queue or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True
        finally:
            self._deadline = previous

    def flush(self, timeout: Optional[float] = None) -> bool:
        raise NotImplementedError

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Flushes within ``timeout`` (default ``shutdown_timeout``), then stops the senders;
        later items are dropped. True when everything was delivered; otherwise one log line
        says how many items were left unsent."""
        if timeout is None:
            timeout = self.options.shutdown_timeout
        started = time.monotonic()
        delivered = self.flush(timeout)
        with self._lock:
            self._closed = True
            left = len(self._queue) + self._in_flight
            self._stop.set()
            self._wake_senders()
            threads = self._sender_threads()
        for thread in threads:
            thread.join(min(1.0, max(0.0, timeout - (time.monotonic() - started))))
        if left:
            logger.warning(
                "shutdown: %d %s left unsent after %.1fs", left, self._unsent_what, timeout
            )
        return delivered and not left

    # -- what core/lifecycle.py calls

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def shutdown_timeout(self) -> float:
        return float(self.options.shutdown_timeout)

    def after_fork_in_child(self) -> None:
        # The parent's threads do not exist here and its queued items are the parent's to send.
        self._reset_state()
