"""One outgoing call and the record it becomes, and the recorder that holds an integration's
outgoing options.

An ``OutgoingExchange`` is made when the call starts and finished exactly once: when the
response has been read to its end or closed, when the call raised, when the response was
garbage-collected unread, or at the latest at the integration's flush. Finishing calls the
``*_OUTGOING`` hooks with ``(req, res)`` (what they are depends on the client, see
``patches.py``) and submits the record to the integration's pipeline, where masking, body
limits, sampling and MASK_EVENT_MODEL apply as to incoming events.
"""

from __future__ import annotations

import threading
import weakref
from time import time as _time
from typing import Any, Dict, List, Optional, Set, Tuple

from ..capture.exchange import hook_answer_text
from ..capture.ids import new_transaction_id
from ..capture.sink import CaptureSink
from ..capture.tees import BodyCapture
from ..record import ExchangeRecord, Headers
from . import active

OUTGOING = "Outgoing"
# The metadata keys an outgoing event may carry besides GET_METADATA_OUTGOING's.
INCOMING_TRANSACTION_KEY = "incoming_transaction_id"
ERROR_KEY = "error"


class OutgoingRequest:
    """What the hooks receive as ``req`` for a urllib3 (and so a requests) call: the call as the
    client made it. ``body`` is the body when it was given as bytes or text, else None."""

    __slots__ = ("method", "url", "headers", "body")

    def __init__(self, method: str, url: str, headers: Dict[str, str], body: Any) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<OutgoingRequest {self.method} {self.url}>"


class OutgoingRecorder:
    """An integration's outgoing options (read once from its Settings) and its calls in flight.

    ``sink`` is the integration's pipeline. ``enabled`` turns false when the integration stops
    capturing outgoing calls: calls that still find this recorder then pass through.
    """

    def __init__(self, sink: CaptureSink) -> None:
        settings = sink.settings
        self.sink = sink
        self.enabled = True
        self.log_body: bool = settings.log_body_outgoing
        self.request_limit: int = settings.request_max_body_size
        self.response_limit: int = settings.response_max_body_size
        self.add_transaction_id: bool = not settings.disabled_transaction_id
        self.skip = settings.skip_outgoing
        self.identify_user = settings.identify_user_outgoing
        self.identify_company = settings.identify_company_outgoing
        self.get_session_token = settings.get_session_token_outgoing
        self.get_metadata = settings.get_metadata_outgoing
        # The collector's own origin: calls to it are never captured (patches.py).
        self.collector_origin = origin_of_url(settings.base_uri)
        # Calls whose response is still being read: finished at the latest by finish_pending.
        self._pending: Set[OutgoingExchange] = set()
        # Reentrant: a garbage collection inside a locked section may finish a collected
        # response's call on the same thread.
        self._lock = threading.RLock()

    def begin(
        self,
        incoming_transaction_id: Optional[str],
        method: str,
        scheme: str,
        host: str,
        path: str,
        query: str,
        request_headers: Headers,
        hook_request: Any,
    ) -> OutgoingExchange:
        return OutgoingExchange(
            self,
            incoming_transaction_id,
            method,
            scheme,
            host,
            path,
            query,
            request_headers,
            hook_request,
        )

    def track(self, exchange: OutgoingExchange) -> None:
        with self._lock:
            self._pending.add(exchange)

    def claim(self, exchange: OutgoingExchange) -> bool:
        """True for the one caller that is to finish ``exchange`` (the end of its response, its
        garbage collection and a flush may race)."""
        with self._lock:
            if exchange.finished:
                return False
            exchange.finished = True
            self._pending.discard(exchange)
            return True

    def finish_pending(self) -> int:
        """Finishes every call whose response is still open, with what was read of it so far;
        how many there were."""
        with self._lock:
            pending = list(self._pending)
            self._pending.clear()
        for exchange in pending:
            exchange.finish()
        return len(pending)


