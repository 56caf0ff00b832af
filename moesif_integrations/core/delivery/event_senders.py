"""Event delivery by sender threads (the default), and the sending of encoded events.

``EventBatchSender`` is the one place where encoded events become ``POST /v1/events/batch``
calls: batching by BATCH_MAX_BYTES, gzip at GZIP_LEVEL, retries through a Transport, a 413
split in halves, the counters (sent, failed, retries), the failure log lines and the
``X-Moesif-Config-ETag`` callback. The sender threads use it, and so do the delivery process
(``child.py``) and the hand-off's fallback (``process.py``).

``SenderThreads`` holds a bounded queue of items; the request path only appends to it. Sender
threads, started lazily in the process that uses them, take batches by count, bytes and age,
turn each item into JSON through the ``encode`` function they were given and send them. A full
queue refuses the new item and counts it; nothing here ever blocks the app.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable, Generic, List, Optional, Sequence, TypeVar

from ..counters import Counters
from ..logs import VISIBLE, LogOnce
from .queue import BoundedQueue, QueueRules
from .transport import Response, Transport, gzip_compress

if TYPE_CHECKING:
    from ..config.schema import Settings

EVENTS_BATCH_PATH = "/v1/events/batch"
# About a tenth of a millisecond of encoding between two chances for the app to run.
_EVENTS_BETWEEN_YIELDS = 16

# Answers that blame a batch's content: the batch is split to isolate the event at fault.
_CONTENT_BLAMED = (400, 422, 500)

T = TypeVar("T")
# An item's wire JSON; None when it must be dropped (counted by the encoder).
Encode = Callable[[T], Optional[bytes]]


class EventBatchSender:
    """Sends encoded events to the collector and counts what became of them."""

    def __init__(
        self,
        settings: Settings,
        counters: Counters,
        on_config_etag: Optional[Callable[[str], None]] = None,
    ) -> None:
        self._batch_max_bytes = settings.batch_max_bytes
        self._gzip_level = settings.gzip_level
        self.counters = counters
        self._on_config_etag = on_config_etag
        self._problems = LogOnce()
        # The config ETag the collector last answered with.
        self.last_etag: Optional[str] = None

    def send(
        self,
        transport: Transport,
        items: Sequence[T],
        encode: Encode[T],
        *,
        polite: bool,
        deadline: Optional[float],
    ) -> None:
        """Encodes the items and sends them in batches of at most BATCH_MAX_BYTES.

        Encoding holds the GIL: a request thread waiting for it would wait up to the
        interpreter's switch interval (5 ms), which shows as tail latency, so a ``polite``
        sender lets it in every few events. But a thread that lets go waits as long to come
        back while the app is busy: with a backlog, delivery comes first and the sender does
        not yield. Retries stop at ``deadline`` (a ``time.monotonic()`` value)."""
        parts: List[bytes] = []
        part_bytes = 0
        limit = self._batch_max_bytes
        for number, item in enumerate(items, 1):
            if polite and not number % _EVENTS_BETWEEN_YIELDS:
                time.sleep(0)
            encoded = encode(item)
            if encoded is None:
                continue
            if len(encoded) + 2 > limit:  # never sent whole: it could never go
                self._drop_too_large(len(encoded))
                continue
            if parts and part_bytes + len(encoded) + 1 > limit:
                self._post(transport, parts, deadline)
                parts, part_bytes = [], 0
            parts.append(encoded)
            part_bytes += len(encoded) + 1
        if parts:
            self._post(transport, parts, deadline)

    def _post(self, transport: Transport, parts: List[bytes], deadline: Optional[float]) -> None:
        """Sends one batch; on a 413, or an answer that blames its content (400, 422, 500
        after the retries), splits it to deliver what the collector takes (``_split``)."""
        response = self._request(transport, parts, deadline, None)
        if response.ok:
            return
        if len(parts) > 1 and (response.status == 413 or response.status in _CONTENT_BLAMED):
            self._split(transport, parts, deadline, response.status)
            return
        self._give_up(response, len(parts))

    def _split(
        self, transport: Transport, parts: List[bytes], deadline: Optional[float], status: int
    ) -> None:
        """A batch refused for its size (413) goes again in halves, down to single events. One
        refused for its content goes again in halves, not retried, and the search
        narrows to a half that failed while the other went through (one bad event costs about
        two requests per halving); when both halves fail, the collector refuses any content
        and both are counted failed rather than split further."""
        half = len(parts) // 2
        halves = (parts[:half], parts[half:])
        if status == 413:
            for piece in halves:
                self._post(transport, piece, deadline)
            return
        answers = [self._request(transport, piece, deadline, 0) for piece in halves]
        for index, (piece, answer) in enumerate(zip(halves, answers)):
            if answer.ok:
                continue
            if len(piece) > 1 and answers[1 - index].ok and answer.status in _CONTENT_BLAMED:
                self._split(transport, piece, deadline, answer.status)
            else:
                self._give_up(answer, len(piece))

    def _request(
        self,
        transport: Transport,
        parts: List[bytes],
        deadline: Optional[float],
        retries: Optional[int],
    ) -> Response:
        """One POST of ``parts`` with up to ``retries`` retries (None: MAX_RETRIES); what went
        is counted as sent."""
        payload = b"[" + b",".join(parts) + b"]"
        level = self._gzip_level
        body = gzip_compress(payload, level) if level else payload
        response = transport.request(
            "POST",
            EVENTS_BATCH_PATH,
            body,
            gzipped=bool(level),
            deadline=deadline,
            retries=retries,
        )
        if response.attempts > 1:
            self.counters.add("retries", response.attempts - 1)
        if response.ok:
            self.counters.add("sent", len(parts))
            etag = response.header("x-moesif-config-etag")
            if etag:
                self.note_etag(etag)
        return response

    def _drop_too_large(self, size: int) -> None:
        self.counters.add("dropped_too_large")
        self._problems.log(
            "event-too-large",
            logging.WARNING,
            "an event of %d bytes is larger than BATCH_MAX_BYTES (%d): dropped and counted "
            "(stats()['dropped_too_large'])",
            size,
            self._batch_max_bytes,
        )

    def _give_up(self, response: Response, count: int) -> None:
        self.counters.add("failed", count)
        self._report_failure(response, count)

    def _report_failure(self, response: Response, count: int) -> None:
        if response.status in (401, 403):
            self._problems.log(
                "unauthorized",
                logging.ERROR,
                "the collector refused the application id (%d): check APPLICATION_ID; "
                "%d events dropped",
                response.status,
                count,
                extra=VISIBLE,
            )
        elif response.status == 413:
            self._problems.log(
                "too-large", logging.WARNING, "the collector refused an event as too large (413)"
            )
        elif response.status == 0:
            self._problems.log(
                "unreachable",
                logging.WARNING,
                "collector unreachable after %d attempts (%s); %d events dropped",
                response.attempts,
                response.error,
                count,
            )
        else:
            self._problems.log(
                f"status-{response.status}",
                logging.WARNING,
                "collector answered %d after %d attempts; %d events dropped",
                response.status,
                response.attempts,
                count,
            )

    def note_etag(self, etag: str) -> None:
        """The collector answered with this config ETag: a new one calls ``on_config_etag``,
        which compares it with the ETag of the documents it holds."""
        if etag != self.last_etag:
            self.last_etag = etag
            if self._on_config_etag is not None:
                try:
                    self._on_config_etag(etag)
                except Exception:
                    self._problems.log(
                        "etag-callback", logging.WARNING, "config refresh failed", exc_info=True
                    )


def event_queue_rules(settings: Settings) -> QueueRules:
    """The event queue's bounds (EVENT_QUEUE_SIZE, EVENT_QUEUE_MAX_BYTES) and the sender
    threads' rules: a batch is due when full (BATCH_SIZE, or BATCH_MAX_BYTES of queued items),
    or when the queue is half way to either of its bounds (a queue bound below BATCH_SIZE must
    not leave a full queue waiting for the timeout), or when its oldest item waited
    EVENT_BATCH_TIMEOUT."""
    max_items, max_bytes = settings.event_queue_size, settings.event_queue_max_bytes
    return QueueRules(
        max_items=max_items,
        max_bytes=max_bytes,
        batch_items=settings.batch_size,
        due_items=max(1, min(settings.batch_size, max_items // 2)),
        due_bytes=max(1, min(settings.batch_max_bytes, max_bytes // 2)),
        max_wait=settings.event_batch_timeout,
        consumers=settings.event_worker_count,
        thread_name="moesif-integrations-sender-{}",
        what="events",
        dropped_counter="dropped_queue_full",
        failed_counter="failed",
        # Before the profile updates: events carry the API calls.
        exit_order=0,
    )


class SenderThreads(Generic[T]):
    """Event delivery by sender threads in this process: ``put(item)`` queues an item,
    ``encode`` turns it into wire JSON on a sender thread, ``size_of`` is what it counts for
    against EVENT_QUEUE_MAX_BYTES."""

    def __init__(
        self,
        settings: Settings,
        encode: Encode[T],
        size_of: Callable[[T], int],
        counters: Counters,
        on_config_etag: Optional[Callable[[str], None]] = None,
    ) -> None:
        self._settings = settings
        self._encode = encode
        self._size_of = size_of
        self._sender = EventBatchSender(settings, counters, on_config_etag)
        self.queue: BoundedQueue[T] = BoundedQueue(
            event_queue_rules(settings), counters, self._run_sender, settings.shutdown_timeout
        )

    def put(self, item: T) -> bool:
        """Queues an item; False (and counted) when the queue is full or closed."""
        return self.queue.put(item, self._size_of(item))

    def _run_sender(self, number: int) -> None:
        with Transport(self._settings, self.queue.stopping) as transport:
            self.queue.serve(number, lambda batch: self._send(transport, batch))

    def _send(self, transport: Transport, batch: List[T]) -> None:
        queue = self.queue
        polite = not queue.has_due_batch()
        self._sender.send(transport, batch, self._encode, polite=polite, deadline=queue.deadline)

    @property
    def captured(self) -> int:
        """Items accepted into the queue since start."""
        return self.queue.accepted

    @property
    def last_etag(self) -> Optional[str]:
        """The config ETag the collector last answered with."""
        return self._sender.last_etag

    def queued(self) -> int:
        """Items waiting or being sent."""
        return self.queue.queued()

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Sends what is queued now; True when the queue emptied within ``timeout`` seconds."""
        return self.queue.flush(timeout)

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Flushes within ``timeout`` (default SHUTDOWN_TIMEOUT), then stops the senders; later
        items are refused. True when everything was delivered."""
        return self.queue.shutdown(timeout)
