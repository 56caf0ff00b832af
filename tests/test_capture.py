"""The capture layer on its own: the bounded capture, the request-body tee with the read styles
servers and frameworks use, and the exchange as the WSGI and ASGI request paths make it."""

from __future__ import annotations

import io
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from asgi_client import run_coroutine

from moesif_integrations.core.capture.asgi import (
    capture_request_body,
    exchange_from_scope,
    scope_path,
)
from moesif_integrations.core.capture.exchange import EXCHANGE_ENVIRON_KEY, Capture, Exchange
from moesif_integrations.core.capture.tees import BodyCapture, InputTee
from moesif_integrations.core.capture.wsgi import (
    _HEADER_KEYS_LIMIT,
    WsgiCapture,
    _HeaderKeys,
    environ_header_items,
)
from moesif_integrations.core.config.schema import Settings
from moesif_integrations.core.decide.decisions import NO_DECISIONS, Decisions
from moesif_integrations.core.record import ExchangeRecord


def test_capture_keeps_a_bounded_prefix_and_counts_everything() -> None:
    capture = BodyCapture(5)
    for chunk in (b"abc", b"defg", b"hij"):
        capture.add(chunk)
    assert capture.value() == b"abcde"
    assert capture.size == 10


def test_a_reused_buffer_is_copied_not_referenced() -> None:
    capture = BodyCapture(4)
    buffer = bytearray(b"wxyz12")
    capture.add(memoryview(buffer), reused=True)
    buffer[:] = b"000000"
    assert capture.value() == b"wxyz"
    assert capture.size == 6


def test_every_read_style_is_teed() -> None:
    body = b"line one\nline two\n" + bytes(range(256))
    for read in ("read", "read1", "readinto", "readline", "readlines", "iterate"):
        tee = InputTee(io.BufferedReader(io.BytesIO(body)), BodyCapture(10_000))  # type: ignore[arg-type]
        got = b""
        if read == "read":
            got = tee.read(7) + tee.read()
        elif read == "read1":
            while chunk := tee.read1(5):
                got += chunk
        elif read == "readinto":
            buffer = bytearray(13)
            while count := tee.readinto(buffer):
                got += bytes(buffer[:count])
        elif read == "readline":
            while line := tee.readline():
                got += line
        elif read == "readlines":
            got = b"".join(tee.readlines())
        else:
            got = b"".join(tee)
        assert got == body, read
        assert tee.capture.value() == body, read


def test_readinto_on_an_input_with_only_read() -> None:
    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self._data.read(size)

    tee = InputTee(ReadOnly(b"0123456789"), BodyCapture(4))  # type: ignore[arg-type]
    buffer = bytearray(6)
    assert tee.readinto(buffer) == 6 and bytes(buffer) == b"012345"
    assert tee.capture.value() == b"0123" and tee.capture.size == 6


def test_header_keys_are_remembered_boundedly() -> None:
    keys = _HeaderKeys()
    assert [keys[k] for k in ("HTTP_HOST", "CONTENT_TYPE", "CONTENT_LENGTH")] == [True] * 3
    assert [keys[k] for k in ("PATH_INFO", "wsgi.input", "HTTP")] == [False] * 3
    for n in range(_HEADER_KEYS_LIMIT + 10):
        assert keys[f"HTTP_X_{n}"]
    assert len(keys) == _HEADER_KEYS_LIMIT


def test_environ_header_items_keeps_headers_in_order() -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "HTTP_HOST": "example.com",
        "CONTENT_TYPE": "application/json",
        "wsgi.input": object(),
        "HTTP_X_ONE": "1",
        "CONTENT_LENGTH": "2",
        "SERVER_PORT": "80",
    }
    assert environ_header_items(environ) == [
        ("HTTP_HOST", "example.com"),
        ("CONTENT_TYPE", "application/json"),
        ("HTTP_X_ONE", "1"),
        ("CONTENT_LENGTH", "2"),
    ]


# ------------------------------------------------------------------ the exchange, WSGI and ASGI


