"""The generic WSGI middleware, called in-process, delivering to the local collector over HTTP."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List

import pytest
from wsgi_client import call, make_environ

from moesif_integrations import ConfigurationError, MoesifMiddleware
from moesif_integrations.wsgi import MoesifMiddleware as MiddlewareFromModule

APP_ID = "test-app-id-0123456789"


@pytest.fixture
def wrap(middlewares: Callable[..., MoesifMiddleware]) -> Callable[..., MoesifMiddleware]:
    def factory(app: Any, **settings: Any) -> MoesifMiddleware:
        return middlewares(app, APP_ID, **settings)

    return factory


def deliver(middleware: MoesifMiddleware, collector: Any, count: int = 1) -> List[Dict[str, Any]]:
    assert middleware.flush(timeout=10), middleware.stats()
    return collector.wait_for_events(count, timeout=5)


def json_app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
    length = environ.get("CONTENT_LENGTH") or ""
    received = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""
    body = json.dumps({"ok": True, "echo": received.decode("utf-8", "replace")}).encode()
    start_response(
        "201 Created",
        [("Content-Type", "application/json"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
    )
    return [body]


def test_same_class_from_package_and_module() -> None:
    assert MoesifMiddleware is MiddlewareFromModule


def test_json_exchange_becomes_one_event(wrap: Any, collector: Any) -> None:
    app = wrap(json_app, API_VERSION="1.2.3")
    before = time.time()
    result = call(
        app,
        "POST",
        "/items/5",
        body=b'{"a": 1}',
        query="x=1&y=2",
        headers={"Content-Type": "application/json", "X-Custom": "v"},
    )
    assert result.status_code == 201
    tid = result.header("X-Moesif-Transaction-Id")
    assert tid and uuid.UUID(tid).version == 4
    (event,) = deliver(app, collector)
    request, response = event["request"], event["response"]
    assert request["uri"] == "http://api.example.com/items/5?x=1&y=2"
    assert request["verb"] == "POST"
    assert request["api_version"] == "1.2.3"
    assert request["ip_address"] == "203.0.113.9"
    assert request["body"] == {"a": 1}
    assert request["transfer_encoding"] == "json"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Custom"] == "v"
    assert request["headers"]["X-Moesif-Transaction-Id"] == tid
    assert response["status"] == 201
    assert response["body"] == {"ok": True, "echo": '{"a": 1}'}
    assert response["headers"]["Set-Cookie"].count("<masked:") == 2  # both cookies, joined
    assert event["transaction_id"] == tid
    assert event["direction"] == "Incoming"
    assert event["weight"] == 1
    assert event["blocked_by"] is None
    start = time.strptime(request["time"][:19], "%Y-%m-%dT%H:%M:%S")
    assert abs(time.mktime(start) - time.timezone - before) < 5  # UTC, around now
    assert response["time"] >= request["time"]
    stats = app.stats()
    assert stats["captured"] == 1 and stats["sent"] == 1 and stats["queued"] == 0


def test_response_is_unchanged_but_for_the_transaction_header(wrap: Any) -> None:
    bare = call(json_app, "POST", "/x", body=b"hello")
    wrapped = call(wrap(json_app), "POST", "/x", body=b"hello")
    assert wrapped.status == bare.status
    assert wrapped.body == bare.body
    extra = [h for h in wrapped.headers if h not in bare.headers]
    assert [name for name, _ in extra] == ["X-Moesif-Transaction-Id"]
    no_id = call(wrap(json_app, DISABLED_TRANSACTION_ID=True), "POST", "/x", body=b"hello")
    assert no_id.headers == bare.headers


def test_a_list_body_goes_back_as_the_very_same_list(wrap: Any, collector: Any) -> None:
    bodies: List[List[Any]] = []

    def list_app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[Any]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        bodies.append([b"one ", b"two"] if len(bodies) == 0 else [b"ok", None])
        return bodies[-1]

    app = wrap(list_app)
    environ = make_environ("GET", "/list")
    assert app(environ, lambda status, headers, exc_info=None: None) is bodies[0]
    # A body the server will refuse (None is not bytes) still goes back untouched: the capture
    # does not raise, it counts the failure and the event keeps what came before.
    assert app(make_environ("GET", "/odd"), lambda *args: None) is bodies[1]
    events = deliver(app, collector, 2)
    by_path = {event["request"]["uri"].rsplit("/", 1)[1]: event for event in events}
    assert base64.b64decode(by_path["list"]["response"]["body"]) == b"one two"
    assert base64.b64decode(by_path["odd"]["response"]["body"]) == b"ok"
    assert app.stats()["capture_errors"] == 1


def test_client_transaction_id_reused_only_when_uuid(wrap: Any, collector: Any) -> None:
    app = wrap(json_app)
    given = str(uuid.uuid4())
    assert (
        call(app, headers={"X-Moesif-Transaction-Id": given}).header("X-Moesif-Transaction-Id")
        == given
    )
    forged = call(app, headers={"X-Moesif-Transaction-Id": "'; drop table"})
    assert forged.header("X-Moesif-Transaction-Id") != "'; drop table"
    events = deliver(app, collector, 2)
    assert {e["transaction_id"] for e in events} == {
        given,
        forged.header("X-Moesif-Transaction-Id"),
    }


def test_body_the_app_never_read_is_not_read_for_the_capture(wrap: Any, collector: Any) -> None:
    def ignoring_app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fine"]

    app = wrap(ignoring_app)
    call(app, "POST", "/", body=b'{"unread": true}', headers={"Content-Type": "application/json"})
    (event,) = deliver(app, collector)
    assert "body" not in event["request"]
    assert event["response"]["body"] == base64.b64encode(b"fine").decode()
    assert event["response"]["transfer_encoding"] == "base64"


def test_chunked_upload_is_captured(wrap: Any, collector: Any) -> None:
    def reading_app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        data = b"".join(iter(lambda: environ["wsgi.input"].read(3), b""))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [str(len(data)).encode()]

    app = wrap(reading_app)
    payload = bytes(range(256)) * 4
    env = make_environ(
        "PUT", "/upload", payload, chunked=True, headers={"Transfer-Encoding": "chunked"}
    )
    assert "CONTENT_LENGTH" not in env
    assert call(app, environ=env).body == b"1024"
    (event,) = deliver(app, collector)
    assert base64.b64decode(event["request"]["body"]) == payload


def test_bodies_over_the_limit_become_a_marker(wrap: Any, collector: Any) -> None:
    big = b"x" * 5000

    def big_app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"data": "', big, b'"}']

    app = wrap(big_app, REQUEST_MAX_BODY_SIZE=1000, RESPONSE_MAX_BODY_SIZE=1000)
    result = call(
        app,
        "POST",
        "/",
        body=b"[" + b"1," * 3000 + b"1]",
        headers={"Content-Type": "application/json"},
    )
    assert len(result.body) == 5012  # the client still gets everything
    (event,) = deliver(app, collector)
    response_marker = event["response"]["body"]
    assert response_marker["moesif_body_truncated"] is True
    assert response_marker["size"] == 5012 and response_marker["limit"] == 1000
    assert event["request"]["body"]["size"] == 6003


def test_streamed_chunks_pass_through_one_by_one(wrap: Any, collector: Any) -> None:
    produced: List[int] = []

    def streaming_app(environ: Dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        for number in range(3):
            produced.append(number)
            time.sleep(0.05)
            yield f"data: {number}\n\n".encode()

    app = wrap(streaming_app)
    iterable = app(make_environ(), lambda *args: None)
    iterator = iter(iterable)
    assert next(iterator) == b"data: 0\n\n"
    assert produced == [0]  # the second chunk is not produced before the first is passed on
    assert next(iterator) == b"data: 1\n\n"
    assert produced == [0, 1]
    last_chunk_at = time.time()
    assert list(iterator) == [b"data: 2\n\n"]
    iterable.close()
    (event,) = deliver(app, collector)
    request_start = event["request"]["time"]
    assert event["response"]["time"] > request_start
    # The response time is when the last byte was produced, not when the app returned.
    stamp = time.strptime(event["response"]["time"][:19], "%Y-%m-%dT%H:%M:%S")
    millis = int(event["response"]["time"][20:23]) / 1000
    assert time.mktime(stamp) - time.timezone + millis >= last_chunk_at - 0.06


class ClosingBody:
    def __init__(self, chunks: List[bytes], fail_at: int = -1) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError("boom while streaming")
            yield chunk

    def close(self) -> None:
        self.closed += 1


class SelfIteratingBody:
    """An iterable that is its own iterator, like Werkzeug's ClosingIterator."""

    def __init__(self) -> None:
        self.left = [b"a", b"b", b"c"]
        self.closed = 0

    def __iter__(self) -> SelfIteratingBody:
        return self

    def __next__(self) -> bytes:
        if not self.left:
            raise StopIteration
        return self.left.pop(0)

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("log_body", [True, False], ids=["bodies", "no-bodies"])
def test_close_once_when_the_server_stops_mid_stream(
    wrap: Any, collector: Any, log_body: bool
) -> None:
    body = SelfIteratingBody()

    def app_(environ: Dict[str, Any], start_response: Any) -> SelfIteratingBody:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    app = wrap(app_, LOG_BODY=log_body)
    result = app(make_environ("GET", "/stream"), lambda *args: None)
    assert next(iter(result)) == b"a"
    result.close()  # the client went away after the first chunk
    assert body.closed == 1
    (event,) = deliver(app, collector)
    assert event["response"]["status"] == 200
    assert ("body" in event["response"]) is log_body


