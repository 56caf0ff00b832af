"""A property of the WSGI request path, over random requests and apps: the middleware changes
nothing the client or the app sees.

Each example is one request (random header bytes, declared lengths that lie, bodies, chunked
input that may never end) to one app (random reads, status, headers, body shape, write() calls,
and an exception at any point), served by a small PEP 3333 server twice: to the bare app and to
the same app through ``MoesifMiddleware``. Both give the same status, headers (but for the
transaction id) and body, the same exception or none, the same data read by the app, and the same
reads that would wait on a real socket (none added by the capture). Each request leaves exactly
one record (captured, or a counted drop); at the end every captured record reaches the collector
as exactly one event.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moesif_integrations import MoesifMiddleware
from moesif_integrations.collector import Collector

TRANSACTION_HEADER = "x-moesif-transaction-id"
StartResponse = Callable[..., Any]


class AppError(Exception):
    """What the scripted app raises."""


# ---------------------------------------------------------------------------- the input


class SocketLikeInput:
    """``wsgi.input`` as a server gives it: ``available`` bytes, then either the end of the body
    (``ends``) or a client that sends nothing more, where a real socket read would wait. Such a
    read is counted in ``waits`` and returns nothing, so that the test itself never waits."""

    def __init__(self, available: bytes, ends: bool) -> None:
        self._data = available
        self._position = 0
        self._ends = ends
        self.waits = 0

    def _take(self, size: int) -> bytes:
        left = len(self._data) - self._position
        if size < 0 or size > left:
            if not self._ends and size != 0:
                self.waits += 1
            size = left
        data = self._data[self._position : self._position + size]
        self._position += size
        return data

    def read(self, size: Optional[int] = -1) -> bytes:
        return self._take(-1 if size is None else size)

    def readline(self, size: Optional[int] = -1) -> bytes:
        rest = self._data[self._position :]
        end = rest.find(b"\n")
        if end >= 0 and (size is None or size < 0 or end < size):
            return self._take(end + 1)
        return self._take(-1 if size is None else size)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


# ---------------------------------------------------------------------------- the request


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: Dict[str, str]
    declared: Optional[str]  # CONTENT_LENGTH as the client wrote it (may lie or be garbage)
    chunked: bool
    sent: bytes  # what the client sent of the body
    ends: bool  # whether the client ends its chunked body (else it goes quiet)
    remote_addr: Optional[str]

    def environ(self, transaction_id: str) -> Tuple[Dict[str, Any], SocketLikeInput]:
        available, ends = b"", True
        if self.chunked:
            available, ends = self.sent, self.ends
        elif self.declared is not None and self.declared.isdigit():
            declared = int(self.declared)
            available, ends = self.sent[:declared], len(self.sent) >= declared
        stream = SocketLikeInput(available, ends)
        environ: Dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": self.path,
            "QUERY_STRING": self.query,
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": stream,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "HTTP_X_MOESIF_TRANSACTION_ID": transaction_id,
        }
        environ.update(self.headers)
        if self.remote_addr is not None:
            environ["REMOTE_ADDR"] = self.remote_addr
        if self.declared is not None:
            environ["CONTENT_LENGTH"] = self.declared
        if self.chunked:
            environ["HTTP_TRANSFER_ENCODING"] = "chunked"
            environ["wsgi.input_terminated"] = True
        return environ, stream


latin1 = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=40)
header_keys = st.from_regex(r"HTTP_[A-Z0-9_]{1,16}", fullmatch=True).filter(
    lambda key: key not in ("HTTP_TRANSFER_ENCODING", "HTTP_X_MOESIF_TRANSACTION_ID")
)
requests = st.builds(
    Request,
    method=st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS"]),
    path=latin1,
    query=latin1,
    headers=st.dictionaries(
        st.one_of(header_keys, st.just("CONTENT_TYPE")),
        st.one_of(latin1, st.sampled_from(["application/json", "text/plain; charset=utf-8"])),
        max_size=6,
    ),
    declared=st.one_of(
        st.none(),
        st.integers(0, 300).map(str),
        st.sampled_from(["", "-1", "abc", " 5", "99999999999999999999", "1e3"]),
    ),
    chunked=st.booleans(),
    sent=st.one_of(st.binary(max_size=200), st.sampled_from([b'{"a": [1, 2]}', b"a=1&b=2"])),
    ends=st.booleans(),
    remote_addr=st.one_of(st.none(), st.sampled_from(["203.0.113.9", "10.0.0.1", "junk", ""])),
)


# ---------------------------------------------------------------------------- the app


@dataclass
class Script:
    """What the app does: its reads, its answer, its body's shape, where it fails."""

    reads: List[Tuple[str, int]]
    status: str
    headers: List[Tuple[str, str]]
    writes: List[bytes]
    chunks: List[bytes]
    shape: str  # list, tuple, generator, closeable
    fail: Optional[str]  # where it raises; None: nowhere
    fail_at: int
    seen: List[bytes] = field(default_factory=list)  # what the app read, run by run

    def app(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        for kind, size in self.reads:
            if kind == "read":
                self.seen.append(stream.read(size) if size >= 0 else stream.read())
            elif kind == "readline":
                self.seen.append(stream.readline(size))
            else:
                self.seen.extend(line for line, _ in zip(stream, range(size)))
        if self.fail == "before_start":
            raise AppError("before start_response")
        write = start_response(self.status, list(self.headers))
        if self.fail == "handled":
            # An app that catches its own error and answers 500 instead (PEP 3333's exc_info).
            try:
                raise AppError("handled")
            except AppError:
                write = start_response("500 Internal Server Error", [], sys.exc_info())
        for data in self.writes:  # the legacy write() of PEP 3333, before the body
            write(data)
        return self._body()

    def _body(self) -> Iterable[bytes]:
        if self.fail == "after_start":
            raise AppError("after start_response")
        if self.shape == "list":
            return list(self.chunks)
        if self.shape == "tuple":
            return tuple(self.chunks)
        if self.shape == "generator":
            return self._generate()
        return Closeable(self._generate(), self.fail == "in_close")

    def _generate(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if self.fail == "during_body" and index == self.fail_at:
                raise AppError(f"during the body, at chunk {index}")
            yield chunk
        if self.fail == "during_body":
            raise AppError("at the end of the body")


class Closeable:
    """An iterable result with close(), which may raise."""

    def __init__(self, chunks: Iterator[bytes], fails: bool) -> None:
        self._chunks = chunks
        self._fails = fails

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        if self._fails:
            raise AppError("in close()")


tokens = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}", fullmatch=True).filter(
    lambda name: name.lower() != TRANSACTION_HEADER
)
scripts = st.builds(
    Script,
    reads=st.lists(
        st.tuples(st.sampled_from(["read", "readline", "iterate"]), st.integers(-1, 80)),
        max_size=4,
    ),
    status=st.sampled_from(
        [
            "200 OK",
            "201 Created",
            "204 No Content",
            "304 Not Modified",
            "404 Not Found",
            "500 Internal Server Error",
            "302 Found",
            "999 Odd",
            "abc",
        ]
    ),
    headers=st.lists(st.tuples(tokens, st.from_regex(r"[ -~]{0,20}", fullmatch=True)), max_size=5),
    writes=st.lists(st.binary(max_size=30), max_size=2),
    chunks=st.lists(st.binary(max_size=60), max_size=5),
    shape=st.sampled_from(["list", "tuple", "generator", "closeable"]),
    fail=st.sampled_from(
        [None, None, "before_start", "after_start", "during_body", "in_close", "handled"]
    ),
    fail_at=st.integers(0, 4),
)