class Sink:
    """A CaptureSink that keeps what it is given."""

    def __init__(self, **settings: Any) -> None:
        self.settings = Settings.load({"APPLICATION_ID": "test", **settings})
        self.submitted: List[ExchangeRecord] = []
        self.hook_calls: List[Tuple[str, Tuple[Any, ...]]] = []

    def call_hook(self, name: str, hook: Callable[..., Any], *args: Any) -> Any:
        self.hook_calls.append((name, args))
        return hook(*args)

    def capture_failed(self, where: str) -> None:
        raise AssertionError(f"capture failed in {where}")

    def skip(self) -> None:
        pass

    def decisions(self) -> Decisions:
        return NO_DECISIONS

    def sampled_out(self) -> None:
        raise AssertionError("nothing is sampled out here")

    def submit(self, record: ExchangeRecord) -> None:
        self.submitted.append(record)


def _environ(**extra: Any) -> Dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/app",
        "PATH_INFO": "/items",
        "QUERY_STRING": "a=1",
        "SERVER_NAME": "example.com",
        "SERVER_PORT": "8080",
        "REMOTE_ADDR": "203.0.113.7",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b"0123456789"),
        "CONTENT_LENGTH": "10",
    }
    environ.update(extra)
    return environ


def test_an_exchange_from_environ_notes_the_facts_and_tees_the_body() -> None:
    sink = Sink()
    environ = _environ(HTTP_X_MOESIF_TRANSACTION_ID="not-a-uuid", HTTP_X_ONE="1")
    exchange = WsgiCapture(sink).begin(environ, 1.5)
    assert exchange is not None and environ[EXCHANGE_ENVIRON_KEY] is exchange
    facts = (exchange.method, exchange.scheme, exchange.host, exchange.path, exchange.query)
    assert facts == ("POST", "http", "example.com:8080", "/app/items", "a=1")
    assert exchange.remote_addr == "203.0.113.7" and exchange.request_time == 1.5
    # The snapshot holds the client's id as it came; the app sees the exchange's.
    assert ("HTTP_X_MOESIF_TRANSACTION_ID", "not-a-uuid") in exchange.request_headers
    assert environ["HTTP_X_MOESIF_TRANSACTION_ID"] == exchange.transaction_id != "not-a-uuid"
    assert environ["wsgi.input"].read(4) == b"0123"
    exchange.status = 201
    exchange.finish()
    # The app read 4 bytes of 10: the record says 10, and keeps what was read.
    assert (exchange.request_body, exchange.request_body_size) == (b"0123", 10)
    assert sink.submitted == [exchange]
    assert EXCHANGE_ENVIRON_KEY not in environ and exchange.environ is None
    exchange.finish(error=True)  # once only
    assert sink.submitted == [exchange] and exchange.status == 201


def test_finish_never_reads_a_body_the_app_left_unread() -> None:
    environ = _environ()
    exchange = WsgiCapture(Sink()).begin(environ, 0.0)
    assert exchange is not None
    exchange.finish()
    assert exchange.request_body == b"" and exchange.status == 500  # no status
    assert exchange.request_body_size == 10  # as declared
    assert environ["wsgi.input"].read() == b"0123456789"  # still there, unread


def test_identify_runs_each_hook_once_with_the_arguments_given() -> None:
    def user(*args: Any) -> str:
        return "u-" + str(len(args))

    def metadata(*args: Any) -> Dict[str, Any]:
        return {"args": len(args), "route": args[0].route}

    sink = Sink(IDENTIFY_USER=user, IDENTIFY_COMPANY=lambda *args: 42, GET_METADATA=metadata)

    class RouteCapture(Capture):
        def framework_route(self, environ: Optional[Dict[str, Any]]) -> Optional[str]:
            return "/items/{id}"

    exchange = Exchange(RouteCapture(sink), 0.0, "GET", "http", "h", "/", "", [], False, None, None)
    exchange.identify((exchange,), ("a", "b", "c"))
    exchange.identify(("again",))
    assert [name for name, _args in sink.hook_calls] == [
        "IDENTIFY_USER",
        "IDENTIFY_COMPANY",
        "GET_METADATA",
    ]
    assert (exchange.user_id, exchange.company_id) == ("u-3", "42")
    # The route is noted before the hooks run: GET_METADATA sees it.
    assert exchange.metadata == {"args": 1, "route": "/items/{id}"}


