"""One bounded queue and the threads that consume it: the event senders, the hand-off to a
delivery process and the profile sender each hold one.

- Bounded by item count and by bytes (sized by the owner). ``put`` never blocks: a full or
  closed queue refuses the item, counts it and says so in a rate-limited log line.
- Consumer threads start on first use in each process. Each takes a batch when one is due (the
  rules are ``QueueRules``), hands it to its owner's function and reports it done; the count
  in flight makes ``flush`` wait for sending, not only for taking.
- ``flush(timeout)`` wakes every consumer and waits until nothing is queued or in flight;
  meanwhile ``deadline`` tells retries when to give up. ``shutdown`` flushes within a budget,
  closes and stops the consumers, and logs what was left unsent; at exit it runs within the
  budget ``lifecycle.shut_down_at_exit`` shares among every open queue.
- In a forked child the queue starts empty with fresh locks and no threads
  (``lifecycle.reset_in_forked_child``): the parent's items are the parent's to send.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from dataclasses import dataclass
from itertools import repeat
from time import monotonic as _monotonic
from typing import Callable, Deque, Generic, List, Optional, Sequence, Tuple, TypeVar

from ..counters import Counters
from ..lifecycle import reset_in_forked_child, shut_down_at_exit
from ..logs import LogOnce, logger

# The producer's yield in the last quarter of the queue: 0 where ``sleep(0)`` hands the GIL to a
# waiting thread (Python 3.11 and later), else the shortest real sleep.
_SHORT_SLEEP = 0.0 if sys.version_info >= (3, 11) else 1e-6

T = TypeVar("T")

# What one consumer thread does with a batch it took.
Handler = Callable[[List[T]], None]
# What a queued bytes object counts for against a byte bound beyond its data: its object.
BYTES_OBJECT_OVERHEAD = 100


@dataclass(frozen=True)
class QueueRules:
    """The bounds of a queue, when its consumers take from it, and the words it reports with."""

    max_items: int
    max_bytes: int
    # Most items one take returns.
    batch_items: int
    # Consumer 0 takes as soon as this many items, or bytes, are queued...
    due_items: int
    due_bytes: int
    # ... or the oldest item waited this long (None: it waits until the queue is due).
    max_wait: Optional[float]
    # Consumer threads. The others step in only for a backlog (twice ``due_items`` queued, the
    # bytes due, a flush): while consumer 0 keeps up, every extra thread competing for the GIL
    # costs the app more than it saves.
    consumers: int
    # Thread names, formatted with the consumer's number.
    thread_name: str
    # Plural of what is queued, for log lines ("events").
    what: str
    # Counters of items refused (queue full or closed) and of items a consumer bug lost.
    dropped_counter: str
    failed_counter: str
    # lifecycle.py shuts queues down in this order at exit (lower first).
    exit_order: int
    # A helper also takes what waited this long (None: ``max_wait``), whatever consumer 0 is
    # doing: the bound on how long consumer 0 being stuck can hold the queue up.
    helper_wait: Optional[float] = None


class BoundedQueue(Generic[T]):
    def __init__(
        self,
        rules: QueueRules,
        counters: Counters,
        consumer: Callable[[int], None],
        shutdown_timeout: float,
        after_stop: Optional[Callable[[float], bool]] = None,
    ) -> None:
        """``consumer(number)`` is the body of consumer thread ``number``: it calls
        ``serve(number, handler)`` (around it, what the thread holds, such as a connection).
        ``after_stop(seconds left)`` ends ``shutdown``, once the consumers stopped: what the
        owner must still finish; False when it did not deliver everything."""
        self.rules = rules
        self.exit_order = rules.exit_order
        self.shutdown_timeout = shutdown_timeout
        self._counters = counters
        self._consumer = consumer
        self._after_stop = after_stop
        self._problems = LogOnce()
        # Whether shutdown logs what it gave up (off where another process reports it).
        self.log_given_up = True
        # The bounds and due rules as attributes of their own: put() reads them on every call.
        self._max_items, self._max_bytes = rules.max_items, rules.max_bytes
        self._due_items, self._due_bytes = rules.due_items, rules.due_bytes
        # A backlog: twice a due batch, or half the bound if that comes first.
        self._backlog_items = max(1, min(2 * rules.due_items, rules.max_items // 2))
        # Past these, a producer lets the consumers catch up (``_let_consumers_catch_up``).
        self._yield_items, self._yield_bytes = rules.max_items // 2, rules.max_bytes // 2
        # Past these (three quarters), before Python 3.11, the yield is a short real sleep.
        self._press_items = rules.max_items - rules.max_items // 4
        self._press_bytes = rules.max_bytes - rules.max_bytes // 4
        # Items accepted since start; a forked child goes on counting from the parent's count.
        self._accepted = 0
        self._reset()
        reset_in_forked_child(self)
        shut_down_at_exit(self)

    def _reset(self) -> None:
        """Fresh queue and locks, no threads: at construction and in a forked child (where a
        lock another thread held at the fork would stay held for ever)."""
        self._lock = threading.Lock()
        # Consumer 0 and the helpers wait apart, so that a due batch wakes only consumer 0.
        self._wake = threading.Condition(self._lock)
        self._wake_helpers = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        # (item, size, time.monotonic() when queued)
        self._entries: Deque[Tuple[T, int, float]] = collections.deque()
        self._queued_bytes = 0
        self._in_flight = 0
        self._flush_requests = 0
        self._threads: List[threading.Thread] = []
        self._closed = False
        # Set at shutdown: consumers end once the queue is empty; retries stop waiting.
        self.stopping = threading.Event()
        # While a flush with a time budget runs, retries must not wait past it.
        self._deadline: Optional[float] = None

    def after_fork_in_child(self) -> None:
        self._reset()

    # ------------------------------------------------------------------ producers

    def put(self, item: T, size: int) -> bool:
        """Queues ``item`` (``size`` bytes against the byte bound); False, counted and logged
        when the queue is full or closed."""
        backlog, accepted, pressed = False, True, False
        with self._lock:
            entries = self._entries
            n = len(entries) + 1
            queued_bytes = self._queued_bytes + size
            if n <= self._max_items and queued_bytes <= self._max_bytes and not self._closed:
                entries.append((item, size, _monotonic()))
                self._queued_bytes = queued_bytes
                self._accepted += 1
                # One comparison on the common path; the rare cases are sorted out apart.
                if (
                    n >= self._due_items
                    or queued_bytes >= self._due_bytes
                    or n == 1
                    or not self._threads
                ):
                    self._grew(n, 1, queued_bytes, size)
                    if n > self._yield_items or queued_bytes > self._yield_bytes:
                        backlog = True
                if not backlog:
                    return True
                pressed = n > self._press_items or queued_bytes > self._press_bytes
            else:
                accepted = False
        if not accepted:
            self._refuse(1)
            return False
        self._let_consumers_catch_up(pressed)
        return True

    @staticmethod
    def _let_consumers_catch_up(pressed: bool) -> None:
        """Past half of either bound, the producer lets the consumers run before it goes on:
        an app that keeps the CPU busy must not starve delivery into dropping events. It costs
        a producer next to nothing when the consumers wait on the network (nobody else wants
        the GIL); when they want the CPU it gives them up to one switch interval (5 ms) per
        item queued, so the app slows to the rate its events are delivered at instead of
        losing them. Before Python 3.11 a thread that releases the GIL for no time at all
        takes it back before a waiting consumer runs, so there, in the last quarter of the
        queue (``pressed``), the yield is a short real sleep (about 0.1 ms, as long as the
        consumers are behind)."""
        time.sleep(_SHORT_SLEEP if pressed else 0)

    def put_all(self, items: Sequence[T], sizes: Sequence[int]) -> bool:
        """Queues all the items or, when they do not all fit, none of them (refused as ``put``
        does)."""
        added_bytes = sum(sizes)
        with self._lock:
            n = len(self._entries) + len(items)
            queued_bytes = self._queued_bytes + added_bytes
            if n <= self._max_items and queued_bytes <= self._max_bytes and not self._closed:
                self._entries.extend(zip(items, sizes, repeat(_monotonic())))
                self._queued_bytes = queued_bytes
                self._accepted += len(items)
                self._grew(n, len(items), queued_bytes, added_bytes)
                return True
        self._refuse(len(items))
        return False

    def _grew(self, n: int, added: int, queued_bytes: int, added_bytes: int) -> None:
        # Called with the lock held: wakes consumer 0 when a batch just became due, the helpers
        # when a backlog just formed, and starts the consumers on first use in this process.
        rules = self.rules
        if (
            n == added  # the queue was empty: the consumers wait without a timeout
            or n - added < rules.due_items <= n
            or (queued_bytes - added_bytes < rules.due_bytes <= queued_bytes)
        ):
            self._wake.notify()
            if n == added and rules.helper_wait is not None:
                self._wake_helpers.notify_all()
        if n - added < self._backlog_items <= n:
            self._wake_helpers.notify()
        if not self._threads:
            self._start_consumers()

    def _refuse(self, count: int) -> None:
        rules = self.rules
        self._counters.add(rules.dropped_counter, count)
        self._problems.log(
            "queue-full",
            logging.WARNING,
            "the queue of %s is full or closed (%d items / %d bytes bound); new ones are "
            "dropped and counted",
            rules.what,
            rules.max_items,
            rules.max_bytes,
        )

    @property
    def accepted(self) -> int:
        """Items accepted since start (counted under the queue's lock)."""
        return self._accepted

    # ------------------------------------------------------------------ consumers

    def _start_consumers(self) -> None:
        # Called with the lock held, on first use in this process.
        for number in range(self.rules.consumers):
            thread = threading.Thread(
                target=self._consumer,
                args=(number,),
                name=self.rules.thread_name.format(number),
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def serve(self, number: int, handle: Handler[T]) -> None:
        """Consumer ``number``'s loop: takes each due batch and hands it to ``handle``, until
        the queue is stopped and empty. An exception from ``handle`` is a bug: its batch is
        counted as failed and logged, and the thread goes on."""
        while True:
            batch = self.take(number)
            if not batch:
                return
            try:
                handle(batch)
            except Exception:
                self._counters.add(self.rules.failed_counter, len(batch))
                self._problems.log(
                    "consumer-bug",
                    logging.ERROR,
                    "unexpected error while delivering %s",
                    self.rules.what,
                    exc_info=True,
                )
            finally:
                self.done(len(batch))

    def take(self, number: int = 0) -> List[T]:
        """Waits until a batch is due for consumer ``number`` and takes it; empty once the
        queue is stopped and empty."""
        rules = self.rules
        helper_only_stalls = rules.helper_wait is not None
        with self._lock:
            entries = self._entries
            while True:
                stopping = self.stopping.is_set()
                if stopping and not entries:
                    return []
                n = len(entries)
                wait = (
                    rules.max_wait
                    if number == 0 or rules.helper_wait is None
                    else (rules.helper_wait)
                )
                if n:
                    if number == 0:
                        due = n >= rules.due_items or self._queued_bytes >= rules.due_bytes
                    else:  # a helper: only for a backlog consumer 0 is not clearing
                        due = n >= self._backlog_items or self._queued_bytes >= rules.due_bytes
                    # A flush wakes every consumer, but helpers that stand in for a stuck
                    # consumer 0 (``helper_wait``) only take what waited too long.
                    flushing = self._flush_requests and (number == 0 or not helper_only_stalls)
                    if due or flushing or stopping:
                        break
                    if wait is not None:
                        age = _monotonic() - entries[0][2]
                        if age >= wait:
                            break
                        wait -= age
                elif not stopping:
                    # Nothing queued: the next put wakes this consumer (no polling meanwhile).
                    wait = None
                (self._wake if number == 0 else self._wake_helpers).wait(wait)
            batch = []
            for _ in range(min(rules.batch_items, len(entries))):
                item, size, _queued_at = entries.popleft()
                self._queued_bytes -= size
                batch.append(item)
            self._in_flight += len(batch)
            if entries and (
                len(entries) >= rules.due_items
                or self._queued_bytes >= rules.due_bytes
                or self._flush_requests
            ):
                self._wake.notify()
                if len(entries) >= self._backlog_items or self._flush_requests:
                    self._wake_helpers.notify()
            return batch

    def done(self, count: int) -> None:
        """``count`` taken items were sent or given up."""
        with self._lock:
            self._in_flight -= count
            if not self._entries and not self._in_flight:
                self._idle.notify_all()

    def has_due_batch(self) -> bool:
        """Whether a batch is waiting already (read without the lock: a hint)."""
        return len(self._entries) >= self.rules.due_items

    @property
    def deadline(self) -> Optional[float]:
        """The ``time.monotonic()`` deadline of the flush running now, if any: retries must not
        wait past it."""
        return self._deadline

    # ------------------------------------------------------------------ lifecycle

    def queued(self) -> int:
        """Items waiting or being sent."""
        with self._lock:
            return len(self._entries) + self._in_flight

    @property
    def closed(self) -> bool:
        return self._closed

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Every consumer takes what is queued at once; True when the queue emptied within
        ``timeout`` seconds and nothing failed meanwhile (every batch reached the collector)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        failed_before = self._counters.get(self.rules.failed_counter)
        return self._flush(deadline) and (
            self._counters.get(self.rules.failed_counter) == failed_before
        )

    def _flush(self, deadline: Optional[float]) -> bool:
        with self._lock:
            if not self._entries and not self._in_flight:
                return True
            if not self._threads:
                if self._closed:
                    return False
                self._start_consumers()
            self._flush_requests += 1
            self._wake_all()
            try:
                return self._wait_until_idle(deadline)
            finally:
                self._flush_requests -= 1

    def _wait_until_idle(self, deadline: Optional[float]) -> bool:
        """With the lock held: waits until nothing is queued or in flight; False when the
        ``time.monotonic()`` deadline passed first. Retries meanwhile stop at the deadline."""
        previous = self._deadline
        if deadline is not None and (previous is None or deadline < previous):
            self._deadline = deadline
        try:
            while self._entries or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True
        finally:
            self._deadline = previous

    def _wake_all(self) -> None:
        self._wake.notify_all()
        self._wake_helpers.notify_all()

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Flushes within ``timeout`` (default: the owner's SHUTDOWN_TIMEOUT), then closes the
        queue (later items are refused), stops the consumers and runs ``after_stop`` with what
        is left of ``timeout``. True when everything was delivered; otherwise one log line
        (unless ``log_given_up`` is off) says how many items were given up: those left unsent
        (counted as failed) and those that failed meanwhile."""
        if timeout is None:
            timeout = self.shutdown_timeout
        started = time.monotonic()
        counters, failed_counter = self._counters, self.rules.failed_counter
        failed_before = counters.get(failed_counter)
        delivered = self.flush(timeout)
        with self._lock:
            self._closed = True
            left = len(self._entries) + self._in_flight
            self.stopping.set()
            self._wake_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(min(1.0, max(0.0, timeout - (time.monotonic() - started))))
        if left:
            counters.add(failed_counter, left)
        if self._after_stop is not None:
            remaining = max(0.0, timeout - (time.monotonic() - started))
            delivered = self._after_stop(remaining) and delivered
        given_up = counters.get(failed_counter) - failed_before
        if given_up and self.log_given_up:
            logger.warning(
                "shutdown: %d %s given up (%d %s left unsent after %.1fs, %d failed to send)",
                given_up,
                self.rules.what,
                left,
                self.rules.what,
                timeout,
                given_up - left,
            )
        return delivered and not given_up
