"""Body tees for Falcon: what the app reads and what it streams pass through, a bounded copy stays.

Iterables in WSGI reuse the core's ``ResponseIterator``; here are the shapes it does not cover: an
ASGI ``receive`` tee, file-like response streams (sync and async) and async iterables. The
response tees finish their exchange once: at the end of the body, at ``close()`` or on an error.
"""

from __future__ import annotations

import inspect
from typing import Any, Awaitable, Callable, Dict, Optional, Protocol

from .tees import BodyCapture

AsgiEvent = Dict[str, Any]


class Finishing(Protocol):
    """What a response tee needs from its exchange."""

    response_capture: Optional[BodyCapture]

    def finish(self, error: bool) -> None: ...


class ReceiveTee:
    """Wraps an ASGI ``receive``: the request body events the app pulls are copied, boundedly."""

    __slots__ = ("_receive", "_capture", "done")

    def __init__(
        self, receive: Callable[[], Awaitable[AsgiEvent]], capture: BodyCapture, done: bool
    ) -> None:
        self._receive = receive
        self._capture = capture
        # True once the body's last event (or a disconnect) went by.
        self.done = done

    async def __call__(self) -> AsgiEvent:
        event = await self._receive()
        kind = event.get("type")
        if kind == "http.request":
            body = event.get("body")
            if body:
                self._capture.add(body)
            if not event.get("more_body"):
                self.done = True
        elif kind == "http.disconnect":
            self.done = True
        return event

    async def drain_unread(self, content_length: int) -> None:
        """Receives a body the app never touched, so a short body is still captured; only
        called for a declared length within the capture limit, so it never reads without end."""
        while not self.done and self._capture.size < content_length:
            await self()


class ReadTee:
    """A file-like WSGI response stream that does not go to the server's sendfile: Falcon (or
    ``wsgi.file_wrapper``) reads it in blocks and closes it."""

    __slots__ = ("_exchange", "_stream")

    def __init__(self, exchange: Finishing, stream: Any) -> None:
        self._exchange = exchange
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self._stream.read(size)
        except BaseException:
            self._exchange.finish(error=True)
            raise
        if data:
            capture = self._exchange.response_capture
            if capture is not None:
                capture.add(data)
        else:
            self._exchange.finish(error=False)
        return data

    def close(self) -> None:
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        finally:
            self._exchange.finish(error=False)


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
        if data:
            capture = self._exchange.response_capture
            if capture is not None:
                capture.add(data)
        else:
            self._exchange.finish(error=False)
        return data

    async def close(self) -> None:
        try:
            await _close(self._stream)
        finally:
            self._exchange.finish(error=False)


class AsyncStreamTee:
    """An ASGI response stream that is an async generator or iterator.

    Falcon calls ``close()`` on a stream that has one, so the exchange also finishes when the
    client goes away mid-stream; the app's own stream is closed only if it has ``close()``,
    exactly as Falcon would have done.
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
            self._exchange.finish(error=False)
            raise
        except BaseException:
            self._exchange.finish(error=True)
            raise
        if chunk is None:
            # Falcon's end of body for async iterators (PEP 479 forbids StopIteration there).
            self._exchange.finish(error=False)
        else:
            capture = self._exchange.response_capture
            if capture is not None:
                capture.add(chunk)
        return chunk

    async def close(self) -> None:
        try:
            await _close(self._stream)
        finally:
            self._exchange.finish(error=False)


async def _close(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        result = close()
        if inspect.isawaitable(result):
            await result
