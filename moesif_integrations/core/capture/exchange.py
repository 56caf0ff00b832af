"""One exchange in flight, WSGI or ASGI alike: the record it becomes, its body captures, one
identification routine and one finish.

A protocol's request path (``wsgi.py``, ``asgi.py``) notes the request's facts into an
``Exchange`` and wires its tees; an adapter adds what its framework knows. Whichever way the
response ends, ``finish`` ends the exchange once and hands the record to the sink.
"""

from __future__ import annotations

from time import time as _time
from typing import Any, Dict, Optional, Sequence, Tuple

from ..decide.governance import Block
from ..outgoing import active as outgoing
from ..record import ExchangeRecord, Headers
from .sink import CaptureSink
from .tees import BodyCapture, InputTee

HookArguments = Sequence[Any]
# Where adapters and hooks find the exchange of a WSGI request in flight.
EXCHANGE_ENVIRON_KEY = "moesif.exchange"


class Capture:
    """Captures exchanges for one CaptureSink: the settings every request reads (read once from
    the Settings), SKIP, and what an adapter's subclass adds about its framework
    (``framework_user``, ``framework_route``, ``hook_arguments``)."""

    def __init__(self, sink: CaptureSink) -> None:
        settings = sink.settings
        self.sink = sink
        self.log_body: bool = settings.log_body
        self.request_limit: int = settings.request_max_body_size
        self.response_limit: int = settings.response_max_body_size
        self.add_transaction_id: bool = not settings.disabled_transaction_id
        self.skip_hook = settings.skip
        self.identify_user = settings.identify_user
        self.identify_company = settings.identify_company
        self.get_session_token = settings.get_session_token
        self.get_metadata = settings.get_metadata
        # The integration's outgoing recorder, when it captures outgoing calls: calls made while
        # one of its requests is served carry the request's transaction id.
        self.outgoing: Any = getattr(sink, "outgoing", None)
        self.has_identity_hooks = any(
            hook is not None
            for hook in (
                self.identify_user,
                self.identify_company,
                self.get_session_token,
                self.get_metadata,
            )
        )

    def skips(self, *hook_args: Any) -> bool:
        """Whether SKIP (called once, with ``hook_args``) says not to record this request."""
        skip = self.skip_hook
        if skip is not None and self.sink.call_hook("SKIP", skip, *hook_args):
            self.sink.skip()
            return True
        return False

    def hook_arguments(self, exchange: Exchange) -> Optional[Tuple[HookArguments, HookArguments]]:
        """What the identification hooks receive when the exchange identifies itself at its end:
        (for GET_SESSION_TOKEN and GET_METADATA, for IDENTIFY_USER and IDENTIFY_COMPANY). None
        when only the adapter has them (it calls ``Exchange.identify`` itself): no hook runs."""
        return None

    def framework_user(self, environ: Optional[Dict[str, Any]]) -> Optional[str]:
        """The logged-in user as the framework knows it; the server's REMOTE_USER by default."""
        user = environ.get("REMOTE_USER") if environ is not None else None
        return str(user) if user else None

    def framework_route(self, environ: Optional[Dict[str, Any]]) -> Optional[str]:
        """The route template the framework matched, when it knows one."""
        return None


