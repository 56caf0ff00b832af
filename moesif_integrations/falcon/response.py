"""The response side of the Falcon adapter: what it reads from Falcon's response, WSGI or ASGI.

Falcon renders the body after the middleware, so ``respond`` renders it the same way (Falcon
caches rendered media, so nothing is serialised twice) and notes the headers Falcon will add
(the default Content-Type, Content-Length of a rendered body). Streams are wrapped by the core's
tees and finish the exchange at their end; everything else finishes here.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import falcon

from ..core import (
    AsyncReadTee,
    AsyncStreamTee,
    Exchange,
    ReadTee,
    ResponseIterator,
    SizedResponseIterator,
)

Headers = List[Tuple[str, str]]


def respond(exchange: Exchange, req: Any, resp: Any) -> None:
    """WSGI: notes the response and finishes now, or hands Falcon a teed stream."""
    if not _prepare(exchange, req, resp):
        return
    try:
        data = resp.render_body()
    except Exception:
        return exchange.finish(error=True)  # Falcon fails the same way and answers 500
    stream = resp.stream
    if data is not None or stream is None:
        return _finish_with(exchange, resp, data or b"")
    _note_headers(exchange, resp, None)
    if hasattr(stream, "read"):
        if req.env.get("wsgi.file_wrapper") is not None and _is_real_file(stream):
            # sendfile stays sendfile: that body goes uncaptured.
            exchange.response_capture = None
            return exchange.finish()
        resp.stream = ReadTee(exchange, stream)
    else:
        sized = isinstance(stream, (list, tuple))  # wsgiref sets Content-Length for these
        iterator = SizedResponseIterator if sized else ResponseIterator
        resp.stream = iterator(exchange, stream)


async def respond_async(exchange: Exchange, req: Any, resp: Any) -> None:
    """ASGI: the same, with Falcon's async rendering and async streams."""
    if not _prepare(exchange, req, resp):
        return
    try:
        data = await resp.render_body()
    except Exception:
        return exchange.finish(error=True)
    stream = resp.stream
    if resp.sse:
        # Falcon never closes an SSE emitter, so a tee could miss its end: finish now.
        _note_headers(exchange, resp, None, "text/event-stream")
        return exchange.finish()
    if data is not None or stream is None:
        return _finish_with(exchange, resp, data or b"")
    _note_headers(exchange, resp, None)
    if hasattr(stream, "read"):
        resp.stream = AsyncReadTee(exchange, stream)
    elif hasattr(stream, "__aiter__"):
        resp.stream = AsyncStreamTee(exchange, stream)
    else:
        exchange.finish(error=True)  # Falcon rejects it with its own error


def _prepare(exchange: Exchange, req: Any, resp: Any) -> bool:
    """Status, route and identity; False when there is no body to wait for."""
    exchange.route = req.uri_template
    status = resp.status
    # Falcon 4 keeps a plain int unless the resource set a status line.
    if type(status) is not int:
        status = falcon.http_status_to_code(status)
    exchange.status = status
    exchange.identify((req, resp))
    if req.method == "HEAD" or status < 200 or status in (204, 304):
        # Falcon sends no body for these.
        _note_headers(exchange, resp, None)
        exchange.finish()
        return False
    return True


def _finish_with(exchange: Exchange, resp: Any, data: bytes) -> None:
    """A body in hand: its length is the Content-Length Falcon sends."""
    _note_headers(exchange, resp, len(data))
    body = exchange.response_capture
    if body is not None:
        body.add(data)
    exchange.finish()


def _note_headers(
    exchange: Exchange, resp: Any, length: Optional[int], default_type: Any = None
) -> None:
    """The headers Falcon will send: its own list, its default Content-Type, the length."""
    render = getattr(resp, "_wsgi_headers", None)  # includes Set-Cookie; stable since 1.0
    headers: Headers = render(None) if render is not None else list(resp.headers.items())
    # Falcon keeps header names lower-case (its own checks rely on that): a dict built in C
    # answers both questions below.
    names = dict(headers)
    if "content-type" not in names and exchange.status not in (204, 304):
        media_type = default_type or resp.options.default_media_type
        if media_type:
            headers.append(("content-type", media_type))
    if length is not None:
        if "content-length" in names:
            headers = [pair for pair in headers if pair[0] != "content-length"]
        headers.append(("content-length", str(length)))
    exchange.response_headers = headers


def _is_real_file(stream: Any) -> bool:
    try:
        stream.fileno()
    except Exception:
        return False
    return True
