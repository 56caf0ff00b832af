"""The Falcon middleware's own idioms, WSGI and ASGI: in-process through Falcon's test client,
and end to end under gunicorn and uvicorn, delivering to the local collector over HTTP."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import time
import uuid
import wsgiref.util
from datetime import datetime
from typing import Any, AsyncIterator, Dict, Iterator, List

import pytest

pytest.importorskip("falcon")

import falcon  # noqa: E402
import falcon.asgi  # noqa: E402
import falcon.testing  # noqa: E402
import requests  # noqa: E402
from asgi_client import call_asgi  # noqa: E402
from harness import shut_down_after_test  # noqa: E402
from servers import ROOT_DIR, serve  # noqa: E402

from moesif_integrations.core.capture.tees import InputTee  # noqa: E402
from moesif_integrations.core.config.schema import ConfigurationError  # noqa: E402
from moesif_integrations.falcon import MoesifMiddleware  # noqa: E402
from moesif_integrations.falcon.request import begin_asgi  # noqa: E402

EXAMPLE_DIR = os.path.join(ROOT_DIR, "examples", "falcon")
FLAVOURS = ["wsgi", "asgi"]
APP_ID = "falcon-test-app"  # in the settings of the ``base`` fixture (conftest.py)


def moesif(settings: Dict[str, Any], **options: Any) -> MoesifMiddleware:
    return shut_down_after_test(MoesifMiddleware(settings, **options))


def make_app(flavour: str, middleware: List[Any], routes: Dict[str, Any]) -> Any:
    app = (
        falcon.asgi.App(middleware=middleware)
        if flavour == "asgi"
        else falcon.App(middleware=middleware)
    )
    for path, resource in routes.items():
        app.add_route(path, resource)
    return app


def deliver(middleware: MoesifMiddleware, collector: Any, count: int = 1) -> List[Dict[str, Any]]:
    assert middleware.flush(timeout=10), middleware.stats()
    events = collector.wait_for_events(count, timeout=5)
    assert len(events) == count, [event["request"]["uri"] for event in events]
    return events


# ------------------------------------------------------------------ request bodies


class WsgiEcho:
    """Reads the body one of the ways Falcon offers, chosen by the ``how`` query parameter."""

    def on_post(self, req: Any, resp: Any) -> None:
        how = req.get_param("how")
        if how == "media":
            received = req.media
        elif how == "get_media":
            received = req.get_media()
        elif how == "bounded_stream":
            received = json.load(req.bounded_stream)
        else:
            received = json.loads(req.stream.read(req.content_length))
        resp.media = {"received": received}


class AsgiEcho:
    async def on_post(self, req: Any, resp: Any) -> None:
        how = req.get_param("how")
        if how == "get_media":
            received = await req.get_media()
        elif how == "stream":
            received = json.loads(await req.stream.read())
        else:
            received = json.loads(b"".join([chunk async for chunk in req.stream]))
        resp.media = {"received": received}


READERS = [
    ("wsgi", "media"),
    ("wsgi", "get_media"),
    ("wsgi", "bounded_stream"),
    ("wsgi", "stream"),
    ("asgi", "get_media"),
    ("asgi", "stream"),
    ("asgi", "iterate"),
]


@pytest.mark.parametrize("flavour, how", READERS)
def test_the_resource_still_reads_the_body(
    flavour: str, how: str, base: Dict[str, Any], collector: Any
) -> None:
    middleware = moesif(base)
    echo = AsgiEcho() if flavour == "asgi" else WsgiEcho()
    client = falcon.testing.TestClient(make_app(flavour, [middleware], {"/echo": echo}))
    payload = {"name": "widget", "tags": ["a", "b"], "text": "é" * 50}
    result = client.simulate_post("/echo", params={"how": how}, json=payload)
    assert result.status_code == 200 and result.json == {"received": payload}
    (event,) = deliver(middleware, collector)
    assert event["request"]["body"] == payload
    assert event["response"]["body"] == {"received": payload}


class WsgiIgnoresBody:
    def on_post(self, req: Any, resp: Any) -> None:
        resp.media = {"ok": True}


class AsgiIgnoresBody:
    async def on_post(self, req: Any, resp: Any) -> None:
        resp.media = {"ok": True}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_body_the_resource_never_read_is_not_read_for_the_capture(
    flavour: str, base: Dict[str, Any], collector: Any
) -> None:
    middleware = moesif(base)
    resource = AsgiIgnoresBody() if flavour == "asgi" else WsgiIgnoresBody()
    client = falcon.testing.TestClient(make_app(flavour, [middleware], {"/ignore": resource}))
    assert client.simulate_post("/ignore", json={"unread": 1}).json == {"ok": True}
    (event,) = deliver(middleware, collector)
    assert "body" not in event["request"]


class WsgiRawReader:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"ok": True}

    def on_post(self, req: Any, resp: Any) -> None:
        resp.media = {"size": len(req.stream.read())}


def _call_wsgi(app: Any, environ: Dict[str, Any]) -> bytes:
    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return lambda data: None

    return b"".join(app(environ, start_response))


def test_wsgi_tees_only_requests_that_may_have_a_body(base: Dict[str, Any], collector: Any) -> None:
    """No Content-Length and no Transfer-Encoding: no body, no tee. A chunked upload names
    itself with Transfer-Encoding and is teed like any other."""
    middleware = moesif(base)
    app = make_app("wsgi", [middleware], {"/raw": WsgiRawReader()})
    environ = falcon.testing.create_environ("/raw", method="GET")
    environ.pop("CONTENT_LENGTH", None)
    assert json.loads(_call_wsgi(app, environ)) == {"ok": True}
    assert not isinstance(environ["wsgi.input"], InputTee)
    chunked = falcon.testing.create_environ(
        "/raw", method="POST", headers={"Content-Type": "application/octet-stream"}
    )
    chunked.pop("CONTENT_LENGTH", None)
    chunked["HTTP_TRANSFER_ENCODING"] = "chunked"
    chunked["wsgi.input"] = io.BytesIO(b"abc" * 10)
    assert json.loads(_call_wsgi(app, chunked)) == {"size": 30}
    get, post = sorted(deliver(middleware, collector, 2), key=lambda e: e["request"]["verb"])
    assert "body" not in get["request"]
    assert base64.b64decode(post["request"]["body"]) == b"abc" * 10


def _call_asgi(app: Any, method: str, chunks: List[bytes]) -> Dict[str, Any]:
    """One JSON request to /ignore whose body comes in ``chunks`` (one ASGI event each)."""
    length = str(len(b"".join(chunks))).encode()
    headers = [
        (b"host", b"falcon.test"),
        (b"content-type", b"application/json"),
        (b"content-length", length),
    ]
    return call_asgi(app, method, "/ignore", chunks, headers)


def test_asgi_request_bodies_whole_or_in_several_events(
    base: Dict[str, Any], collector: Any
) -> None:
    """A body that came whole in the first event is kept as it is; of one that comes in several
    events the resource never read, only the first event (nothing is received for the capture
    alone: a body that never comes must not delay the response)."""
    middleware = moesif(base, REQUEST_MAX_BODY_SIZE=40)
    app = make_app("asgi", [middleware], {"/ignore": AsgiIgnoresBody()})
    whole = json.dumps({"whole": 1}).encode()
    split = [b'{"in": ', b'"three", ', b'"parts": 3}']
    too_long = json.dumps({"text": "x" * 50}).encode()
    for chunks in ([whole], split, [too_long]):
        assert json.loads(_call_asgi(app, "POST", chunks)["body"]) == {"ok": True}
    events = deliver(middleware, collector, 3)
    bodies = sorted((event["request"]["body"] for event in events), key=str)
    marker = next(body for body in bodies if "moesif_body_truncated" in body)
    assert marker["size"] == len(too_long) and marker["limit"] == 40
    assert {"whole": 1} in bodies and base64.b64decode(bodies[0]) == split[0]


class _PlainAsgiRequest:
    """An ASGI request without Falcon's private parsed headers: its public API is used."""

    method = "POST"
    scheme = "http"
    netloc = "falcon.test"
    scope = {"path": "/plain", "query_string": b"a=1", "client": ("203.0.113.7", 1)}
    headers = {"content-length": "2", "x-moesif-transaction-id": "not-a-uuid"}
    _first_event = {"type": "http.request", "body": b"{}", "more_body": False}

    def get_header(self, name: str) -> Any:
        return self.headers.get(name.lower())


