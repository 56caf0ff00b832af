"""Users, companies, subscriptions and actions: queued for one background sender, or sent now.

moesifwsgi's ``update_user`` and friends block the caller on the network with no timeout. Here a
call checks and serialises the item on the caller's thread, appends it to a small bounded queue
and returns; one daemon thread per client, started on first use in each process, sends single
items or coalesces what has queued meanwhile into batch calls. ``sync=True`` sends on the
caller's thread instead and says whether the collector took it. Network trouble is counted and
logged (rate-limited), never raised.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..counters import Counters
from ..lifecycle import reset_in_forked_child, shut_down_at_exit
from ..logs import LogOnce
from ..wire.profile_items import (
    ACTIONS,
    COMPANIES,
    SUBSCRIPTIONS,
    USERS,
    ProfileKind,
    wire_item,
    wire_items,
)
from ..wire.serialize import UnserializableEventError, serialize_event
from .queue import QueueSender
from .transport import Response, Transport, TransportOptions

__all__ = ["ProfileClient", "ProfileOptions"]


@dataclass(frozen=True)
class ProfileOptions:
    # Profile updates are rare next to events: a small queue bounds memory when the collector
    # is down for long, and still absorbs a burst such as a nightly user sync.
    queue_size: int = 10_000
    queue_max_bytes: int = 10_000_000
    batch_size: int = 100
    batch_max_bytes: int = 5_000_000
    shutdown_timeout: float = 5.0


@dataclass(frozen=True)
class _Queued:
    kind: ProfileKind
    body: bytes


class ProfileClient(QueueSender):
    """Sends users, companies, subscriptions and actions to the collector.

    Every method takes dicts (field names as in docs/protocol.md, "Users, companies,
    subscriptions, actions"), moesifapi model objects or JSON text.
    A missing required field raises ValueError naming it, and nothing of that call is sent.
    Without ``sync`` a call returns True when queued and False when the queue was full (counted
    as ``profiles_dropped``); with ``sync=True`` it returns True when the collector accepted
    everything.
    """

    def __init__(
        self,
        transport_options: TransportOptions,
        counters: Counters,
        options: Optional[ProfileOptions] = None,
    ) -> None:
        self.transport_options = transport_options
        self.options = options or ProfileOptions()
        self.counters = counters
        self._reset_state()
        reset_in_forked_child(self)
        shut_down_at_exit(self)

    _unsent_what = "profile updates"
    exit_order = 1  # after the events: they carry the API calls

    def _reset_state(self) -> None:
        self._reset_queue_state()
        self._problems = LogOnce()
        self._thread: Optional[threading.Thread] = None

    def _sender_threads(self) -> List[threading.Thread]:
        return [] if self._thread is None else [self._thread]

    # ------------------------------------------------------------------ public calls

    def update_user(self, user_profile: Any, *, sync: bool = False) -> bool:
        return self._submit(USERS, [wire_item(USERS, user_profile)], sync)

    def update_users_batch(self, user_profiles: Any, *, sync: bool = False) -> bool:
        return self._submit(USERS, wire_items(USERS, user_profiles), sync)

    def update_company(self, company_profile: Any, *, sync: bool = False) -> bool:
        return self._submit(COMPANIES, [wire_item(COMPANIES, company_profile)], sync)

    def update_companies_batch(self, companies_profiles: Any, *, sync: bool = False) -> bool:
        return self._submit(COMPANIES, wire_items(COMPANIES, companies_profiles), sync)

    def update_subscription(self, subscription: Any, *, sync: bool = False) -> bool:
        return self._submit(SUBSCRIPTIONS, [wire_item(SUBSCRIPTIONS, subscription)], sync)

    def update_subscriptions_batch(self, subscriptions: Any, *, sync: bool = False) -> bool:
        return self._submit(SUBSCRIPTIONS, wire_items(SUBSCRIPTIONS, subscriptions), sync)

    def send_action(self, action: Any, *, sync: bool = False) -> bool:
        return self._submit(ACTIONS, [wire_item(ACTIONS, action)], sync)

    def send_actions_batch(self, actions: Any, *, sync: bool = False) -> bool:
        return self._submit(ACTIONS, wire_items(ACTIONS, actions), sync)

    # ------------------------------------------------------------------ caller's thread

    def _submit(self, kind: ProfileKind, items: List[Dict[str, Any]], sync: bool) -> bool:
        bodies = self._serialise(kind, items)
        if sync:
            return self._send_now(kind, bodies) and len(bodies) == len(items)
        return self._enqueue(kind, bodies) and len(bodies) == len(items)

    def _serialise(self, kind: ProfileKind, items: List[Dict[str, Any]]) -> List[bytes]:
        """Each item on its own: one with a value JSON cannot carry is dropped and counted; it
        may depend on data (a NaN from a database), so it is not raised into a request."""
        bodies: List[bytes] = []
        for item in items:
            try:
                bodies.append(serialize_event(item))
            except UnserializableEventError as exc:
                self.counters.add("profiles_failed")
                self._problems.log(
                    f"unserializable-{kind.name}",
                    logging.WARNING,
                    "a %s could not be serialised to JSON (%s); it was not sent",
                    kind.singular,
                    exc,
                )
        return bodies

    def _enqueue(self, kind: ProfileKind, bodies: List[bytes]) -> bool:
        """All of one call's items, or none of them, so a batch is never half sent."""
        if not bodies:
            return True
        size = sum(len(body) for body in bodies)
        opts = self.options
        with self._lock:
            if (
                not self._closed
                and len(self._queue) + len(bodies) <= opts.queue_size
                and self._queued_bytes + size <= opts.queue_max_bytes
            ):
                self._queue.extend(_Queued(kind, body) for body in bodies)
                self._queued_bytes += size
                if self._thread is None:
                    self._start_thread()
                self._wake.notify()
                return True
        self.counters.add("profiles_dropped", len(bodies))
        self._problems.log(
            "queue-full",
            logging.WARNING,
            "profile queue full or closed (%d items / %d bytes bound); %d %s dropped",
            opts.queue_size,
            opts.queue_max_bytes,
            len(bodies),
            kind.name,
        )
        return False

    def _send_now(self, kind: ProfileKind, bodies: List[bytes]) -> bool:
        if not bodies:
            return True
        # Its own connection: Transport is not thread-safe and callers may be many threads.
        transport = Transport(self.transport_options, self._stop)
        budget = self.transport_options.connect_timeout + self.transport_options.read_timeout
        try:
            return self._send_kind(transport, kind, bodies, time.monotonic() + budget)
        finally:
            transport.close()

    # ------------------------------------------------------------------ sender thread

    def _start_thread(self) -> None:
        # Called with the lock held, on first use in this process.
        thread = threading.Thread(
            target=self._run, name="moesif-integrations-profiles", daemon=True
        )
        self._thread = thread
        thread.start()

    def _take(self) -> List[_Queued]:
        """Waits for items and takes all that are queued, to coalesce them into batches."""
        with self._lock:
            while not self._queue:
                if self._stop.is_set():
                    return []
                self._wake.wait()
            taken = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            self._in_flight += len(taken)
            return taken

    def _run(self) -> None:
        transport = Transport(self.transport_options, self._stop)
        try:
            while True:
                taken = self._take()
                if not taken:
                    return
                try:
                    self._send_taken(transport, taken)
                except Exception:  # a bug here must not kill the sender
                    self.counters.add("profiles_failed", len(taken))
                    self._problems.log(
                        "sender-bug",
                        logging.ERROR,
                        "unexpected error while sending profiles",
                        exc_info=True,
                    )
                finally:
                    self._done(len(taken))
        finally:
            transport.close()

    def _send_taken(self, transport: Transport, taken: List[_Queued]) -> None:
        by_kind: Dict[str, List[bytes]] = {}
        kinds: Dict[str, ProfileKind] = {}
        for queued in taken:  # dicts keep first-seen order, so kinds go out in call order
            by_kind.setdefault(queued.kind.name, []).append(queued.body)
            kinds[queued.kind.name] = queued.kind
        for name, bodies in by_kind.items():
            self._send_kind(transport, kinds[name], bodies, self._deadline)

    # ------------------------------------------------------------------ either thread

    def _send_kind(
        self,
        transport: Transport,
        kind: ProfileKind,
        bodies: List[bytes],
        deadline: Optional[float],
    ) -> bool:
        """Sends one item to the single path, several in batch calls; True when all arrived."""
        if len(bodies) == 1:
            return self._post(transport, kind, kind.path, bodies[0], 1, deadline)
        delivered = True
        for chunk in self._chunks(bodies):
            payload = b"[" + b",".join(chunk) + b"]"
            if not self._post(transport, kind, kind.batch_path, payload, len(chunk), deadline):
                delivered = False
        return delivered

    def _chunks(self, bodies: List[bytes]) -> List[List[bytes]]:
        chunks: List[List[bytes]] = []
        chunk: List[bytes] = []
        chunk_bytes = 0
        for body in bodies:
            if chunk and (
                len(chunk) >= self.options.batch_size
                or chunk_bytes + len(body) + 1 > self.options.batch_max_bytes
            ):
                chunks.append(chunk)
                chunk, chunk_bytes = [], 0
            chunk.append(body)
            chunk_bytes += len(body) + 1
        if chunk:
            chunks.append(chunk)
        return chunks

    def _post(
        self,
        transport: Transport,
        kind: ProfileKind,
        path: str,
        payload: bytes,
        count: int,
        deadline: Optional[float],
    ) -> bool:
        # Uncompressed, as moesifapi sends them: profiles are small and this is the form every
        # collector version is known to take.
        response = transport.request("POST", path, payload, gzipped=False, deadline=deadline)
        if response.ok:
            self.counters.add("profiles_sent", count)
            return True
        self.counters.add("profiles_failed", count)
        self._report_failure(kind, response, count)
        return False

    def _report_failure(self, kind: ProfileKind, response: Response, count: int) -> None:
        if response.status == 401:
            self._problems.log(
                "unauthorized",
                logging.ERROR,
                "the collector refused the application id (401): check APPLICATION_ID; "
                "%d %s not sent",
                count,
                kind.name,
            )
        elif response.status == 0:
            self._problems.log(
                "unreachable",
                logging.WARNING,
                "collector unreachable after %d attempts (%s); %d %s not sent",
                response.attempts,
                response.error,
                count,
                kind.name,
            )
        else:
            self._problems.log(
                f"status-{response.status}-{kind.name}",
                logging.WARNING,
                "collector answered %d to %s after %d attempts; %d %s not sent",
                response.status,
                kind.name,
                response.attempts,
                count,
                kind.name,
            )

    # ------------------------------------------------------------------ lifecycle

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits until what is queued now was sent (or given up); False when ``timeout`` seconds
        passed first. Delivery failures are in the counters, not in this answer."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if not self._queue and not self._in_flight:
                return True
            if self._thread is None:  # pragma: no cover - a queued item always starts it
                return False
            return self._wait_until_idle(deadline)
