"""Bounded queue, batching sender threads, flush, shutdown and fork safety.

The request path only appends a record to a deque under a lock. Sender threads, started lazily in
the process that uses them, turn records into JSON (through the ``encode`` callable), batch them by
count, bytes and age, and hand each batch to a Transport. A full queue drops the new record and
counts it; nothing here ever blocks the app.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any, Callable, Deque, List, Optional

from ..counters import Counters
from ..lifecycle import reset_in_forked_child, shut_down_at_exit
from ..logs import LogOnce
from ..record import ExchangeRecord
from .queue import QueueSender
from .transport import Response, Transport, TransportOptions, gzip_compress

if TYPE_CHECKING:
    from ..config.schema import Settings

EVENTS_BATCH_PATH = "/v1/events/batch"
# About a tenth of a millisecond of encoding between two chances for the app to run.
_EVENTS_BETWEEN_YIELDS = 16


@dataclass(frozen=True)
class DispatchOptions:
    queue_size: int = 10000
    queue_max_bytes: int = 50_000_000
    worker_count: int = 2
    batch_size: int = 100
    batch_timeout: float = 1.0
    batch_max_bytes: int = 5_000_000
    shutdown_timeout: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchOptions:
        return cls(
            queue_size=settings.event_queue_size,
            queue_max_bytes=settings.event_queue_max_bytes,
            worker_count=settings.event_worker_count,
            batch_size=settings.batch_size,
            batch_timeout=settings.event_batch_timeout,
            batch_max_bytes=settings.batch_max_bytes,
            shutdown_timeout=settings.shutdown_timeout,
        )


Encoder = Callable[[ExchangeRecord], Optional[bytes]]


class Dispatcher(QueueSender):
    def __init__(
        self,
        options: DispatchOptions,
        transport_options: TransportOptions,
        encode: Encoder,
        counters: Counters,
        on_config_etag: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.options = options
        self.transport_options = transport_options
        self._encode = encode
        self.counters = counters
        self._on_config_etag = on_config_etag
        self._problems = LogOnce()
        # A batch is due when full, or when the queue is half way to either of its bounds:
        # a queue bound below BATCH_SIZE must not leave a full queue waiting for the timeout.
        self._due_count = max(1, min(options.batch_size, options.queue_size // 2))
        self._due_bytes = max(1, min(options.batch_max_bytes, options.queue_max_bytes // 2))
        self._backlog_count = max(2 * self._due_count, 2)
        self._queue_size = options.queue_size
        self._queue_max_bytes = options.queue_max_bytes
        self._reset_state()
        reset_in_forked_child(self)
        shut_down_at_exit(self)

    _unsent_what = "events"
    exit_order = 0

    def _reset_state(self) -> None:
        """Fresh queue, locks and no threads: at construction and in a forked child."""
        self._reset_queue_state()
        # Here (record, size, time queued) tuples; a ProcessDispatcher queues bare items.
        self._queue: Deque[Any]
        # Sender 0 and the helpers wait apart, so that a due batch wakes only sender 0.
        self._wake_helpers = threading.Condition(self._lock)
        self._captured = getattr(self, "_captured", 0)
        self._flush_requests = 0
        self._workers: List[threading.Thread] = []
        self._pid = os.getpid()
        self._last_etag: Optional[str] = None

    def _sender_threads(self) -> List[threading.Thread]:
        return list(self._workers)

    def _wake_senders(self) -> None:
        self._wake.notify_all()
        self._wake_helpers.notify_all()

    # ------------------------------------------------------------------ request path

    def put(self, record: ExchangeRecord) -> bool:
        """Queues a record; False (and counted) when the queue is full or closed."""
        size = record.approximate_size()
        with self._lock:
            queue = self._queue
            n = len(queue) + 1
            queued_bytes = self._queued_bytes + size
            if n <= self._queue_size and queued_bytes <= self._queue_max_bytes and not self._closed:
                queue.append((record, size, _monotonic()))
                self._queued_bytes = queued_bytes
                self._captured += 1
                # One comparison on the common path; the rare cases are sorted out apart.
                if n >= self._due_count or queued_bytes >= self._due_bytes or not self._workers:
                    self._queue_grew(n, queued_bytes, size)
                return True
        self._count_full()
        return False

    def _queue_grew(self, n: int, queued_bytes: int, size: int) -> None:
        # Called with the lock held: wakes sender 0 when a batch just became due, the helpers
        # when a backlog just formed, and starts the senders on first use in this process.
        if n == self._due_count or queued_bytes - size < self._due_bytes <= queued_bytes:
            self._wake.notify()
        if n == self._backlog_count:
            self._wake_helpers.notify()
        if not self._workers:
            self._start_workers()

    def _count_full(self) -> None:
        opts = self.options
        self.counters.add("dropped_queue_full")
        self._problems.log(
            "queue-full",
            30,
            "event queue full (%d events / %d bytes bound); new events are dropped and counted",
            opts.queue_size,
            opts.queue_max_bytes,
        )

    @property
    def captured(self) -> int:
        """Records accepted into the queue since start (counted under the queue's lock)."""
        return self._captured

    def _start_workers(self) -> None:
        # Called with the lock held, on first use in this process.
        for number in range(self.options.worker_count):
            thread = threading.Thread(
                target=self._run_worker,
                args=(number,),
                name=f"moesif-integrations-sender-{number}",
                daemon=True,
            )
            self._workers.append(thread)
            thread.start()

    # ------------------------------------------------------------------ worker

    def _take_batch(self, number: int = 0) -> List[ExchangeRecord]:
        """Waits until a batch is due (full, old enough, or a flush asked) and takes it.

        Sender 0 does the work while it keeps up; the others step in only for a backlog (an
        event older than the batch timeout, two batches waiting, a flush), that is
        while sender 0 waits on a slow collector or a retry: every extra thread competing for
        the GIL costs the app more than it saves.
        """
        opts = self.options
        with self._lock:
            while True:
                if self._stop.is_set() and not self._queue:
                    return []
                n = len(self._queue)
                if n:
                    age = time.monotonic() - self._queue[0][2]
                    if number == 0:
                        due = n >= self._due_count or self._queued_bytes >= self._due_bytes
                    else:  # a helper: only for a backlog the first sender is not clearing
                        due = n >= self._backlog_count or self._queued_bytes >= self._due_bytes
                    if (
                        due
                        or self._flush_requests
                        or age >= opts.batch_timeout
                        or self._stop.is_set()
                    ):
                        break
                    wait = opts.batch_timeout - age
                else:
                    wait = opts.batch_timeout
                (self._wake if number == 0 else self._wake_helpers).wait(wait)
            queue = self._queue
            batch = []
            for _ in range(min(opts.batch_size, len(queue))):
                record, size, _enqueued = queue.popleft()
                self._queued_bytes -= size
                batch.append(record)
            self._in_flight += len(batch)
            if queue and (
                len(queue) >= self._due_count
                or self._queued_bytes >= self._due_bytes
                or self._flush_requests
            ):
                self._wake.notify()
                if len(queue) >= self._backlog_count or self._flush_requests:
                    self._wake_helpers.notify()
            return batch

    def _run_worker(self, number: int = 0) -> None:
        transport = Transport(self.transport_options, self._stop)
        try:
            while True:
                batch = self._take_batch(number)
                if not batch:
                    if self._stop.is_set():
                        return
                    continue
                try:
                    self._send_records(transport, batch)
                except Exception:  # a bug here must not kill the sender
                    self.counters.add("failed", len(batch))
                    self._problems.log(
                        "sender-bug", 40, "unexpected error while sending events", exc_info=True
                    )
                finally:
                    self._done(len(batch))
        finally:
            transport.close()

    def _send_records(self, transport: Transport, records: List[ExchangeRecord]) -> None:
        parts: List[bytes] = []
        part_bytes = 0
        limit = self.options.batch_max_bytes
        # Encoding holds the GIL: a request thread waiting for it would wait up to the
        # interpreter's switch interval (5 ms), which shows as tail latency, so the sender lets
        # it in every few events. But a thread that lets go waits as long to come back while
        # the app is busy: with a backlog, delivery comes first and the sender does not yield.
        polite = len(self._queue) < self._due_count
        for number, record in enumerate(records, 1):
            if polite and not number % _EVENTS_BETWEEN_YIELDS:
                time.sleep(0)
            encoded = self._encode(record)
            if encoded is None:
                continue
            if parts and part_bytes + len(encoded) + 1 > limit:
                self._send_batch(transport, parts)
                parts, part_bytes = [], 0
            parts.append(encoded)
            part_bytes += len(encoded) + 1
        if parts:
            self._send_batch(transport, parts)

    def _send_batch(self, transport: Transport, parts: List[bytes]) -> None:
        payload = b"[" + b",".join(parts) + b"]"
        level = self.transport_options.gzip_level
        body = gzip_compress(payload, level) if level else payload
        deadline = self._deadline
        response = transport.request(
            "POST", EVENTS_BATCH_PATH, body, gzipped=bool(level), deadline=deadline
        )
        if response.attempts > 1:
            self.counters.add("retries", response.attempts - 1)
        if response.ok:
            self.counters.add("sent", len(parts))
            self._note_etag(response)
            return
        if response.status == 413 and len(parts) > 1:
            half = len(parts) // 2
            self._send_batch(transport, parts[:half])
            self._send_batch(transport, parts[half:])
            return
        self.counters.add("failed", len(parts))
        self._report_failure(response, len(parts))

    def _report_failure(self, response: Response, count: int) -> None:
        if response.status == 401:
            self._problems.log(
                "unauthorized",
                40,
                "the collector refused the application id (401): check APPLICATION_ID; "
                "%d events dropped",
                count,
            )
        elif response.status == 413:
            self._problems.log("too-large", 30, "the collector refused an event as too large (413)")
        elif response.status == 0:
            self._problems.log(
                "unreachable",
                30,
                "collector unreachable after %d attempts (%s); %d events dropped",
                response.attempts,
                response.error,
                count,
            )
        else:
            self._problems.log(
                f"status-{response.status}",
                30,
                "collector answered %d after %d attempts; %d events dropped",
                response.status,
                response.attempts,
                count,
            )

    def _note_etag(self, response: Response) -> None:
        etag = response.header("x-moesif-config-etag")
        if etag:
            self._etag_seen(etag)

    @property
    def last_etag(self) -> Optional[str]:
        """The config ETag the collector last answered with."""
        return self._last_etag

    def _etag_seen(self, etag: str) -> None:
        if etag != self._last_etag:
            changed = self._last_etag is not None
            self._last_etag = etag
            if changed and self._on_config_etag is not None:
                try:
                    self._on_config_etag(etag)
                except Exception:
                    self._problems.log("etag-callback", 30, "config refresh failed", exc_info=True)

    # ------------------------------------------------------------------ lifecycle

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Sends what is queued now; True when the queue emptied within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if not self._queue and not self._in_flight:
                return True
            if not self._workers:
                if self._closed:
                    return False
                self._start_workers()
            # Every sender takes part, with no wait for a batch to be due.
            self._flush_requests += 1
            self._wake_senders()
            try:
                return self._wait_until_idle(deadline)
            finally:
                self._flush_requests -= 1
