"""The facade every integration holds: capture -> decide -> queue, and stats, flush, shutdown.

Every adapter owns one Pipeline. It knows no framework: the request path (``capture/``) hands
it raw records through the small interface ``capture.sink.CaptureSink`` declares, it decides what
happens to them (``decide/``) and queues them for delivery (``delivery/``), where they become
wire events (``wire/``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Optional

from .config.schema import Settings
from .config.values import redact_url
from .counters import Counters
from .decide.app_config import AppConfigSource
from .decide.decisions import Decisions
from .decide.sampling import weight_of
from .delivery import EventDelivery
from .delivery.event_senders import SenderThreads
from .delivery.process import ProcessDelivery
from .delivery.profile_senders import ProfileClient
from .lifecycle import flush_on_sigterm
from .logs import LogOnce, logger
from .outgoing import patches as outgoing_patches
from .outgoing.recorder import OutgoingRecorder
from .record import ExchangeRecord
from .wire.event import EventEncoder


class Pipeline:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.apply_logging()
        self.counters = Counters()
        self._problems = LogOnce()
        # Records -> wire JSON, on the sender threads (or in the delivery process).
        self.encoder = EventEncoder(settings, self.counters)
        # Sampling and governance rules: fetched in this process (even with DELIVERY_PROCESS:
        # they act before the app runs), from the first request on.
        self.app_config = AppConfigSource(settings)
        # The sampling and rules in force, for one exchange; never waits (the first call in a
        # process starts fetching them in the background).
        self.decisions: Callable[[], Decisions] = self.app_config.current
        # Where records go: the one place that chooses between the two ways of delivering.
        self.delivery: EventDelivery
        if settings.delivery_process:
            self.delivery = ProcessDelivery(
                settings, self.encoder.encode, self.counters, self.app_config.note_etag
            )
        else:
            self.delivery = SenderThreads(
                settings,
                self.encoder.encode,
                ExchangeRecord.approximate_size,
                self.counters,
                self.app_config.note_etag,
            )
        # Users, companies, subscriptions and actions; no thread or network until first used.
        self.profiles = ProfileClient(settings, self.counters)
        if settings.flush_on_sigterm and settings.enabled:
            flush_on_sigterm()
        # The app's own HTTP calls (CAPTURE_OUTGOING_REQUESTS); patched on, no network.
        self.outgoing: Optional[OutgoingRecorder] = None
        if settings.capture_outgoing_requests:
            self.capture_outgoing(True)
        if settings.debug:
            logger.debug(
                "Moesif capture configured: collector %s, bodies %s, %d sender threads%s",
                redact_url(settings.base_uri),
                "on" if settings.log_body else "off",
                settings.event_worker_count,
                " in a delivery process" if settings.delivery_process else "",
            )

    # ------------------------------------------------------------------ request path

    def call_hook(self, name: str, hook: Callable[..., Any], *args: Any) -> Any:
        """Calls a user hook; an exception is counted, logged (rate-limited) and means None."""
        try:
            return hook(*args)
        except Exception as exc:
            self.counters.add("hook_errors")
            self._problems.log(
                f"hook-{name}",
                logging.WARNING,
                "%s raised %s; treated as returning nothing, the request goes on",
                name,
                type(exc).__name__,
                exc_info=True,
            )
            return None

    def capture_failed(self, where: str) -> None:
        """Records a bug or bad input in the capture itself; the app's request is unaffected."""
        self.counters.add("capture_errors")
        self._problems.log(
            f"capture-{where}",
            logging.WARNING,
            "capture failed in %s; the request was served, its event may be lost",
            where,
            exc_info=True,
        )

    def wait_for_app_config(self, timeout: float) -> bool:
        """Starts fetching the app config and rules, if no request did yet, and waits up to
        ``timeout`` seconds for them; True when they arrived. For demos and tests: requests
        never wait for them."""
        app_config = self.app_config
        app_config.current()
        deadline = time.monotonic() + timeout
        while app_config.completed == 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def sampled_out(self) -> None:
        self.counters.add("sampled_out")

    def submit(self, record: ExchangeRecord) -> None:
        """Decides sampling, unless the request path already did, then queues the record."""
        if record.sample_rate is None:
            sampling = self.app_config.decisions.sampling
            if not sampling.keeps_all:
                rate = sampling.rate(record)
                if not sampling.keeps(rate):
                    self.counters.add("sampled_out")
                    return
                record.weight = weight_of(rate)
        elif not record.sample_rate:
            # Sampled out before the app ran, and kept this far only for the rules.
            self.counters.add("sampled_out")
            return
        self.delivery.put(record)

    def skip(self) -> None:
        self.counters.add("skipped")

    def capture_outgoing(self, enabled: bool) -> None:
        """Starts or stops capturing the app's outgoing calls (requests, httpx, urllib3) with
        this pipeline's options; calls still being read when it stops are recorded now."""
        if enabled and self.outgoing is None:
            self.outgoing = OutgoingRecorder(self)
            outgoing_patches.install(self.outgoing)
        elif not enabled and self.outgoing is not None:
            recorder, self.outgoing = self.outgoing, None
            outgoing_patches.remove(recorder)

    # ------------------------------------------------------------------ lifecycle

    def flush(self, timeout: Optional[float] = None) -> bool:
        if self.outgoing is not None:
            # Outgoing calls whose responses are still open go with what was read of them.
            self.outgoing.finish_pending()
        # Both senders work meanwhile; the profiles get what is left of the one budget.
        deadline = None if timeout is None else time.monotonic() + timeout
        events_flushed = self.delivery.flush(timeout)
        return self.profiles.queue.flush(_remaining(deadline)) and events_flushed

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        if timeout is None:
            timeout = self.settings.shutdown_timeout
        self.capture_outgoing(False)
        deadline = time.monotonic() + timeout
        self.app_config.close()
        events_delivered = self.delivery.shutdown(timeout)
        return self.profiles.queue.shutdown(_remaining(deadline)) and events_delivered

    def stats(self) -> Dict[str, int]:
        stats = self.counters.snapshot()
        stats["captured"] = self.delivery.captured
        stats["queued"] = self.delivery.queued()
        return stats


def _remaining(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
