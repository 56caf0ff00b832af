"""The private attributes of Falcon that the Falcon adapter touches, pinned on the installed Falcon.

No public API does their job: ``req._asgi_headers`` is where the app reads the request headers
(the adapter puts the transaction id there), ``req._first_event`` holds the body's first event,
already received, ``req._receive`` is what ``req.stream`` will read the rest from, ``req._stream``
says whether anything read the body yet, and ``resp._wsgi_headers`` renders the headers Falcon
sends, Set-Cookie included. Each test states the shape the adapter relies on, so that tox's lowest
and latest Falcon environments each check their release.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, List

import pytest

pytest.importorskip("falcon")

import falcon  # noqa: E402
import falcon.asgi  # noqa: E402
import falcon.testing  # noqa: E402
from asgi_client import call_asgi  # noqa: E402

Seen = Dict[str, Any]


class _Probe:
    """Middleware placed where the Moesif middleware goes (first): notes what it finds."""

    def __init__(self, seen: Seen, before: Callable[[Any], None] = lambda req: None) -> None:
        self.seen = seen
        self.before = before

    async def process_request(self, req: Any, resp: Any) -> None:
        self.seen["asgi_headers"] = req._asgi_headers
        self.seen["first_event"] = req._first_event
        self.seen["stream_before"] = req._stream
        self.seen["receive"] = req._receive
        self.before(req)

    async def process_response(self, req: Any, resp: Any, resource: Any, ok: bool) -> None:
        self.seen["stream_after"] = req._stream


class _Echo:
    async def on_post(self, req: Any, resp: Any) -> None:
        body = await req.stream.read()
        resp.set_cookie("session", "abc")
        resp.media = {
            "size": len(body),
            "transaction": req.get_header("X-Moesif-Transaction-Id"),
        }


def _call(app: Any, chunks: List[bytes], headers: List[Any]) -> Dict[str, Any]:
    return call_asgi(app, "POST", "/echo", chunks, headers)


def _asgi_app(probe: _Probe) -> Any:
    app = falcon.asgi.App(middleware=[probe])
    app.add_route("/echo", _Echo())
    return app


HEADERS = [(b"host", b"falcon.test"), (b"content-length", b"10"), (b"x-one", b"1")]


def test_asgi_headers_are_the_parsed_request_headers_the_app_reads() -> None:
    def note_id(req: Any) -> None:
        req._asgi_headers[b"x-moesif-transaction-id"] = b"from-the-middleware"

    seen: Seen = {}
    reply = _call(_asgi_app(_Probe(seen, note_id)), [b"0123456789"], HEADERS)
    parsed = seen["asgi_headers"]
    assert isinstance(parsed, dict)
    assert parsed[b"host"] == b"falcon.test" and parsed[b"content-length"] == b"10"
    assert all(type(k) is bytes and type(v) is bytes for k, v in parsed.items())
    # What the middleware writes there is what the app reads.
    assert b'"transaction": "from-the-middleware"' in reply["body"]


def test_first_event_is_the_body_event_received_before_the_middleware() -> None:
    seen: Seen = {}
    _call(_asgi_app(_Probe(seen)), [b"01234", b"56789"], HEADERS)
    first = seen["first_event"]
    assert isinstance(first, dict)
    assert first["type"] == "http.request"
    assert first["body"] == b"01234" and first["more_body"] is True


def test_stream_is_none_until_the_app_reads_the_body() -> None:
    seen: Seen = {}
    reply = _call(_asgi_app(_Probe(seen)), [b"0123456789"], HEADERS)
    assert b'"size": 10' in reply["body"]
    assert seen["stream_before"] is None
    assert seen["stream_after"] is not None


def test_receive_is_what_the_stream_reads_the_rest_of_the_body_from() -> None:
    pulled: List[Dict[str, Any]] = []

    def tee_receive(req: Any) -> None:
        receive: Callable[[], Awaitable[Dict[str, Any]]] = req._receive

        async def teed() -> Dict[str, Any]:
            event = await receive()
            pulled.append(event)
            return event

        req._receive = teed

    seen: Seen = {}
    reply = _call(_asgi_app(_Probe(seen, tee_receive)), [b"01234", b"56789"], HEADERS)
    assert callable(seen["receive"])
    assert b'"size": 10' in reply["body"]
    # The first event came from Falcon's own hands; the rest through the replaced receive.
    assert [event.get("body") for event in pulled] == [b"56789"]


class _Cookie:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.set_cookie("session", "abc")
        resp.append_header("X-Two", "2")
        resp.text = "ok"


class _AsyncCookie:
    async def on_get(self, req: Any, resp: Any) -> None:
        _Cookie().on_get(req, resp)


class _HeadersProbe:
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def process_response(self, req: Any, resp: Any, resource: Any, ok: bool) -> None:
        self.seen["wsgi_headers"] = resp._wsgi_headers(None)


class _AsyncHeadersProbe:
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def process_response(self, req: Any, resp: Any, resource: Any, ok: bool) -> None:
        self.seen["wsgi_headers"] = resp._wsgi_headers(None)


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_wsgi_headers_renders_the_headers_falcon_sends(flavour: str) -> None:
    seen: Seen = {}
    if flavour == "asgi":
        app: Any = falcon.asgi.App(middleware=[_AsyncHeadersProbe(seen)])
        app.add_route("/cookie", _AsyncCookie())
    else:
        app = falcon.App(middleware=[_HeadersProbe(seen)])
        app.add_route("/cookie", _Cookie())
    result = falcon.testing.TestClient(app).simulate_get("/cookie")
    assert result.status_code == 200
    headers = seen["wsgi_headers"]
    assert isinstance(headers, list)
    assert all(type(k) is str and type(v) is str for k, v in headers)
    names = [name for name, _value in headers]
    assert names == [name.lower() for name in names]  # Falcon keeps names lower-case
    assert ("x-two", "2") in headers
    assert any(name == "set-cookie" and value.startswith("session=abc") for name, value in headers)