def test_asgi_requests_without_falcons_parsed_headers(base: Dict[str, Any]) -> None:
    capture = moesif(base)._capture
    assert capture is not None
    resp = falcon.asgi.Response()
    exchange = begin_asgi(capture, _PlainAsgiRequest(), resp)
    assert exchange is not None
    assert exchange.request_headers == list(_PlainAsgiRequest.headers.items())
    assert (exchange.path, exchange.query, exchange.remote_addr) == ("/plain", "a=1", "203.0.113.7")
    assert exchange.declared_length == 2 and exchange.request_capture is not None
    assert exchange.request_capture.value() == b"{}" and exchange.tee is None
    assert exchange.transaction_id != "not-a-uuid"
    assert resp.get_header("X-Moesif-Transaction-Id") == exchange.transaction_id


# ------------------------------------------------------------------ transaction id


class WsgiTransaction:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"seen": req.get_header("X-Moesif-Transaction-Id")}


class AsgiTransaction:
    async def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"seen": req.get_header("X-Moesif-Transaction-Id")}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_transaction_id_header(flavour: str, base: Dict[str, Any], collector: Any) -> None:
    middleware = moesif(base)
    resource = AsgiTransaction() if flavour == "asgi" else WsgiTransaction()
    client = falcon.testing.TestClient(make_app(flavour, [middleware], {"/tx": resource}))
    own = str(uuid.uuid4())
    reused = client.simulate_get("/tx", headers={"X-Moesif-Transaction-Id": own})
    replaced = client.simulate_get("/tx", headers={"X-Moesif-Transaction-Id": "not-a-uuid"})
    assert reused.headers["X-Moesif-Transaction-Id"] == own == reused.json["seen"]
    new_id = replaced.headers["X-Moesif-Transaction-Id"]
    assert uuid.UUID(new_id) and new_id != "not-a-uuid"
    # The resource and the event see the id the response carries.
    assert replaced.json["seen"] == new_id
    events = {event["transaction_id"]: event for event in deliver(middleware, collector, 2)}
    assert set(events) == {own, new_id}
    assert events[new_id]["request"]["headers"]["X-Moesif-Transaction-Id"] == new_id
    missing = client.simulate_get("/nowhere")
    assert missing.status_code == 404 and uuid.UUID(missing.headers["X-Moesif-Transaction-Id"])