class Exchange(ExchangeRecord):
    """One request in flight, and the record it becomes: one object per request, not two.

    Beyond the record's facts it holds what only the request needs: its capture, the WSGI
    environ (None under ASGI), the request body's copy with its tee and declared length, and the
    response body's copy. ``finish`` ends it exactly once, whatever the server and the app do;
    then it keeps nothing but facts and is submitted as the record.
    """

    __slots__ = (
        "capture",
        "environ",
        "request_capture",
        "tee",
        "declared_length",
        "response_capture",
        "finished",
        "identified",
        "outgoing_token",
    )

    def __init__(
        self,
        capture: Capture,
        request_time: float,
        method: str,
        scheme: str,
        host: str,
        path: str,
        query: str,
        request_headers: Headers,
        request_headers_cgi: bool,
        remote_addr: Optional[str],
        transaction_id: Optional[str],
    ) -> None:
        ExchangeRecord.__init__(
            self,
            request_time,
            method,
            scheme,
            host,
            path,
            query,
            request_headers,
            request_headers_cgi,
            remote_addr,
            transaction_id,
        )
        self.capture = capture
        self.environ: Optional[Dict[str, Any]] = None
        # Set by capture_request_body() when a body may come.
        self.request_capture: Optional[BodyCapture] = None
        # What the app reads the body through (InputTee, asgi.ReceiveTee); None when the body
        # came whole or none is expected.
        self.tee: Any = None
        self.declared_length = -1
        self.response_capture: Optional[BodyCapture] = (
            BodyCapture(capture.response_limit) if capture.log_body else None
        )
        self.finished = False
        # True once the identification hooks ran (an adapter may run them in its request
        # context; otherwise finish() does).
        self.identified = False
        recorder = capture.outgoing
        self.outgoing_token = (
            outgoing.enter(recorder, transaction_id) if recorder is not None else None
        )

    @property
    def record(self) -> ExchangeRecord:
        """The record this exchange fills (itself); hooks reach it through environ."""
        return self

    # ------------------------------------------------------------------ the request

    def capture_request_body(self, content_length: Any) -> BodyCapture:
        """The request body's bounded copy, for a request that may have one. ``content_length``
        as declared (text, bytes or None) is noted, -1 when absent or malformed: a bad header
        never raises."""
        try:
            length = int(content_length) if content_length else -1
        except (TypeError, ValueError):
            length = -1
        self.declared_length = length if length >= 0 else -1
        body = self.request_capture = BodyCapture(self.capture.request_limit)
        return body

    def short_unread_length(self) -> int:
        """The declared length of the request body when it fits the capture limit, else 0: a
        body that short, which the app never read, is read after the response so that it is
        still captured (never an endless upload). Each protocol knows whether the app read."""
        body = self.request_capture
        length = self.declared_length
        return length if body is not None and 0 < length <= body.limit else 0

    def governance(self) -> Optional[Block]:
        """The Block that answers for the app, when governance rules say so (noted in the
        record); None when the app is to run."""
        sink = self.capture.sink
        if not sink.governs:
            return None
        block = sink.govern(self)
        if block is not None:
            self.blocked_by = block.rule_id
        return block

    def capture_failed(self, where: str) -> None:
        self.capture.sink.capture_failed(where)

    # ------------------------------------------------------------------ identification

    def identify(
        self, args: Optional[HookArguments] = None, user_args: Optional[HookArguments] = None
    ) -> None:
        """Notes who made the request, once: the route the framework matched, then the
        identification hooks (IDENTIFY_USER, IDENTIFY_COMPANY, GET_SESSION_TOKEN, GET_METADATA,
        each called once), then the framework's user when IDENTIFY_USER gave none.

        An adapter calls it where the framework's request context is at hand, with what its
        hooks receive (``args``; ``user_args`` for IDENTIFY_USER and IDENTIFY_COMPANY when they
        differ); otherwise ``finish`` calls it with ``capture.hook_arguments``.
        """
        if self.identified:
            return
        self.identified = True
        capture = self.capture
        # The record's rarer facts stay class defaults unless there is something to note.
        if self.route is None:
            route = capture.framework_route(self.environ)
            if route is not None:
                self.route = route
        if capture.has_identity_hooks:
            if args is None:
                given = capture.hook_arguments(self)
                if given is not None:
                    args, user_args = given
            if args is not None:
                self._call_identity_hooks(args, args if user_args is None else user_args)
        if self.user_id is None:
            user = capture.framework_user(self.environ)
            if user is not None:
                self.user_id = user

    def _call_identity_hooks(self, args: HookArguments, user_args: HookArguments) -> None:
        capture = self.capture
        call = capture.sink.call_hook
        if capture.identify_user is not None:
            self.user_id = _as_text(call("IDENTIFY_USER", capture.identify_user, *user_args))
        if capture.identify_company is not None:
            self.company_id = _as_text(
                call("IDENTIFY_COMPANY", capture.identify_company, *user_args)
            )
        if capture.get_session_token is not None:
            self.session_token = _as_text(
                call("GET_SESSION_TOKEN", capture.get_session_token, *args)
            )
        if capture.get_metadata is not None:
            self.metadata = call("GET_METADATA", capture.get_metadata, *args)

    # ------------------------------------------------------------------ the end

    def finish(self, error: bool = False) -> None:
        """Ends the exchange, once: notes the time and the status, takes the bodies, identifies
        when no adapter did, lets go of the request and submits the record."""
        if self.finished:
            return
        self.finished = True
        token = self.outgoing_token
        if token is not None:
            outgoing.leave(token)
        try:
            self._note_end(error)
            self._take_bodies(error)
            self.identify()
            self._release()
            self.capture.sink.submit(self)
        except Exception:
            self.capture.sink.capture_failed("response")

    def _note_end(self, error: bool) -> None:
        """The response time (the last byte, the close or the error) and the status: 500 when
        the app failed or answered nothing."""
        self.response_time = _time()
        if error or not self.status:
            self.status = 500

    def _take_bodies(self, error: bool) -> None:
        """The bodies' copies into the record; a short request body the app never read (WSGI)
        is read first (see short_unread_length)."""
        body = self.request_capture
        if body is not None:
            tee = self.tee
            if not error and isinstance(tee, InputTee) and tee.reads == 0:
                length = self.short_unread_length()
                if length:
                    try:
                        tee.drain_unread(length)
                    except Exception:  # the client went away; what was read is what we have
                        pass
            self.request_body = body.value()
            self.request_body_size = max(body.size, self.declared_length)
        body = self.response_capture
        if body is not None:
            self.response_body = body.value()
            self.response_body_size = body.size

    def _release(self) -> None:
        """The submitted record keeps nothing of the request but its facts. The environ and an
        exchange registered in it (EXCHANGE_ENVIRON_KEY) point at each other: breaking the cycle
        lets reference counting free both, instead of leaving the work to the cyclic garbage
        collector."""
        environ = self.environ
        if environ is not None and environ.get(EXCHANGE_ENVIRON_KEY) is self:
            del environ[EXCHANGE_ENVIRON_KEY]
        self.environ = self.tee = self.request_capture = self.response_capture = None


def _as_text(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
