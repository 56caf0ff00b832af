"""The ASGI request path, framework-neutral: the facts of an ASGI scope, the request body from
its events, and the tees of ``receive`` and of async response streams.

An ASGI adapter begins an ``Exchange`` from the scope with what its framework parsed (method,
scheme, host, header pairs), lets ``capture_request_body`` tee the body the app pulls, and wraps
async response streams; the stream tees finish the exchange once: at the end of the body, at
``close()`` or on an error.
"""

from __future__ import annotations

import inspect
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from .exchange import Capture, Exchange
from .tees import BodyCapture, Finishing, read_block

AsgiEvent = Dict[str, Any]
Receive = Callable[[], Awaitable[AsgiEvent]]


def scope_path(scope: Dict[str, Any]) -> str:
    """root_path + path as the client asked for it, in PEP 3333's latin-1 view of its UTF-8
    bytes (as asgiref gives a WSGI app), so the worker quotes it the same way for both."""
    path: str = scope.get("path") or "/"
    root_path = scope.get("root_path") or ""
    if root_path and not path.startswith(root_path):
        path = root_path + path  # servers differ on whether "path" already holds root_path
    if not path.isascii():
        path = path.encode("utf-8", "surrogateescape").decode("latin-1")
    return path


def scope_query(scope: Dict[str, Any]) -> str:
    query = scope.get("query_string") or b""
    return query.decode("latin-1") if isinstance(query, bytes) else str(query)


def scope_client(scope: Dict[str, Any]) -> Optional[str]:
    """The peer's address; None when the server gave none."""
    client = scope.get("client")
    return str(client[0]) if client else None


def scope_headers(scope: Dict[str, Any]) -> List[Tuple[bytes, bytes]]:
    """The scope's header pairs, as bytes (the worker decodes them)."""
    return [(name, value) for name, value in scope.get("headers") or ()]


def exchange_from_scope(
    capture: Capture,
    scope: Dict[str, Any],
    started: float,
    method: str,
    scheme: str,
    host: str,
    transaction_id: Optional[str],
    headers: Any = None,
) -> Exchange:
    """An exchange of ``scope``: path, query and client from the scope, the rest as the
    adapter's framework parsed it. ``headers``: name/value pairs, bytes or text; the scope's
    own when None (an adapter whose framework consumed them passes what it parsed)."""
    # Byte pairs are the record's to keep as they are: the worker decodes them.
    pairs: Any = scope_headers(scope) if headers is None else headers
    return Exchange(
        capture,
        started,
        method,
        scheme,
        host,
        scope_path(scope),
        scope_query(scope),
        pairs,
        False,
        scope_client(scope),
        transaction_id,
    )


def capture_request_body(
    exchange: Exchange,
    content_length: Any,
    first_event: Optional[AsgiEvent],
    receive: Optional[Receive],
) -> Optional[ReceiveTee]:
    """Captures the request body from its first ``http.request`` event, already received; when
    more events follow, returns the tee of ``receive`` that copies them as the app pulls them
    (the adapter puts it where the app receives from). ``receive`` None: the first event is
    all there is to see (something else already pulls the body)."""
    body = exchange.capture_request_body(content_length)
    event = first_event or {}
    data = event.get("body")
    if data:
        body.add(data)
    if receive is None or (event and not event.get("more_body")):
        return None
    tee = exchange.tee = ReceiveTee(receive, body)
    return tee


class ReceiveTee:
    """Wraps an ASGI ``receive``: the request body events the app pulls are copied, boundedly.
    Nothing is received for the capture alone: a body the app never pulled goes unrecorded."""

    __slots__ = ("_receive", "_capture")

    def __init__(self, receive: Receive, capture: BodyCapture) -> None:
        self._receive = receive
        self._capture = capture

    async def __call__(self) -> AsgiEvent:
        event = await self._receive()
        if event.get("type") == "http.request":
            body = event.get("body")
            if body:
                self._capture.add(body)
        return event


class AsyncReadTee:
    """An ASGI response stream with an awaitable ``read()`` (aiofiles and the like)."""

    __slots__ = ("_exchange", "_stream")

    def __init__(self, exchange: Finishing, stream: Any) -> None:
        self._exchange = exchange
        self._stream = stream

    async def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = await self._stream.read(size)
        except BaseException:
            self._exchange.finish(error=True)
            raise
        read_block(self._exchange, data)
        return data

    async def close(self) -> None:
        try:
            await _close(self._stream)
        finally:
            self._exchange.finish()


class AsyncStreamTee:
    """An ASGI response stream that is an async generator or iterator.

    The exchange also finishes at ``close()`` (a server or framework closes a stream when the
    client goes away mid-stream); the app's own stream is closed only if it has ``close()``.
    """

    __slots__ = ("_exchange", "_stream", "_iterator")

    def __init__(self, exchange: Finishing, stream: Any) -> None:
        self._exchange = exchange
        self._stream = stream
        self._iterator: Any = None

    def __aiter__(self) -> AsyncStreamTee:
        return self

    async def __anext__(self) -> Optional[bytes]:
        try:
            if self._iterator is None:
                self._iterator = self._stream.__aiter__()
            chunk: Optional[bytes] = await self._iterator.__anext__()
        except StopAsyncIteration:
            self._exchange.finish()
            raise
        except BaseException:
            self._exchange.finish(error=True)
            raise
        if chunk is None:
            # An end of body some frameworks accept from async iterators (PEP 479 forbids
            # StopIteration there).
            self._exchange.finish()
        else:
            capture = self._exchange.response_capture
            if capture is not None:
                capture.add(chunk)
        return chunk

    async def close(self) -> None:
        try:
            await _close(self._stream)
        finally:
            self._exchange.finish()


async def _close(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        result = close()
        if inspect.isawaitable(result):
            await result


class ReplayReceive:
    """A ``receive`` whose first events were received ahead (for the governance rules): the app
    receives them again, then the rest, as if nothing had been received."""

    __slots__ = ("_events", "_receive")

    def __init__(self, events: List[AsgiEvent], receive: Receive) -> None:
        self._events = events
        self._receive = receive

    async def __call__(self) -> AsgiEvent:
        if self._events:
            return self._events.pop(0)
        return await self._receive()


async def receive_ahead(
    first_event: Optional[AsgiEvent], receive: Receive, limit: int
) -> Tuple[bytes, Optional[ReplayReceive]]:
    """The request body's first ``limit`` bytes, from ``first_event`` (already received) and the
    events after it; and the receive the app must get instead of ``receive`` (None when nothing
    was received here). A capture tee passed as ``receive`` copies what goes through once."""
    event = first_event or {}
    body = bytes(event.get("body") or b"")
    if not event.get("more_body") or len(body) >= limit:
        return body[:limit], None
    events: List[AsgiEvent] = []
    while len(body) < limit:
        event = await receive()
        events.append(event)
        if event.get("type") != "http.request":
            break
        body += event.get("body") or b""
        if not event.get("more_body"):
            break
    return body[:limit], ReplayReceive(events, receive)