class OutgoingExchange(ExchangeRecord):
    """One outgoing call in flight, and the record it becomes.

    It never holds the response itself (only a weak reference, whose callback finishes the
    exchange when the response is collected unread), so it never keeps a response alive.
    """

    __slots__ = (
        "recorder",
        "incoming_transaction_id",
        "hook_request",
        "response_capture",
        "response_ref",
        "error",
        "finished",
    )

    def __init__(
        self,
        recorder: OutgoingRecorder,
        incoming_transaction_id: Optional[str],
        method: str,
        scheme: str,
        host: str,
        path: str,
        query: str,
        request_headers: Headers,
        hook_request: Any,
    ) -> None:
        ExchangeRecord.__init__(
            self,
            _time(),
            method,
            scheme,
            host,
            path,
            query,
            request_headers,
            False,
            None,
            new_transaction_id() if recorder.add_transaction_id else None,
        )
        # In the instance, not the class: the record crosses to the delivery process as facts.
        self.direction = OUTGOING
        self.recorder = recorder
        self.incoming_transaction_id = incoming_transaction_id
        self.hook_request = hook_request
        self.response_capture: Optional[BodyCapture] = (
            BodyCapture(recorder.response_limit) if recorder.log_body else None
        )
        self.response_ref: Optional[weakref.ref[Any]] = None
        self.error: Optional[str] = None
        self.finished = False

    # ------------------------------------------------------------------ the call

    def note_request_body(self, body: Any) -> None:
        """The request body, when the call gave it whole (bytes or text): its bounded copy and
        its size. A file or an iterable is streamed to the server and not captured."""
        if not self.recorder.log_body or body is None:
            return
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        if isinstance(body, bytes):
            self.request_body = body[: self.recorder.request_limit]
            self.request_body_size = len(body)

    def note_response(self, response: Any, status: int, headers: Headers) -> None:
        """The response's status and headers; ``response`` is watched for garbage collection
        and the call is finished at the latest at the integration's flush."""
        self.status = status
        self.response_headers = headers
        self.response_ref = weakref.ref(response, self._collected)
        self.recorder.track(self)

    def _collected(self, _ref: Any) -> None:
        self.finish()

    def fail(self, exc: BaseException) -> None:
        """The call (or reading its response) raised ``exc``, which goes on to the caller."""
        try:
            self.error = f"{type(exc).__name__}: {exc}"
        except Exception:  # a broken __str__ is the exception's own affair
            self.error = type(exc).__name__
        self.finish()

    # ------------------------------------------------------------------ the end

    def finish(self) -> None:
        """Ends the call, once: the time, the body read so far, the hooks, the submission."""
        recorder = self.recorder
        if self.finished or not recorder.claim(self):
            return
        sink = recorder.sink
        try:
            self.response_time = _time()
            body = self.response_capture
            if body is not None:
                self.response_body = body.value()
                self.response_body_size = body.size
            ref = self.response_ref
            response = ref() if ref is not None else None
            # A call a hook makes is not captured: it could capture itself without end.
            paused = active.paused
            was_paused, paused.on = paused.on, True
            try:
                recorded = self._identify(sink, self.hook_request, response)
            finally:
                paused.on = was_paused
            if not recorded:
                sink.skip()
                return
            self.hook_request = self.response_ref = self.response_capture = None
            sink.submit(self)
        except Exception:
            sink.capture_failed("outgoing")

    def _identify(self, sink: CaptureSink, req: Any, res: Any) -> bool:
        """Calls the hooks, each once; False when SKIP_OUTGOING says not to record the call."""
        recorder = self.recorder
        call = sink.call_hook
        if recorder.skip is not None and call("SKIP_OUTGOING", recorder.skip, req, res):
            return False
        if recorder.identify_user is not None:
            self.user_id = hook_answer_text(
                "IDENTIFY_USER_OUTGOING",
                call("IDENTIFY_USER_OUTGOING", recorder.identify_user, req, res),
            )
        if recorder.identify_company is not None:
            self.company_id = hook_answer_text(
                "IDENTIFY_COMPANY_OUTGOING",
                call("IDENTIFY_COMPANY_OUTGOING", recorder.identify_company, req, res),
            )
        if recorder.get_session_token is not None:
            self.session_token = hook_answer_text(
                "GET_SESSION_TOKEN_OUTGOING",
                call("GET_SESSION_TOKEN_OUTGOING", recorder.get_session_token, req, res),
            )
        metadata = None
        if recorder.get_metadata is not None:
            metadata = call("GET_METADATA_OUTGOING", recorder.get_metadata, req, res)
        notes = self._notes()
        if notes:
            # A hook's non-dict answer is reported and dropped by the event builder.
            metadata = {**metadata, **notes} if isinstance(metadata, dict) else notes
        if metadata is not None:
            self.metadata = metadata
        return True

    def _notes(self) -> Dict[str, Any]:
        notes: Dict[str, Any] = {}
        if self.incoming_transaction_id is not None:
            notes[INCOMING_TRANSACTION_KEY] = self.incoming_transaction_id
        if self.error is not None:
            notes[ERROR_KEY] = self.error
        return notes


def origin_of_url(url: str) -> Tuple[str, str, int]:
    """(scheme, host, port) of ``url``, lower-case, with the scheme's default port."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return origin(scheme, parts.hostname or "", port)


def origin(scheme: str, host: str, port: Optional[int]) -> Tuple[str, str, int]:
    if port is None:
        port = 443 if scheme == "https" else 80
    return scheme, host.lower().strip("[]"), port


def header_pairs(items: Any) -> List[Tuple[str, str]]:
    """(name, value) text pairs of a client's header items; bytes are decoded as latin-1."""
    pairs = []
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        pairs.append((str(name), str(value)))
    return pairs
