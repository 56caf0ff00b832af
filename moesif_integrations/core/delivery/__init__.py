"""Delivery: records leave the app's process here, as events and profile updates.

``EventDelivery`` is what a Pipeline holds as ``pipeline.delivery``. It has two
implementations, chosen by DELIVERY_PROCESS in ``Pipeline.__init__``: ``SenderThreads``
(``event_senders.py``), which builds and sends events from this process, and
``ProcessDelivery`` (``process.py``), which hands them to a delivery process of their own.
Both hold one ``BoundedQueue`` (``queue.py``) and send through ``EventBatchSender``.
"""

from __future__ import annotations

from typing import Optional, Protocol

from ..record import ExchangeRecord


class EventDelivery(Protocol):
    """Where the pipeline puts the records it keeps."""

    def put(self, record: ExchangeRecord) -> bool:
        """Queues the record; False (and counted) when the queue is full or closed. Never
        blocks."""

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Delivers what is queued now; True when it all went within ``timeout`` seconds."""

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Flushes within ``timeout`` (default SHUTDOWN_TIMEOUT) and stops; later records are
        refused. True when everything was delivered."""

    def queued(self) -> int:
        """Records waiting or being sent."""

    @property
    def captured(self) -> int:
        """Records accepted since start."""

    @property
    def last_etag(self) -> Optional[str]:
        """The config ETag the collector last answered with."""
