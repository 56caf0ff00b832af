"""One Falcon request in flight, WSGI or ASGI alike: its record, body captures and one finish.

Falcon renders the body after the middleware, so ``respond`` renders it the same way (Falcon
caches rendered media, so nothing is serialised twice) and notes the headers Falcon will add
(the default Content-Type, Content-Length of a rendered body). Streams are wrapped and finish
the exchange at their end; everything else finishes in ``process_response``.
"""

from __future__ import annotations

from time import time as _time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union, cast

import falcon

from ..core.capture.asgi import AsyncReadTee, AsyncStreamTee, ReadTee, ReceiveTee
from ..core.capture.tees import BodyCapture, InputTee
from ..core.capture.wsgi import ResponseIterator, SizedResponseIterator, WsgiExchange
from ..core.decide.governance import Block
from ..core.record import ExchangeRecord

if TYPE_CHECKING:
    from .request import FalconCapture

Headers = List[Tuple[str, str]]


class FalconExchange(ExchangeRecord):
    """One request in flight, and the record it becomes: one object per request, not two.

    Finishes exactly once; then it drops what only the request needed (environ, tees) and is
    queued as the record.
    """

    # Made with ExchangeRecord's own constructor; the request path then sets ``capture`` (and
    # ``environ`` under WSGI). The rest keep their class defaults unless a request needs them.
    __slots__ = ("capture",)
    capture: FalconCapture

    # The WSGI environ (for REMOTE_USER); None under ASGI.
    environ: Optional[Dict[str, Any]] = None
    # Set by the request path when more of the body may still come (see FalconCapture).
    request_capture: Optional[BodyCapture] = None
    input_tee: Union[InputTee, ReceiveTee, None] = None
    declared_length: int = -1
    # Only streamed responses need one; a body in hand is kept as it is (_finish_with).
    response_capture: Optional[BodyCapture] = None
    finished: bool = False

    @property
    def record(self) -> ExchangeRecord:
        """The record this exchange fills (itself)."""
        return self

    # ------------------------------------------------------------------ process_response

    def respond(self, req: Any, resp: Any) -> None:
        """WSGI: notes the response and finishes now, or hands Falcon a teed stream."""
        if not self._prepare(req, resp):
            return
        try:
            data = resp.render_body()
        except Exception:
            return self.finish(error=True)  # Falcon fails the same way and answers 500
        stream = resp.stream
        if data is not None or stream is None:
            return self._finish_with(resp, data or b"")
        self._note_headers(resp, None)
        if hasattr(stream, "read"):
            if req.env.get("wsgi.file_wrapper") is not None and _is_real_file(stream):
                # sendfile stays sendfile: that body goes uncaptured.
                return self.finish(error=False)
            self._capture_stream()
            resp.stream = ReadTee(self, stream)
        else:
            self._capture_stream()
            sized = isinstance(stream, (list, tuple))  # wsgiref sets Content-Length for these
            iterator = SizedResponseIterator if sized else ResponseIterator
            # The core's iterator only needs response_capture and finish() (see streams.Finishing).
            resp.stream = iterator(cast(WsgiExchange, self), stream)

    async def respond_async(self, req: Any, resp: Any) -> None:
        """ASGI: the same, with Falcon's async rendering and async streams."""
        tee, body = self.input_tee, self.request_capture
        # Like the WSGI tee: a short body the resource never read is received after it.
        if isinstance(tee, ReceiveTee) and body is not None and _never_read(req):
            if 0 < self.declared_length <= body.limit:
                try:
                    await tee.drain_unread(self.declared_length)
                except Exception:  # the client went away; what came is what we have
                    pass
        if not self._prepare(req, resp):
            return
        try:
            data = await resp.render_body()
        except Exception:
            return self.finish(error=True)
        stream = resp.stream
        if resp.sse:
            # Falcon never closes an SSE emitter, so a tee could miss its end: finish now.
            self._note_headers(resp, None, "text/event-stream")
            return self.finish(error=False)
        if data is not None or stream is None:
            return self._finish_with(resp, data or b"")
        self._note_headers(resp, None)
        if hasattr(stream, "read"):
            self._capture_stream()
            resp.stream = AsyncReadTee(self, stream)
        elif hasattr(stream, "__aiter__"):
            self._capture_stream()
            resp.stream = AsyncStreamTee(self, stream)
        else:
            self.finish(error=True)  # Falcon rejects it with its own error

    def _prepare(self, req: Any, resp: Any) -> bool:
        """Status, route and identity; False when there is no body to wait for."""
        self.route = req.uri_template
        status = resp.status
        # Falcon 4 keeps a plain int unless the resource set a status line.
        if type(status) is not int:
            status = falcon.http_status_to_code(status)
        self.status = status
        capture = self.capture
        if capture.has_identity_hooks:
            capture.identify(self, req, resp)
        if self.user_id is None and self.environ is not None:
            # Falcon has no user of its own; a server that authenticated says so here.
            remote_user = self.environ.get("REMOTE_USER")
            if remote_user is not None:
                self.user_id = _as_text(remote_user)
        if req.method == "HEAD" or status < 200 or status in (204, 304):
            # Falcon sends no body for these.
            self._note_headers(resp, None)
            self.finish(error=False)
            return False
        return True

    def _capture_stream(self) -> None:
        if self.capture.log_body:
            self.response_capture = BodyCapture(self.capture.response_limit)

    def _finish_with(self, resp: Any, data: bytes) -> None:
        """A body in hand: the same bounded copy a BodyCapture would keep, without one."""
        size = len(data)
        self._note_headers(resp, size)
        capture = self.capture
        if capture.log_body:
            limit = capture.response_limit
            if size > limit:
                data = data[:limit]
            self.response_body = data if type(data) is bytes else bytes(data)
            self.response_body_size = size
        self.finish(error=False)

    def _note_headers(self, resp: Any, length: Optional[int], default_type: Any = None) -> None:
        """The headers Falcon will send: its own list, its default Content-Type, the length."""
        render = getattr(resp, "_wsgi_headers", None)  # includes Set-Cookie; stable since 1.0
        headers: Headers = render(None) if render is not None else list(resp.headers.items())
        # Falcon keeps header names lower-case (its own checks rely on that): a dict built in C
        # answers both questions below.
        names = dict(headers)
        if "content-type" not in names and self.status not in (204, 304):
            media_type = default_type or resp.options.default_media_type
            if media_type:
                headers.append(("content-type", media_type))
        if length is not None:
            if "content-length" in names:
                headers = [pair for pair in headers if pair[0] != "content-length"]
            headers.append(("content-length", str(length)))
        self.response_headers = headers

    # ------------------------------------------------------------------ the end

    def finish(self, error: bool) -> None:
        if self.finished:
            return
        self.finished = True
        try:
            self._finish(error)
        except Exception:
            self.capture.pipeline.capture_failed("response")

    def _finish(self, error: bool) -> None:
        self.response_time = _time()
        if error or not self.status:
            self.status = 500
        # Queued as the record below: it keeps nothing of the request but its facts.
        self.environ = None
        body = self.request_capture
        if body is not None:
            declared = self.declared_length
            tee = self.input_tee
            if (
                isinstance(tee, InputTee)
                and tee.reads == 0
                and 0 < declared <= body.limit
                and not error
            ):
                try:
                    tee.drain_unread(declared)
                except Exception:  # the client went away; what was read is what we have
                    pass
            self.request_body = body.value()
            self.request_body_size = max(body.size, declared)
            self.input_tee = self.request_capture = None
        response_body = self.response_capture
        if response_body is not None:
            self.response_body = response_body.value()
            self.response_body_size = response_body.size
            self.response_capture = None
        self.capture.pipeline.submit(self)


def answer_with(resp: Any, block: Block) -> None:
    """Governance answers for the resource: Falcon skips routing and the responder."""
    resp.status = block.status_line
    for name, value in block.headers:
        resp.append_header(name, value)
    resp.data = block.body
    resp.complete = True


def _never_read(req: Any) -> bool:
    return getattr(req, "_stream", None) is None  # Falcon makes req.stream on first use


def _is_real_file(stream: Any) -> bool:
    try:
        stream.fileno()
    except Exception:
        return False
    return True


def _as_text(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