def test_close_called_exactly_once(wrap: Any, collector: Any) -> None:
    body = ClosingBody([b"a", b"b"])

    def app_(environ: Dict[str, Any], start_response: Any) -> ClosingBody:
        start_response("200 OK", [])
        return body

    assert call(wrap(app_)).body == b"ab"
    assert body.closed == 1


def test_exception_while_iterating_is_recorded_as_500_and_reraised(
    wrap: Any, collector: Any
) -> None:
    body = ClosingBody([b"a", b"b"], fail_at=1)

    def app_(environ: Dict[str, Any], start_response: Any) -> ClosingBody:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    app = wrap(app_)
    with pytest.raises(RuntimeError, match="boom while streaming"):
        call(app)
    assert body.closed == 1
    (event,) = deliver(app, collector)
    assert event["response"]["status"] == 500


def test_exception_before_start_response_is_recorded_and_reraised(
    wrap: Any, collector: Any
) -> None:
    error = ValueError("app bug")

    def failing_app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        raise error

    app = wrap(failing_app)
    with pytest.raises(ValueError) as raised:
        call(app, "GET", "/broken")
    assert raised.value is error
    (event,) = deliver(app, collector)
    assert event["response"]["status"] == 500
    assert event["request"]["uri"].endswith("/broken")