# ------------------------------------------------------------------ hooks and errors


def show_order(req: Any, resp: Any, order_id: str) -> None:
    if order_id == "missing":
        raise falcon.HTTPNotFound(title="no such order")
    req.context.user = "user-" + order_id
    resp.media = {"id": order_id, "lines": [1, 2, 3]}


class WsgiOrders:
    def on_get(self, req: Any, resp: Any, order_id: str) -> None:
        show_order(req, resp, order_id)


class AsgiOrders:
    async def on_get(self, req: Any, resp: Any, order_id: str) -> None:
        show_order(req, resp, order_id)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_hooks_receive_falcons_req_and_resp(
    flavour: str, base: Dict[str, Any], collector: Any
) -> None:
    skipped: List[str] = []

    def skip(req: Any, resp: Any) -> bool:
        skipped.append(req.path)
        return req.path == "/orders/secret"

    middleware = moesif(
        base,
        SKIP=skip,
        IDENTIFY_USER=lambda req, resp: req.context.get("user"),
        IDENTIFY_COMPANY=lambda req, resp: req.get_header("X-Team"),
        GET_SESSION_TOKEN=lambda req, resp: req.get_param("session"),
        GET_METADATA=lambda req, resp: {
            "route": req.uri_template,
            "lines": len(resp.media["lines"]),
        },
    )
    resource = AsgiOrders() if flavour == "asgi" else WsgiOrders()
    client = falcon.testing.TestClient(
        make_app(flavour, [middleware], {"/orders/{order_id}": resource})
    )
    client.simulate_get("/orders/secret")
    client.simulate_get("/orders/7", params={"session": "s-1"}, headers={"X-Team": "blue"})
    (event,) = deliver(middleware, collector)
    assert skipped == ["/orders/secret", "/orders/7"]
    assert event["user_id"] == "user-7" and event["company_id"] == "blue"
    assert event["session_token"] == "s-1"
    assert event["metadata"] == {"route": "/orders/{order_id}", "lines": 3}
    assert middleware.stats()["skipped"] == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_http_error_is_recorded_with_its_status_and_body(
    flavour: str, base: Dict[str, Any], collector: Any
) -> None:
    middleware = moesif(base)
    resource = AsgiOrders() if flavour == "asgi" else WsgiOrders()
    client = falcon.testing.TestClient(
        make_app(flavour, [middleware], {"/orders/{order_id}": resource})
    )
    result = client.simulate_get("/orders/missing")
    assert result.status_code == 404
    (event,) = deliver(middleware, collector)
    assert event["response"]["status"] == 404
    assert event["response"]["body"]["title"] == "no such order"
    assert event["transaction_id"] == result.headers["X-Moesif-Transaction-Id"]


