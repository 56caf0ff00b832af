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
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from ..counters import Counters
from ..logs import VISIBLE, LogOnce
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
from .queue import BoundedQueue, QueueRules
from .transport import Response, Transport

if TYPE_CHECKING:
    from ..config.schema import Settings

__all__ = ["ProfileClient"]


# Profile updates are rare next to events: a small queue bounds memory when the collector is
# down for long, and still absorbs a burst such as a nightly user sync.
_QUEUE_ITEMS = 10_000
_QUEUE_BYTES = 10_000_000
# Items and bytes of JSON in one batch call: the event batches' default bounds, far below the
# hosted API's 50 MB per request; a sync of thousands of users goes in tens of calls.
_BATCH_ITEMS = 100
_BATCH_BYTES = 5_000_000
_QUEUE_RULES = QueueRules(
    max_items=_QUEUE_ITEMS,
    max_bytes=_QUEUE_BYTES,
    # The sender takes everything queued and coalesces it into batch calls by kind.
    batch_items=_QUEUE_ITEMS,
    # Sent at once: an update waits only while the sender is busy with earlier ones.
    due_items=1,
    due_bytes=1,
    max_wait=None,
    consumers=1,
    thread_name="moesif-integrations-profiles",
    what="profile updates",
    dropped_counter="profiles_dropped",
    failed_counter="profiles_failed",
    # After the events, which carry the API calls.
    exit_order=1,
)


@dataclass(frozen=True)
class _Queued:
    kind: ProfileKind
    body: bytes


class ProfileClient:
    """Sends users, companies, subscriptions and actions to the collector.

    Every method takes dicts (field names as in docs/protocol.md, "Users, companies,
    subscriptions, actions"), moesifapi model objects or JSON text.
    A missing required field raises ValueError naming it, and nothing of that call is sent.
    Without ``sync`` a call returns True when queued and False when the queue was full (counted
    as ``profiles_dropped``); with ``sync=True`` it returns True when the collector accepted
    everything.
    """

    def __init__(self, settings: Settings, counters: Counters) -> None:
        self._settings = settings
        self.counters = counters
        self._problems = LogOnce()
        self.queue: BoundedQueue[_Queued] = BoundedQueue(
            _QUEUE_RULES, counters, self._run, settings.shutdown_timeout
        )

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
        return self.queue.put_all([_Queued(kind, body) for body in bodies], list(map(len, bodies)))

    def _send_now(self, kind: ProfileKind, bodies: List[bytes]) -> bool:
        if not bodies:
            return True
        # Its own connection: Transport is not thread-safe and callers may be many threads.
        budget = self._settings.connect_timeout + self._settings.read_timeout
        with Transport(self._settings, self.queue.stopping) as transport:
            return self._send_kind(transport, kind, bodies, time.monotonic() + budget)

    # ------------------------------------------------------------------ sender thread

    def _run(self, number: int) -> None:
        with Transport(self._settings, self.queue.stopping) as transport:
            self.queue.serve(number, lambda taken: self._send_taken(transport, taken))

    def _send_taken(self, transport: Transport, taken: List[_Queued]) -> None:
        by_kind: Dict[str, List[bytes]] = {}
        kinds: Dict[str, ProfileKind] = {}
        for queued in taken:  # dicts keep first-seen order, so kinds go out in call order
            by_kind.setdefault(queued.kind.name, []).append(queued.body)
            kinds[queued.kind.name] = queued.kind
        for name, bodies in by_kind.items():
            self._send_kind(transport, kinds[name], bodies, self.queue.deadline)

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
            if chunk and (len(chunk) >= _BATCH_ITEMS or chunk_bytes + len(body) + 1 > _BATCH_BYTES):
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
        if response.status in (401, 403):
            self._problems.log(
                "unauthorized",
                logging.ERROR,
                "the collector refused the application id (%d): check APPLICATION_ID; "
                "%d %s not sent",
                response.status,
                count,
                kind.name,
                extra=VISIBLE,
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
