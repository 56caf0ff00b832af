"""The delivery process: builds, batches and sends the events of one app process.

Started by ``process.ProcessDelivery`` as ``python -m moesif_integrations.core.delivery.child``
with its stdin and stdout as pipes to the app's process. It assembles what it needs: counters,
the wire EventEncoder, which builds each event as its record arrives, and the sender threads an
app process runs without DELIVERY_PROCESS, here over events already encoded. So event building,
gzip and HTTP use their own interpreter (and GIL) on another CPU. It reports its counters back
and forwards its log lines to the app's logging. It ends when told to or when the pipe closes
(the app's process is gone), after a flush bounded by SHUTDOWN_TIMEOUT.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import time
from typing import Any, BinaryIO, Dict, Optional

from ..config.schema import Settings
from ..counters import Counters
from ..logs import logger
from ..wire.event import EventEncoder
from . import pipe as wire
from .event_senders import SenderThreads
from .queue import BYTES_OBJECT_OVERHEAD

# How often counters changed by the senders are reported (a flush answers at once).
_STATUS_INTERVAL = 0.2
# Added to the process's nice value: a lower scheduling priority than the app's.
_NICENESS = 10


def _already_encoded(event: bytes) -> Optional[bytes]:
    """The senders' encode step here: events were encoded as they arrived."""
    return event


def _encoded_size(event: bytes) -> int:
    return len(event) + BYTES_OBJECT_OVERHEAD


class _Replies:
    """Frames to the app's process, from several threads: one writer at a time."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, kind: bytes, payload: bytes = b"") -> bool:
        with self._lock:
            try:
                wire.write_frame(self._fd, kind, payload)
                return True
            except OSError:  # the app's process is gone; nothing left to tell it
                return False


class _ForwardLogs(logging.Handler):
    def __init__(self, replies: _Replies) -> None:
        super().__init__()
        self._replies = replies

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            visible = bool(getattr(record, "moesif_visible", False))
            self._replies.send(wire.LOG, wire.dumps((record.levelno, text, visible)))
        except Exception:
            self.handleError(record)


class DeliveryChild:
    def __init__(self, settings: Settings, replies: _Replies) -> None:
        self.settings = settings
        self.counters = Counters()
        self.encoder = EventEncoder(settings, self.counters)
        self.senders = SenderThreads(settings, _already_encoded, _encoded_size, self.counters)
        # What this process gives up is counted in the app's process, which logs it at exit.
        self.senders.queue.log_given_up = False
        self.replies = replies
        self._reported: Any = None
        self._done = threading.Event()

    def status(self) -> Dict[str, Any]:
        return {
            "counters": self.counters.snapshot(),
            "queued": self.senders.queued(),
            "etag": self.senders.last_etag,
        }

    def report_changes(self) -> None:
        """Sends the counters whenever the senders changed them, until the process ends."""
        while not self._done.wait(_STATUS_INTERVAL):
            payload = wire.dumps(self.status())
            if payload != self._reported:
                self._reported = payload
                self.replies.send(wire.STATUS, payload)

    def flush(self, request_id: int, timeout: float) -> None:
        delivered = self.senders.flush(None if timeout < 0 else timeout)
        self.replies.send(wire.FLUSHED, wire.dumps((request_id, delivered, self.status())))

    def serve(self, stream: BinaryIO) -> None:
        """Reads frames until told to stop or the pipe closes; then flushes and says goodbye."""
        reporter = threading.Thread(target=self.report_changes, name="moesif-status", daemon=True)
        reporter.start()
        timeout = self.settings.shutdown_timeout
        put = self.senders.put
        encode = self.encoder.encode
        while True:
            frame = wire.read_frame(stream)
            if frame is None:
                break
            kind, payload = frame
            if kind == wire.RECORDS:
                # Built here, as they arrive: the sender threads only batch, gzip and send, so
                # the threads of this process hardly ever wait for each other's GIL.
                for data in wire.loads(payload):
                    encoded = encode(wire.record_from_bytes(data))
                    if encoded is not None:
                        put(encoded)
            elif kind == wire.ENCODED:
                for data in wire.loads(payload):
                    put(data)
            elif kind == wire.FLUSH:
                request_id, flush_timeout = wire.loads(payload)
                # A flush waits on the collector: frames keep being read meanwhile.
                threading.Thread(
                    target=self.flush, args=(request_id, flush_timeout), daemon=True
                ).start()
            elif kind == wire.SHUTDOWN:
                timeout = wire.loads(payload)
                break
        delivered = self.senders.shutdown(timeout)
        self._done.set()
        self.replies.send(wire.BYE, wire.dumps((delivered, self.status())))


def lower_priority() -> None:
    """Nice value +10; on Linux also for its autogroup, since it leads a session of its own
    and the scheduler weighs sessions against each other before it looks at nice values."""
    try:
        os.nice(_NICENESS)
    except (AttributeError, OSError):
        return
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(_NICENESS))
    except OSError:  # not Linux, or no autogroup scheduling
        pass


def main() -> None:
    # The app's process decides when delivery ends (Ctrl-C reaches the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The app comes first: when CPUs are scarce the scheduler serves the app's process, and
    # events wait in this one's bounded queue instead.
    lower_priority()
    # Frames own stdout: anything printed by mistake goes to stderr instead.
    replies = _Replies(os.dup(sys.stdout.fileno()))
    sys.stdout = sys.stderr
    stream = sys.stdin.buffer
    first = wire.read_frame(stream)
    if first is None or first[0] != wire.SETTINGS:
        sys.exit(2)
    settings: Settings = pickle.loads(first[1])
    logger.addHandler(_ForwardLogs(replies))
    logger.propagate = False
    logger.setLevel(logging.DEBUG if settings.debug else logging.INFO)
    child = DeliveryChild(settings, replies)
    replies.send(wire.READY)
    started = time.monotonic()
    child.serve(stream)
    logger.debug("delivery process done after %.1fs", time.monotonic() - started)


if __name__ == "__main__":
    main()