class StampsResponses:
    """A middleware listed after Moesif: its process_response runs first."""

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        resp.set_header("X-Stamp", "late")
        resp.media = {"stamped": True}


class WsgiPlain:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"stamped": False}

    on_head = on_get  # Falcon renders the body, then sends none


def test_moesif_first_sees_the_final_response(base: Dict[str, Any], collector: Any) -> None:
    middleware = moesif(base)
    client = falcon.testing.TestClient(
        make_app("wsgi", [middleware, StampsResponses()], {"/plain": WsgiPlain()})
    )
    assert client.simulate_get("/plain").json == {"stamped": True}
    (event,) = deliver(middleware, collector)
    assert event["response"]["body"] == {"stamped": True}
    assert event["response"]["headers"]["x-stamp"] == "late"


def test_head_is_recorded_without_a_body(base: Dict[str, Any], collector: Any) -> None:
    middleware = moesif(base)
    client = falcon.testing.TestClient(make_app("wsgi", [middleware], {"/plain": WsgiPlain()}))
    assert client.simulate_head("/plain").status_code == 200
    (event,) = deliver(middleware, collector)
    assert event["request"]["verb"] == "HEAD" and "body" not in event["response"]


# ------------------------------------------------------------------ response streams


class WsgiFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def on_get(self, req: Any, resp: Any) -> None:
        resp.content_type = "application/octet-stream"
        if req.get_param("real"):
            resp.stream = open(self.path, "rb")  # noqa: SIM115 (Falcon closes it)
        else:
            resp.stream = io.BytesIO(b"in memory " * 10)


def test_wsgi_file_like_streams(base: Dict[str, Any], collector: Any, tmp_path: Any) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"on disk " * 10)
    middleware = moesif(base)
    client = falcon.testing.TestClient(
        make_app("wsgi", [middleware], {"/file": WsgiFile(str(path))})
    )
    assert client.simulate_get("/file").content == b"in memory " * 10
    # A real file under a server with wsgi.file_wrapper stays a file (sendfile), uncaptured.
    extras = {"wsgi.file_wrapper": wsgiref.util.FileWrapper}
    assert client.simulate_get("/file", params={"real": 1}, extras=extras).content == (
        b"on disk " * 10
    )
    in_memory, on_disk = sorted(
        deliver(middleware, collector, 2), key=lambda e: e["request"]["uri"]
    )
    assert in_memory["response"]["body"] == _b64(b"in memory " * 10)
    assert on_disk["response"]["status"] == 200 and "body" not in on_disk["response"]


class WsgiFailingStream:
    def on_get(self, req: Any, resp: Any) -> None:
        def chunks() -> Iterator[bytes]:
            yield b"partial"
            raise OSError("disk gone")

        resp.stream = chunks()


