"""Bounded body captures and the request-body tee: the protocol-neutral parts of the request path.

Nothing here parses or copies more than the capture limit: a capture keeps references to the
chunks that fit and counts the rest.
"""

from __future__ import annotations

from itertools import compress
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

from .ids import transaction_id_for

_HEADER_KEY_PREFIXES = ("HTTP_", "CONTENT_TYPE", "CONTENT_LENGTH")
_HEADER_KEYS_LIMIT = 2048  # header names are the client's to choose: a bounded memo


class _HeaderKeys(Dict[str, bool]):
    """Whether an environ key is a request header, remembered per key: a dict lookup made from
    C (by ``map``) is several times cheaper than ``str.startswith`` or a Python-level test, and
    servers send the same couple of dozen keys on every request."""

    def __missing__(self, key: str) -> bool:
        is_header = key.startswith(_HEADER_KEY_PREFIXES)
        if len(self) < _HEADER_KEYS_LIMIT:
            self[key] = is_header
        return is_header


_is_header_key = _HeaderKeys().__getitem__


def environ_path(environ: Dict[str, Any]) -> str:
    """SCRIPT_NAME + PATH_INFO: the path the client asked for."""
    path: str = environ.get("PATH_INFO") or ""
    script_name = environ.get("SCRIPT_NAME")
    return script_name + path if script_name else path


def note_transaction_id(environ: Dict[str, Any]) -> str:
    """The exchange's transaction id (the client's own when it is a UUID), put in environ too:
    the app and the event see the id the response will carry. Call it after the header
    snapshot, which then holds the client's header as it came."""
    transaction_id = transaction_id_for(environ.get("HTTP_X_MOESIF_TRANSACTION_ID"))
    environ["HTTP_X_MOESIF_TRANSACTION_ID"] = transaction_id
    return transaction_id


def environ_header_items(environ: Dict[str, Any]) -> List[Tuple[str, str]]:
    """The request headers of a WSGI environ as (key, value) pairs, keys as the environ has
    them ("HTTP_X_FOO", "CONTENT_TYPE"); no Python-level loop.

    A server builds the environs of like requests with the same keys in the same order, so each
    such key set gets a reader of its header pairs (see _header_reader), made once.
    """
    global _last_key_set
    keys = tuple(environ)
    last_keys, read = _last_key_set
    if keys != last_keys:  # comparing to the last key set costs less than hashing the keys
        known = _key_sets.get(keys)
        if known is None:
            return _header_items_of_new_key_set(environ, keys)
        _last_key_set = (keys, known)
        read = known
    return read(environ)


HeaderReader = Callable[[Dict[str, Any]], List[Tuple[str, str]]]
# environ keys, in order -> the reader of their header pairs. Bounded: header names are the
# client's to choose, so the key sets are too.
_key_sets: Dict[Tuple[str, ...], HeaderReader] = {}
_KEY_SETS_LIMIT = 256
_last_key_set: Tuple[Tuple[str, ...], HeaderReader] = ((), lambda environ: [])


def _header_items_of_new_key_set(
    environ: Dict[str, Any], keys: Tuple[str, ...]
) -> List[Tuple[str, str]]:
    items = list(compress(environ.items(), map(_is_header_key, environ)))
    if len(_key_sets) < _KEY_SETS_LIMIT:
        names = tuple([name for name, _value in items])
        if all([type(name) is str for name in names]):  # else no reader: read each time
            _key_sets[keys] = _header_reader(names)
    return items


def _header_reader(names: Tuple[str, ...]) -> HeaderReader:
    """``environ -> [(name, environ[name]), ...]`` for these names, as compiled code: it builds
    the pairs with no iterator, zip() or value tuple in between, about half the cost per request
    of zip() over an itemgetter. The names go in as string literals (``str.__repr__``), so
    whatever a client names its headers, none of it is ever code."""
    pairs = "".join([f"({name}, environ[{name}]), " for name in map(str.__repr__, names)])
    namespace: Dict[str, Any] = {}
    exec(f"def read_header_items(environ):\n    return [{pairs}]\n", namespace)
    reader: HeaderReader = namespace["read_header_items"]
    return reader


class RequestPathSettings:
    """The settings every request path reads on each request, read once into attributes."""

    def read_request_path_settings(self, pipeline: Any) -> None:
        settings = pipeline.settings
        self.pipeline = pipeline
        self.log_body: bool = settings.log_body
        self.request_limit: int = settings.request_max_body_size
        self.response_limit: int = settings.response_max_body_size
        self.add_transaction_id: bool = not settings.disabled_transaction_id
        self.skip_hook = settings.skip
        self.identify_user = settings.identify_user
        self.identify_company = settings.identify_company
        self.get_session_token = settings.get_session_token
        self.get_metadata = settings.get_metadata