# ---------------------------------------------------------------------------- the server


@dataclass
class Outcome:
    status: Optional[str] = None
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: List[bytes] = field(default_factory=list)
    error: Optional[Tuple[str, str]] = None
    close_error: Optional[Tuple[str, str]] = None
    seen: List[bytes] = field(default_factory=list)
    waits: int = 0

    def compared(self) -> Tuple[Any, ...]:
        headers = [(k, v) for k, v in self.headers if k.lower() != TRANSACTION_HEADER]
        return (
            self.status,
            headers,
            b"".join(self.body),
            self.error,
            self.close_error,
            self.seen,
            self.waits,
        )


def serve(
    app: Callable[..., Iterable[bytes]],
    environ: Dict[str, Any],
    script: Script,
    stream: SocketLikeInput,
) -> Outcome:
    """One request the way a PEP 3333 server serves it: headers go out with the first non-empty
    chunk; exc_info replaces unsent headers and re-raises once they went; close() always."""
    outcome = Outcome()
    sent = [False]
    script.seen = []

    def start_response(
        status: str, headers: List[Tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and sent[0]:
            raise exc_info[1].with_traceback(exc_info[2])
        outcome.status, outcome.headers = status, list(headers)
        return write

    def write(data: bytes) -> None:
        sent[0] = sent[0] or bool(data)
        outcome.body.append(data)

    result: Any = None
    try:
        result = app(environ, start_response)
        for chunk in result:
            write(chunk)
    except AppError as exc:
        outcome.error = (type(exc).__name__, str(exc))
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except AppError as exc:
                outcome.close_error = (type(exc).__name__, str(exc))
    outcome.seen = list(script.seen)
    outcome.waits = stream.waits
    return outcome


# ---------------------------------------------------------------------------- the property


@pytest.fixture(scope="module")
def module_collector() -> Iterator[Collector]:
    running = Collector(host="127.0.0.1", port=0, db_path=":memory:").start()
    try:
        yield running
    finally:
        running.close()


def test_the_middleware_changes_nothing_and_records_each_request_once(
    module_collector: Collector,
) -> None:
    current: Dict[str, Script] = {}

    def scripted(environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return current["script"].app(environ, start_response)

    middleware = MoesifMiddleware(
        scripted,
        {
            "APPLICATION_ID": "property-app",
            "BASE_URI": module_collector.url,
            "EVENT_BATCH_TIMEOUT": 0.05,
            "REQUEST_MAX_BODY_SIZE": 64,  # bodies over it are cut down
            "RESPONSE_MAX_BODY_SIZE": 64,
            "FLUSH_ON_SIGTERM": False,
        },
    )
    ids: List[str] = []

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(request=requests, script=scripts)
    def one_request(request: Request, script: Script) -> None:
        current["script"] = script
        transaction_id = str(uuid.uuid4())
        bare_environ, bare_stream = request.environ(transaction_id)
        bare = serve(scripted, bare_environ, script, bare_stream)
        before = middleware.stats()
        wrapped_environ, wrapped_stream = request.environ(transaction_id)
        wrapped = serve(middleware, wrapped_environ, script, wrapped_stream)
        after = middleware.stats()

        assert wrapped.compared() == bare.compared()
        if wrapped.status is not None:
            added = [v for k, v in wrapped.headers if k.lower() == TRANSACTION_HEADER]
            assert added == [transaction_id]
        recorded = {
            name: after[name] - before[name]
            for name in ("captured", "dropped_queue_full", "capture_errors", "skipped")
        }
        assert recorded["captured"] + recorded["dropped_queue_full"] == 1, recorded
        assert recorded["capture_errors"] == 0 and recorded["skipped"] == 0, recorded
        if recorded["captured"]:
            ids.append(transaction_id)

    try:
        one_request()
        assert middleware.flush(timeout=30), middleware.stats()
        stats = middleware.stats()
        assert stats["dropped_unserializable"] == 0 and stats["failed"] == 0, stats
        events = module_collector.wait_for_events(len(ids), timeout=10)
        delivered = [event["transaction_id"] for event in events]
        assert len(delivered) == len(set(delivered))
        assert set(ids) <= set(delivered)
        assert len(module_collector.events()) == stats["sent"]
    finally:
        middleware.shutdown(timeout=1)