def test_wsgi_hooks_get_moesifwsgis_arguments_when_the_exchange_identifies_itself() -> None:
    seen: Dict[str, Any] = {}

    def user(app: Any, environ: Dict[str, Any], response_headers: Dict[str, str]) -> str:
        seen["user"] = (app, response_headers, environ.get("moesif.request_body"))
        return "alice"

    def token(app: Any, environ: Dict[str, Any]) -> str:
        seen["token"] = app
        return "t"

    exchange = WsgiCapture(Sink(IDENTIFY_USER=user, GET_SESSION_TOKEN=token), "app").begin(
        _environ(CONTENT_TYPE="application/json", REMOTE_USER="bob"), 0.0
    )
    assert exchange is not None
    assert exchange.environ is not None
    exchange.environ["wsgi.input"].read()  # the app reads the body
    exchange.response_headers = [("Content-Type", "text/plain")]
    exchange.finish()
    assert seen["user"][:2] == ("app", {"Content-Type": "text/plain"})
    assert seen["user"][2] is not None  # the request body, as moesifwsgi puts it in environ
    assert seen["token"] == "app" and exchange.user_id == "alice"


def test_scope_facts() -> None:
    scope = {
        "path": "/caf\u00e9",
        "root_path": "/api",
        "query_string": b"q=1",
        "client": ("203.0.113.7", 5000),
        "headers": [(b"host", b"h"), (b"x-one", b"1")],
    }
    assert scope_path(scope) == "/api/caf\u00c3\u00a9"  # latin-1 view of the UTF-8 bytes
    assert scope_path({"path": "/api/x", "root_path": "/api"}) == "/api/x"  # not doubled
    assert scope_path({}) == "/"
    exchange = exchange_from_scope(Capture(Sink()), scope, 0.0, "GET", "https", "h", None)
    assert (exchange.query, exchange.remote_addr) == ("q=1", "203.0.113.7")
    assert exchange.request_headers == [(b"host", b"h"), (b"x-one", b"1")]
    assert not exchange.request_headers_cgi and exchange.environ is None


def _events(*chunks: bytes) -> List[Dict[str, Any]]:
    return [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ]


def _asgi_exchange(capture: Capture) -> Exchange:
    return exchange_from_scope(capture, {}, 0.0, "POST", "http", "h", None)


def test_asgi_body_whole_in_the_first_event_needs_no_tee() -> None:
    exchange = _asgi_exchange(Capture(Sink()))
    events = _events(b"whole")

    async def receive() -> Dict[str, Any]:
        return events.pop(0)

    assert capture_request_body(exchange, b"5", events.pop(0), receive) is None
    exchange.finish()
    assert (exchange.request_body, exchange.request_body_size) == (b"whole", 5)


@pytest.mark.parametrize("app_reads", [True, False])
def test_asgi_body_in_several_events_is_teed_only_as_the_app_pulls_it(app_reads: bool) -> None:
    """Read by the app: all of it; never pulled: the first event alone, nothing received after."""
    exchange = _asgi_exchange(Capture(Sink()))
    events = _events(b"one ", b"two ", b"three")

    async def receive() -> Dict[str, Any]:
        return events.pop(0) if events else {"type": "http.disconnect"}

    tee = capture_request_body(exchange, "13", events.pop(0), receive)
    assert tee is not None and exchange.tee is tee

    async def serve() -> None:
        if app_reads:
            while (await tee())["more_body"]:
                pass

    run_coroutine(serve())
    exchange.finish()
    expected = b"one two three" if app_reads else b"one "
    assert (exchange.request_body, exchange.request_body_size) == (expected, 13)
    assert len(events) == (0 if app_reads else 2)