class BoundedBody:
    """Keeps at most ``limit`` bytes of a body and counts all of it.

    The methods only: a class that holds ``limit``, ``chunks``, ``kept`` and ``size`` gets them
    from here. BodyCapture is a body's copy on its own; the WSGI exchange keeps its response's
    itself, which spares an object per request.
    """

    if not TYPE_CHECKING:  # mypy would take the empty __slots__ for the subclasses' layout
        __slots__ = ()
    limit: int
    chunks: List[bytes]
    kept: int
    size: int

    def add(self, data: bytes) -> None:
        n = len(data)
        self.size += n
        room = self.limit - self.kept
        if room <= 0 or not n:
            return
        if n > room:
            data = bytes(data[:room])
            n = room
        self.chunks.append(data)
        self.kept += n

    def add_copy(self, view: memoryview) -> None:
        """Like add(), for a buffer its owner will reuse: copies only the part that is kept."""
        n = len(view)
        room = self.limit - self.kept
        if room > 0 and n:
            self.add(bytes(view[:room]))
            self.size += n - min(n, room)
        else:
            self.size += n

    def value(self) -> bytes:
        chunks = self.chunks
        if len(chunks) == 1:
            return bytes(chunks[0])
        return b"".join(chunks)


class BodyCapture(BoundedBody):
    """A body's bounded copy: at most ``limit`` bytes kept, all of them counted."""

    __slots__ = ("limit", "chunks", "kept", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks = []
        self.kept = 0
        self.size = 0


class InputTee:
    """Wraps ``wsgi.input``: the app reads as usual, the capture sees what it read.

    Chunked uploads (no Content-Length) are captured the same way, since the tee sees bytes, not
    headers.
    """

    __slots__ = ("_input", "capture", "reads")

    def __init__(self, wsgi_input: IO[bytes], capture: BodyCapture) -> None:
        self._input = wsgi_input
        self.capture = capture
        # How many read calls the app made; zero means the app never looked at the body.
        self.reads = 0

    def read(self, size: Optional[int] = -1, *args: Any) -> bytes:
        self.reads += 1
        if size is None:
            size = -1
        data = self._input.read(size, *args)
        if data:
            self.capture.add(data)
        return data

    def read1(self, size: Optional[int] = -1, *args: Any) -> bytes:
        self.reads += 1
        read1 = getattr(self._input, "read1", None)
        data = (read1 or self._input.read)(-1 if size is None else size, *args)
        if data:
            self.capture.add(data)
        return data

    def readinto(self, buffer: Any) -> Optional[int]:
        # Werkzeug reads through readinto when the input has one; delegating it through
        # __getattr__ would bypass the capture.
        self.reads += 1
        readinto = getattr(self._input, "readinto", None)
        if readinto is None:  # PEP 3333 promises only read()
            data = self._input.read(len(buffer))
            buffer[: len(data)] = data
            if data:
                self.capture.add(data)
            return len(data)
        count: Optional[int] = readinto(buffer)
        if count:
            capture = self.capture
            if count <= capture.limit - capture.kept:
                # add_copy() inline when all of it is kept: the usual body comes in one read,
                # often into a bytearray of just its size (copied whole, with no view).
                if count == len(buffer) and type(buffer) is bytearray:
                    capture.chunks.append(bytes(buffer))
                else:
                    capture.chunks.append(bytes(memoryview(buffer)[:count]))
                capture.kept += count
                capture.size += count
            else:
                capture.add_copy(memoryview(buffer)[:count])
        return count

    def readline(self, size: Optional[int] = -1, *args: Any) -> bytes:
        self.reads += 1
        if size is None:
            size = -1
        data = self._input.readline(size, *args)
        if data:
            self.capture.add(data)
        return data

    def readlines(self, hint: Optional[int] = -1, *args: Any) -> List[bytes]:
        self.reads += 1
        lines = self._input.readlines(-1 if hint is None else hint, *args)
        for line in lines:
            self.capture.add(line)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __getattr__(self, name: str) -> Any:
        # Servers hang extras on their input objects (gunicorn's Body, waitress' buffers);
        # anything the tee does not define is the original's.
        return getattr(self._input, name)

    def drain_unread(self, content_length: int) -> None:
        """Reads a body the app never touched, so a short body is still captured.

        Only called after the response is done and only for a declared length within the
        capture limit, so it never blocks on an endless upload.
        """
        remaining = content_length
        while remaining > 0:
            data = self._input.read(min(remaining, 65536))
            if not data:
                break
            self.capture.add(data)
            remaining -= len(data)
