"""One Falcon request in flight, WSGI or ASGI alike: its record, body captures and one finish.

Falcon renders the body after the middleware, so ``respond`` renders it the same way (Falcon
caches rendered media, so nothing is serialised twice) and notes the headers Falcon will add
(the default Content-Type, Content-Length of a rendered body). Streams are wrapped and finish
the exchange at their end; everything else finishes in ``process_response``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union, cast

import falcon

from ..core.capture import BodyCapture, InputTee
from ..core.governance import Block
from ..core.record import ExchangeRecord
from ..core.wsgi_capture import ResponseIterator, SizedResponseIterator, WsgiExchange
from .streams import AsyncReadTee, AsyncStreamTee, ReadTee, ReceiveTee

if TYPE_CHECKING:
    from .request import FalconCapture

Headers = List[Tuple[str, str]]


class FalconExchange:
    __slots__ = (
        "capture",
        "record",
        "request_capture",
        "input_tee",
        "declared_length",
        "environ",
        "response_capture",
        "response_headers",
        "status",
        "finished",
    )

    def __init__(
        self,
        capture: FalconCapture,
        record: ExchangeRecord,
        request_capture: Optional[BodyCapture],
        input_tee: Union[InputTee, ReceiveTee, None],
        declared_length: int,
        environ: Optional[Dict[str, Any]],
    ) -> None:
        self.capture = capture
        self.record = record
        self.request_capture = request_capture
        self.input_tee = input_tee
        self.declared_length = declared_length
        # The WSGI environ; None under ASGI.
        self.environ = environ
        self.response_capture: Optional[BodyCapture] = (
            BodyCapture(capture.response_limit) if capture.log_body else None
        )
        self.response_headers: Headers = []
        self.status = 0
        self.finished = False

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
                self.response_capture = None
                return self.finish(error=False)
            resp.stream = ReadTee(self, stream)
        else:
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
            self.response_capture = None
            self._note_headers(resp, None, "text/event-stream")
            return self.finish(error=False)
        if data is not None or stream is None:
            return self._finish_with(resp, data or b"")
        self._note_headers(resp, None)
        if hasattr(stream, "read"):
            resp.stream = AsyncReadTee(self, stream)
        elif hasattr(stream, "__aiter__"):
            resp.stream = AsyncStreamTee(self, stream)
        else:
            self.finish(error=True)  # Falcon rejects it with its own error

    def _prepare(self, req: Any, resp: Any) -> bool:
        """Status, route and identity; False when there is no body to wait for."""
        self.record.route = req.uri_template
        self.status = status = falcon.http_status_to_code(resp.status)
        self.capture.identify(self, req, resp)
        if req.method == "HEAD" or status < 200 or status in (204, 304):
            self.response_capture = None  # Falcon sends no body for these
            self._note_headers(resp, None)
            self.finish(error=False)
            return False
        return True

    def _finish_with(self, resp: Any, data: bytes) -> None:
        self._note_headers(resp, len(data))
        if self.response_capture is not None:
            self.response_capture.add(data)
        self.finish(error=False)

    def _note_headers(self, resp: Any, length: Optional[int], default_type: Any = None) -> None:
        """The headers Falcon will send: its own list, its default Content-Type, the length."""
        render = getattr(resp, "_wsgi_headers", None)  # includes Set-Cookie; stable since 1.0
        headers: Headers = render(None) if render is not None else list(resp.headers.items())
        names = {name.lower() for name, _ in headers}
        if "content-type" not in names and self.status not in (204, 304):
            media_type = default_type or resp.options.default_media_type
            if media_type:
                headers.append(("content-type", media_type))
        if length is not None:
            if "content-length" in names:
                headers = [pair for pair in headers if pair[0].lower() != "content-length"]
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
            self.capture.recorder.capture_failed("response")

    def _finish(self, error: bool) -> None:
        record = self.record
        record.response_time = time.time()
        record.status = 500 if error or not self.status else self.status
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
            record.request_body = body.value()
            record.request_body_size = max(body.size, declared)
        if self.response_capture is not None:
            record.response_body = self.response_capture.value()
            record.response_body_size = self.response_capture.size
        record.response_headers = self.response_headers
        self.capture.recorder.submit(record)


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