def test_a_stream_that_fails_is_recorded_as_500(base: Dict[str, Any], collector: Any) -> None:
    middleware = moesif(base)
    app = make_app("wsgi", [middleware], {"/fails": WsgiFailingStream()})
    body = app(falcon.testing.create_environ("/fails"), falcon.testing.StartResponseMock())
    iterator = iter(body)
    assert next(iterator) == b"partial"
    with pytest.raises(OSError):
        next(iterator)
    body.close()
    (event,) = deliver(middleware, collector)
    assert event["response"]["status"] == 500


class AsyncFile:
    """What aiofiles gives: an awaitable read() and close()."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)
        self.closed = False

    async def read(self, size: int = -1) -> bytes:
        return self.data.read(size)

    async def close(self) -> None:
        self.closed = True


class AsgiStreams:
    def __init__(self) -> None:
        self.files: List[AsyncFile] = []

    async def on_get(self, req: Any, resp: Any, kind: str) -> None:
        if kind == "file":
            self.files.append(AsyncFile(b"async file " * 10))
            resp.stream = self.files[-1]
        elif kind == "sse":

            async def events() -> AsyncIterator[Any]:
                for number in range(2):
                    yield falcon.asgi.SSEvent(data=f"tick {number}".encode())

            resp.sse = events()
        else:

            async def chunks() -> AsyncIterator[bytes]:
                for number in range(3):
                    yield b"chunk %d\n" % number

            resp.stream = chunks()


def test_asgi_streams(base: Dict[str, Any], collector: Any) -> None:
    middleware = moesif(base)
    resource = AsgiStreams()
    client = falcon.testing.TestClient(
        make_app("asgi", [middleware], {"/streams/{kind}": resource})
    )
    assert client.simulate_get("/streams/file").content == b"async file " * 10
    assert resource.files[0].closed
    assert client.simulate_get("/streams/generator").content == b"chunk 0\nchunk 1\nchunk 2\n"
    assert b"tick 1" in client.simulate_get("/streams/sse").content
    by_path = {
        event["request"]["uri"].rsplit("/", 1)[1]: event
        for event in deliver(middleware, collector, 3)
    }
    assert by_path["file"]["response"]["body"] == _b64(b"async file " * 10)
    assert by_path["generator"]["response"]["body"] == _b64(b"chunk 0\nchunk 1\nchunk 2\n")
    # Falcon never closes an SSE emitter: the event is recorded when the stream starts.
    assert by_path["sse"]["response"]["headers"]["content-type"] == "text/event-stream"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ------------------------------------------------------------------ settings


def test_settings_dict_options_and_environment(
    base: Dict[str, Any], collector: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("MOESIF_API_VERSION", "2.1")
    middleware = moesif(base, LOG_BODY=False)
    assert middleware.settings.log_body is False and middleware.settings.api_version == "2.1"
    client = falcon.testing.TestClient(make_app("wsgi", [middleware], {"/plain": WsgiPlain()}))
    client.simulate_get("/plain")
    (event,) = deliver(middleware, collector)
    assert "body" not in event["response"] and event["request"]["api_version"] == "2.1"
    with pytest.raises(ConfigurationError, match="LOG_BODY"):
        MoesifMiddleware(base, LOG_BODDY=False)


def test_disabled_middleware_does_nothing(base: Dict[str, Any], collector: Any) -> None:
    middleware = moesif(base, ENABLED=False)
    client = falcon.testing.TestClient(make_app("asgi", [middleware], {"/echo": AsgiEcho()}))
    result = client.simulate_post("/echo", params={"how": "get_media"}, json={"a": 1})
    assert result.json == {"received": {"a": 1}}
    assert "X-Moesif-Transaction-Id" not in result.headers
    assert middleware.stats() == {} and collector.event_count() == 0


# ------------------------------------------------------------------ real servers


def needs(*modules: str) -> Any:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


def _example_env(collector: Any, **extra: str) -> Dict[str, str]:
    env = {
        "MOESIF_APPLICATION_ID": "falcon-example",
        "MOESIF_BASE_URI": collector.url,
        "MOESIF_EVENT_BATCH_TIMEOUT": "0.1",
    }
    env.update(extra)
    return env


def _exercise_bookshelf(url: str, rounds: int) -> int:
    """Calls the example API; returns how many calls should become events (/health is skipped)."""
    calls = 0
    for number in range(rounds):
        key = "key-ada" if number % 2 == 0 else "key-grace"
        headers = {"X-Api-Key": key}
        assert requests.get(f"{url}/books", headers=headers, timeout=10).status_code == 200
        created = requests.post(
            f"{url}/books", json={"title": f"book {number}"}, headers=headers, timeout=10
        )
        assert created.status_code == 201
        book = requests.get(f"{url}/books/{created.json()['id']}", headers=headers, timeout=10)
        assert book.json()["title"] == f"book {number}"
        assert requests.get(f"{url}/health", timeout=10).json() == {"ok": True}
        calls += 3
    assert requests.get(f"{url}/books", timeout=10).status_code == 401
    return calls + 1


@pytest.mark.parametrize(
    "server, target",
    [
        pytest.param("gunicorn", "app:app", marks=needs("gunicorn")),
        pytest.param("uvicorn", "asgi_app:app", marks=needs("uvicorn")),
    ],
)
def test_example_app_under_a_real_server(server: str, target: str, collector: Any) -> None:
    with serve(server, target, _example_env(collector), cwd=EXAMPLE_DIR) as served:
        expected = _exercise_bookshelf(served.url, rounds=5)
        events = collector.wait_for_events(expected, timeout=15)
        assert len(events) == expected, served.output()
    users = {(event["user_id"], event["company_id"]) for event in events}
    assert users == {("ada", "analytical-engines"), ("grace", "cobol-inc"), (None, None)}
    assert not any(event["request"]["uri"].endswith("/health") for event in events)
    posts = [event for event in events if event["request"]["verb"] == "POST"]
    assert len(posts) == 5 and all(event["response"]["status"] == 201 for event in posts)
    assert posts[0]["request"]["body"] == {"title": "book 0"}
    assert len({event["transaction_id"] for event in events}) == expected


@needs("uvicorn")
def test_uvicorn_streams_an_async_generator_unbuffered(collector: Any) -> None:
    pause = 1.0
    with serve("uvicorn", "asgi_app:app", _example_env(collector), cwd=EXAMPLE_DIR) as served:
        started = time.monotonic()
        with requests.get(
            f"{served.url}/books/export",
            params={"pause": pause},
            stream=True,
            headers={"X-Api-Key": "key-ada"},
            timeout=10,
        ) as reply:
            chunks = reply.iter_content(chunk_size=None)
            first = next(chunks)
            first_arrived = time.monotonic() - started
            rest = b"".join(chunks)
        total = time.monotonic() - started
        (event,) = collector.wait_for_events(1, timeout=10)
    assert first.startswith(b'{"id": 1')
    # The first line comes at once; the second only after the generator's pause.
    assert first_arrived < pause * 0.8 <= total
    assert len((first + rest).splitlines()) == 2
    assert event["response"]["body"] == _b64(first + rest)
    # The event is finished at the last byte, not when the resource returned.
    assert _seconds(event["response"]["time"]) - _seconds(event["request"]["time"]) >= pause * 0.9


def _seconds(stamp: str) -> float:
    return datetime.strptime(stamp.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").timestamp()


@needs("uvicorn")
def test_stopping_uvicorn_delivers_what_is_queued(collector: Any) -> None:
    # Batches would wait a minute: only the lifespan shutdown's flush (or the exit's) sends them.
    env = _example_env(collector, MOESIF_EVENT_BATCH_TIMEOUT="60")
    with serve("uvicorn", "asgi_app:app", env, cwd=EXAMPLE_DIR) as served:
        for _ in range(3):
            requests.get(f"{served.url}/books", headers={"X-Api-Key": "key-ada"}, timeout=10)
        assert collector.event_count() == 0
        served.stop()
        assert served.exit_seconds is not None and served.exit_seconds < 10
    assert len(collector.wait_for_events(3, timeout=5)) == 3