def test_file_wrapper_is_returned_untouched(wrap: Any, collector: Any, tmp_path: Any) -> None:
    from wsgiref.util import FileWrapper

    path = tmp_path / "download.bin"
    path.write_bytes(b"z" * 10000)

    def file_app(environ: Dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    app = wrap(file_app)
    env = make_environ(**{"wsgi.file_wrapper": FileWrapper})
    result = app(env, lambda *args: None)
    assert type(result) is FileWrapper
    result.close()
    (event,) = deliver(app, collector)
    assert event["response"]["status"] == 200
    assert event["response"].get("body") is None


def test_hooks_called_once_each_with_moesifwsgi_signatures(wrap: Any, collector: Any) -> None:
    calls: Dict[str, int] = {}
    seen: Dict[str, Any] = {}

    def counted(name: str, value: Any) -> Callable[..., Any]:
        def hook(*args: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            seen[name] = args
            return value

        return hook

    def identify_user(app: Any, environ: Dict[str, Any], response_headers: Dict[str, str]) -> str:
        calls["user"] = calls.get("user", 0) + 1
        seen["request_body"] = environ.get("moesif.request_body")
        seen["response_headers"] = environ.get("moesif.response_headers")
        seen["chunks"] = environ.get("moesif.response_body_chunks")
        return "user-42"

    app = wrap(
        json_app,
        IDENTIFY_USER=identify_user,
        IDENTIFY_COMPANY=counted("company", "comp-1"),
        GET_SESSION_TOKEN=counted("session", "sess-1"),
        GET_METADATA=counted("metadata", {"datacenter": "westus"}),
        SKIP=counted("skip", False),
    )
    call(app, "POST", "/", body=b'{"a": 1}', headers={"Content-Type": "application/json"})
    (event,) = deliver(app, collector)
    assert calls == {"user": 1, "company": 1, "session": 1, "metadata": 1, "skip": 1}
    assert seen["skip"][0] is json_app and "REQUEST_METHOD" in seen["skip"][1]
    assert isinstance(seen["company"][2], dict)  # (app, environ, response_headers)
    assert len(seen["session"]) == 2 and len(seen["metadata"]) == 2
    assert seen["request_body"] == {"a": 1}
    assert seen["response_headers"]["Content-Type"] == "application/json"
    assert b"".join(seen["chunks"]).startswith(b'{"ok": true')
    assert event["user_id"] == "user-42"
    assert event["company_id"] == "comp-1"
    assert event["session_token"] == "sess-1"
    assert event["metadata"] == {"datacenter": "westus"}


def test_hooks_that_raise_are_logged_once_and_the_request_goes_on(
    wrap: Any, collector: Any, caplog: Any
) -> None:
    def broken(*args: Any) -> Any:
        raise KeyError("hook bug")

    app = wrap(json_app, IDENTIFY_USER=broken, GET_METADATA=broken, SKIP=broken)
    caplog.set_level(logging.WARNING, logger="moesif_integrations")
    for _ in range(5):
        assert call(app).status_code == 201
    events = deliver(app, collector, 5)
    assert len(events) == 5 and all(e["user_id"] is None for e in events)
    assert app.stats()["hook_errors"] == 15
    lines = [r for r in caplog.records if r.name == "moesif_integrations"]
    assert sorted(r.getMessage().split()[0] for r in lines) == [
        "GET_METADATA",
        "IDENTIFY_USER",
        "SKIP",
    ]


def test_skip_records_nothing(wrap: Any, collector: Any) -> None:
    app = wrap(json_app, SKIP=lambda app, environ: environ["PATH_INFO"] == "/health")
    call(app, "GET", "/health")
    call(app, "GET", "/data")
    events = deliver(app, collector, 1)
    time.sleep(0.2)
    assert [e["request"]["uri"] for e in collector.events()] == ["http://api.example.com/data"]
    assert len(events) == 1
    assert app.stats()["skipped"] == 1


def test_user_from_jwt_with_url_safe_payload_and_masked_authorization(
    wrap: Any, collector: Any
) -> None:
    # A payload whose base64url form has '-' and '_' (the incumbent decodes it as plain base64).
    claims = {"sub": "user>>>???", "name": "ÿÿÿ"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert "-" in payload or "_" in payload
    token = f"eyJhbGciOiJIUzI1NiJ9.{payload}.c2lnbmF0dXJl"
    app = wrap(json_app)
    call(app, headers={"Authorization": f"Bearer {token}", "Cookie": "session=secret"})
    call(app, headers={"Authorization": f"Bearer {token}"})
    first, second = deliver(app, collector, 2)
    assert first["user_id"] == "user>>>???"
    auth = first["request"]["headers"]["Authorization"]
    assert token not in json.dumps(first)
    assert "secret" not in json.dumps(first["request"]["headers"])
    assert auth.startswith("Bearer <masked:")
    assert second["request"]["headers"]["Authorization"] == auth  # stable fingerprint


def test_masks_for_headers_and_body_fields(wrap: Any, collector: Any) -> None:
    def app_(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/json"), ("X-Internal", "v")])
        return [b'{"user": {"password": "p", "name": "n"}, "items": [{"ssn": "1"}]}']

    app = wrap(
        app_,
        REQUEST_HEADER_MASKS=["X-Trace"],
        RESPONSE_HEADER_MASKS=["x-internal"],
        REQUEST_BODY_MASKS=["card"],
        RESPONSE_BODY_MASKS=["password", "ssn"],
    )
    call(
        app,
        "POST",
        "/",
        body=b'{"card": "4111", "n": {"card": 1}}',
        headers={"Content-Type": "application/json", "X-Trace": "abc"},
    )
    (event,) = deliver(app, collector)
    dumped = json.dumps(event)
    assert "4111" not in dumped and '"p"' not in dumped and '"1"' not in dumped
    assert event["request"]["body"]["n"]["card"] != 1
    assert event["response"]["body"]["user"]["name"] == "n"
    assert event["request"]["headers"]["X-Trace"] != "abc"
    assert event["response"]["headers"]["X-Internal"] != "v"


def test_mask_event_model_receives_an_event_model(wrap: Any, collector: Any) -> None:
    def mask(event_model: Any) -> Any:
        event_model.response.body["echo"] = None
        event_model.metadata = {"masked": True}
        return event_model

    app = wrap(json_app, MASK_EVENT_MODEL=mask)
    call(app, "POST", "/", body=b"secret-input")
    (event,) = deliver(app, collector)
    assert event["response"]["body"] == {"ok": True, "echo": None}
    assert event["metadata"] == {"masked": True}
    assert event["transaction_id"]


def test_mask_event_model_that_raises_drops_the_event(wrap: Any, collector: Any) -> None:
    def mask(event_model: Any) -> Any:
        if event_model.request.uri.endswith("/fail"):
            raise RuntimeError("mask bug")
        return event_model

    app = wrap(json_app, MASK_EVENT_MODEL=mask)
    call(app, "GET", "/fail")
    call(app, "GET", "/ok")
    assert app.flush(timeout=10)
    events = collector.wait_for_events(1)
    time.sleep(0.2)
    assert [e["request"]["uri"] for e in collector.events()] == ["http://api.example.com/ok"]
    assert len(events) == 1
    stats = app.stats()
    assert stats["dropped_mask_error"] == 1 and stats["sent"] == 1


def test_unserializable_metadata_drops_only_that_metadata(wrap: Any, collector: Any) -> None:
    import datetime

    def metadata(app: Any, environ: Dict[str, Any]) -> Any:
        if environ["PATH_INFO"] == "/bad":
            return {"handle": object()}
        return {"when": datetime.datetime(2026, 1, 2, 3, 4, 5)}

    app = wrap(json_app, GET_METADATA=metadata)
    call(app, "GET", "/bad")
    call(app, "GET", "/good")
    events = deliver(app, collector, 2)
    by_path = {event["request"]["uri"].rsplit("/", 1)[1]: event for event in events}
    assert by_path["good"]["metadata"] == {"when": "2026-01-02T03:04:05"}
    assert by_path["bad"].get("metadata") is None  # the event itself still went
    assert app.stats()["dropped_unserializable"] == 0


def test_malformed_requests_never_raise(wrap: Any, collector: Any) -> None:
    app = wrap(json_app)
    env = make_environ("POST", "/odd", b"abc", headers={"Content-Type": "text/plain"})
    env["CONTENT_LENGTH"] = "not-a-number"
    del env["REMOTE_ADDR"]
    env["HTTP_X_WEIRD"] = b"caf\xc3\xa9 \xff".decode("latin-1")
    result = call(app, environ=env)
    assert result.status_code == 201
    no_host = make_environ("GET", "/p", SCRIPT_NAME="/app")
    del no_host["HTTP_HOST"]
    no_host["SERVER_PORT"] = "8080"
    call(app, environ=no_host)
    first, second = deliver(app, collector, 2)
    assert first["request"]["ip_address"] is None
    assert first["request"]["headers"]["X-Weird"].startswith("café")
    assert second["request"]["uri"] == "http://testserver:8080/app/p"


def test_binary_and_gzip_request_bodies(wrap: Any, collector: Any) -> None:
    app = wrap(json_app)
    binary = bytes(range(256))
    call(app, "POST", "/bin", body=binary, headers={"Content-Type": "application/octet-stream"})
    compressed = gzip.compress(b'{"zipped": true}')
    call(
        app,
        "POST",
        "/gz",
        body=compressed,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    call(app, "POST", "/bad", body=b'{"not json', headers={"Content-Type": "application/json"})
    by_path = {e["request"]["uri"].rsplit("/", 1)[1]: e for e in deliver(app, collector, 3)}
    assert base64.b64decode(by_path["bin"]["request"]["body"]) == binary
    assert by_path["gz"]["request"]["body"] == {"zipped": True}
    assert by_path["bad"]["request"]["transfer_encoding"] == "base64"


def test_disabled_is_a_pass_through(collector: Any) -> None:
    sentinel = [b"same object"]

    def app_(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        start_response("200 OK", [])
        return sentinel

    app = MoesifMiddleware(app_, {"ENABLED": False})
    assert app(make_environ(), lambda *a: None) is sentinel
    assert app.flush() and app.stats() == {}


def test_misconfiguration_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="LOG_BDY.*LOG_BODY"):
        MoesifMiddleware(json_app, {"APPLICATION_ID": "x", "LOG_BDY": True})
    with pytest.raises(ConfigurationError, match="BASE_URI"):
        MoesifMiddleware(json_app, {"APPLICATION_ID": "x", "BASE_URI": "api.moesif.net"})
    with pytest.raises(ConfigurationError, match="IDENTIFY_USER"):
        MoesifMiddleware(json_app, {"APPLICATION_ID": "x", "IDENTIFY_USER": "not callable"})


def test_debug_logs_never_show_the_app_id_or_bodies(wrap: Any, collector: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="moesif_integrations")
    app = wrap(json_app, DEBUG=True)
    call(
        app,
        "POST",
        "/",
        body=b"super-secret-body",
        headers={"Authorization": "Bearer super-secret-token"},
    )
    deliver(app, collector)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert APP_ID not in text and "super-secret" not in text


def test_concurrent_requests_each_become_one_event(wrap: Any, collector: Any) -> None:
    app = wrap(json_app)
    errors: List[BaseException] = []

    def client(number: int) -> None:
        try:
            for index in range(50):
                call(app, "POST", f"/t{number}/{index}", body=b"x" * index)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    events = deliver(app, collector, 400)
    assert len({e["transaction_id"] for e in events}) == 400
    assert app.stats()["sent"] == 400


def test_no_thread_started_at_import_or_construction(collector: Any) -> None:
    before = {t.name for t in threading.enumerate()}
    app = MoesifMiddleware(json_app, {"APPLICATION_ID": APP_ID, "BASE_URI": collector.url})
    after = {t.name for t in threading.enumerate()}
    assert not [n for n in after - before if n.startswith("moesif")]
    call(app)
    assert [t for t in threading.enumerate() if t.name.startswith("moesif-integrations-sender")]
    assert app.shutdown(timeout=5)
    assert os.getpid()  # still here; shutdown returned
