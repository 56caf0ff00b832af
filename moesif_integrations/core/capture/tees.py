"""Bounded body captures and the synchronous tees: what the app reads and what it answers pass
through untouched while a bounded copy stays.

Nothing here parses or copies more than the capture limit: a capture keeps references to the
chunks that fit and counts the rest. The response tees finish their exchange exactly once: at
the end of the body, at ``close()`` or when producing the body raises.
"""

from __future__ import annotations

from typing import IO, Any, Iterable, Iterator, List, Optional, Protocol


class BodyCapture:
    """A body's bounded copy: at most ``limit`` bytes kept, all of them counted."""

    __slots__ = ("limit", "chunks", "room", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: List[bytes] = []
        self.room = limit  # what may still be kept
        self.size = 0

    def add(self, data: Any, reused: bool = False) -> None:
        """Keeps what fits of ``data`` (bytes, or any buffer when ``reused``: one its owner will
        reuse, of which only the part kept is copied)."""
        n = len(data)
        self.size += n
        room = self.room
        if n > room:
            if room <= 0:
                return
            data = bytes(data[:room])
            n = room
        elif not n:
            return
        elif reused:
            data = bytes(data)
        self.chunks.append(data)
        self.room = room - n

    def value(self) -> bytes:
        """The bytes kept (the very chunk when there is one)."""
        return b"".join(self.chunks)


class _Lines:
    """Iteration over a body stream line by line, as PEP 3333 asks of ``wsgi.input``."""

    __slots__ = ()

    def readline(self, size: Optional[int] = -1) -> bytes:
        raise NotImplementedError

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class InputTee(_Lines):
    """Wraps ``wsgi.input``: the app reads as usual, the capture sees what it read.

    The capture never reads on its own: a declared body that never comes must not hold the
    worker nor delay the response, so what the app left unread goes unrecorded.

    Chunked uploads (no Content-Length) are captured the same way, since the tee sees bytes, not
    headers.
    """

    __slots__ = ("_input", "capture")

    def __init__(self, wsgi_input: IO[bytes], capture: BodyCapture) -> None:
        self._input = wsgi_input
        self.capture = capture

    def read(self, size: Optional[int] = -1, *args: Any) -> bytes:
        data = self._input.read(-1 if size is None else size, *args)
        if data:
            self.capture.add(data)
        return data

    def read1(self, size: Optional[int] = -1, *args: Any) -> bytes:
        read1 = getattr(self._input, "read1", None)
        data = (read1 or self._input.read)(-1 if size is None else size, *args)
        if data:
            self.capture.add(data)
        return data

    def readinto(self, buffer: Any) -> Optional[int]:
        # Werkzeug reads through readinto when the input has one; delegating it through
        # __getattr__ would bypass the capture.
        readinto = getattr(self._input, "readinto", None)
        if readinto is None:  # PEP 3333 promises only read()
            data = self._input.read(len(buffer))
            buffer[: len(data)] = data
            if data:
                self.capture.add(data)
            return len(data)
        count: Optional[int] = readinto(buffer)
        if count:
            self.capture.add(memoryview(buffer)[:count], reused=True)
        return count

    def readline(self, size: Optional[int] = -1, *args: Any) -> bytes:
        data = self._input.readline(-1 if size is None else size, *args)
        if data:
            self.capture.add(data)
        return data

    def readlines(self, hint: Optional[int] = -1, *args: Any) -> List[bytes]:
        lines = self._input.readlines(-1 if hint is None else hint, *args)
        for line in lines:
            self.capture.add(line)
        return lines

    def __getattr__(self, name: str) -> Any:
        # Servers hang extras on their input objects (gunicorn's Body, waitress' buffers);
        # anything the tee does not define is the original's.
        return getattr(self._input, name)


class Finishing(Protocol):
    """What a response tee needs from its exchange (``core.capture.exchange.Exchange``)."""

    # The response body's bounded copy; None when bodies are not captured.
    response_capture: Optional[BodyCapture]

    def finish(self, error: bool = False) -> None: ...

    def capture_failed(self, where: str) -> None: ...


class ResponseIterator:
    """Passes the app's chunks through the moment they come, keeping a bounded copy.

    Finishes the exchange at the last chunk, at ``close()`` or when iteration raises, and calls
    the app's own ``close()`` exactly once. Servers iterate what ``__iter__`` returns, a
    generator over the app's iterable.
    """

    __slots__ = ("_exchange", "_result", "_chunks", "_closed")

    def __init__(self, exchange: Finishing, result: Iterable[bytes]) -> None:
        self._exchange = exchange
        self._result = result
        self._chunks: Optional[Iterator[bytes]] = None
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = self._pass_through()
        return chunks

    def __next__(self) -> bytes:
        # For servers that call next() on the result itself instead of iterating it.
        return next(self.__iter__())

    def _pass_through(self) -> Iterator[bytes]:
        exchange = self._exchange
        capture = exchange.response_capture
        try:
            # Not "yield from": it would close the app's iterator itself, and close() again.
            for chunk in self._result:
                if capture is not None:
                    try:
                        capture.add(chunk)
                    except Exception:  # not bytes: the server will say so; capture never raises
                        exchange.capture_failed("response")
                        capture = None
                yield chunk
        except GeneratorExit:  # close() before the end: close() finishes the exchange
            raise
        except BaseException:
            exchange.finish(error=True)
            self._chunks = None  # this very generator, running: close() leaves it be
            self.close()
            raise
        exchange.finish()

    def close(self) -> None:
        """Closes the app's result, once, and finishes the exchange if the body did not end."""
        try:
            chunks = self._chunks
            if chunks is not None:
                # The generator's frame holds this object: dropping it breaks the cycle, so
                # reference counting frees both without the cyclic collector.
                self._chunks = None
                chunks.close()  # type: ignore[attr-defined]
            if not self._closed:
                self._closed = True
                close = getattr(self._result, "close", None)
                if close is not None:
                    close()
        finally:
            self._exchange.finish()


class SizedResponseIterator(ResponseIterator):
    """For list and tuple bodies: servers that look at ``len()`` (wsgiref sets Content-Length
    for one-chunk bodies) keep doing so."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]


def read_block(exchange: Finishing, data: bytes) -> None:
    """A block read from a file-like response stream: kept in the exchange's copy; an empty one
    is the end of the body, which finishes the exchange."""
    if data:
        capture = exchange.response_capture
        if capture is not None:
            capture.add(data)
    else:
        exchange.finish()


class ReadTee:
    """A file-like response stream that does not go to the server's sendfile: the framework (or
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
        read_block(self._exchange, data)
        return data

    def close(self) -> None:
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        finally:
            self._exchange.finish()


class ReplayInput(_Lines):
    """A request body stream whose first bytes were read ahead (for the governance rules): the
    app reads them again, then the rest of the original, as if nothing had been read."""

    __slots__ = ("_prefix", "_input")

    def __init__(self, prefix: bytes, wsgi_input: Any) -> None:
        self._prefix = prefix
        self._input = wsgi_input

    def read(self, size: Optional[int] = -1, *args: Any) -> bytes:
        prefix = self._prefix
        if not prefix:
            data: bytes = self._input.read(-1 if size is None else size, *args)
            return data
        if size is None or size < 0:
            self._prefix = b""
            rest: bytes = self._input.read()
            return prefix + rest
        if size <= len(prefix):
            self._prefix = prefix[size:]
            return prefix[:size]
        self._prefix = b""
        more: bytes = self._input.read(size - len(prefix))
        return prefix + more

    def read1(self, size: Optional[int] = -1, *args: Any) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: Optional[int] = -1, *args: Any) -> bytes:
        prefix = self._prefix
        if not prefix:
            line: bytes = self._input.readline(-1 if size is None else size, *args)
            return line
        limit = len(prefix) if size is None or size < 0 else min(size, len(prefix))
        end = prefix.find(b"\n", 0, limit)
        if end >= 0:
            limit = end + 1
        first = prefix[:limit]
        self._prefix = prefix[limit:]
        if first.endswith(b"\n") or self._prefix or (size is not None and 0 <= size <= limit):
            return first
        wanted = -1 if size is None or size < 0 else size - limit
        tail: bytes = self._input.readline(wanted)
        return first + tail

    def readlines(self, hint: Optional[int] = -1, *args: Any) -> List[bytes]:
        lines: List[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __getattr__(self, name: str) -> Any:
        return getattr(self._input, name)
