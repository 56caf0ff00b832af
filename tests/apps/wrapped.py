"""A plain WSGI app wrapped by ``MoesifMiddleware``, configured from ``MOESIF_*`` variables.

Real servers load ``apps.wrapped:app``. Besides the wrapped routes below it answers, without
going through the middleware:

    /bare/<route>   the same route of the unwrapped app, to compare answers with and without
    /_stats         {"pid": ..., "stats": middleware.stats()} of the process that answers
    /_flush         flushes the queue (10 s budget), then answers like /_stats plus "flushed"

Wrapped routes (every answer carries ``X-Pid``, the serving process):

    GET  /items/<id>        200 {"id": "<id>"}
    POST /echo              reads the whole body (Content-Length or to EOF, so chunked uploads
                            work); JSON content types are parsed (gzip Content-Encoding
                            undone first) and a bad document gets 400; else 200
                            {"size", "sha256", "json"}
    GET  /stream?gate=P     server-sent events: "first", then waits (up to 10 s) for the file
                            P to exist, then "second"
    GET  /download?path=P   the file P through ``wsgi.file_wrapper``
    GET  /boom-before       raises before start_response
    GET  /boom-during       sends one chunk, then raises
    anything else           200 {"path": PATH_INFO}

``?delay=<seconds>`` on any wrapped route sleeps that long first (to keep a worker busy).
``TEST_APP_WARM_UP=1`` makes one request to ``/warm-up`` at import.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List
from urllib.parse import parse_qs
from wsgiref.util import setup_testing_defaults

from moesif_integrations import MoesifMiddleware

StartResponse = Callable[..., Any]

GATE_WAIT_SECONDS = 10.0


def _headers(content_type: str, length: int) -> List[Any]:
    return [
        ("Content-Type", content_type),
        ("Content-Length", str(length)),
        ("X-Pid", str(os.getpid())),
    ]


def _json(start_response: StartResponse, status: str, value: Any) -> List[bytes]:
    data = json.dumps(value).encode()
    start_response(status, _headers("application/json", len(data)))
    return [data]


def _read_body(environ: Dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        return bytes(stream.read(int(length)))
    # No (usable) length: a chunked upload; the server ends the stream at the last chunk.
    chunks: List[bytes] = []
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _echo(environ: Dict[str, Any], start_response: StartResponse) -> List[bytes]:
    body = _read_body(environ)
    answer: Dict[str, Any] = {
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "json": None,
    }
    content_type = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            text = body
            if (environ.get("HTTP_CONTENT_ENCODING") or "").lower() == "gzip":
                text = gzip.decompress(body)
            answer["json"] = json.loads(text)
        except ValueError as error:
            return _json(start_response, "400 Bad Request", {"error": f"bad JSON: {error}"})
    return _json(start_response, "200 OK", answer)


def _stream(gate: str, start_response: StartResponse) -> Iterator[bytes]:
    start_response(
        "200 OK",
        [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
    )
    yield b"data: first\n\n"
    deadline = time.monotonic() + GATE_WAIT_SECONDS
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    yield b"data: second\n\n" if os.path.exists(gate) else b"data: gate-timeout\n\n"


def _download(environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = parse_qs(environ.get("QUERY_STRING") or "")["path"][0]
    start_response("200 OK", _headers("application/octet-stream", os.path.getsize(path)))
    handle = open(path, "rb")  # noqa: SIM115 - the server closes it through the wrapper
    return environ["wsgi.file_wrapper"](handle, 65536)  # type: ignore[no-any-return]


def _boom_during(start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial"
    raise RuntimeError("the app failed while streaming (on purpose)")


def inner(environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The app itself, unwrapped."""
    path = environ.get("PATH_INFO") or ""
    method = environ.get("REQUEST_METHOD") or "GET"
    query = parse_qs(environ.get("QUERY_STRING") or "")
    if "delay" in query:
        time.sleep(float(query["delay"][0]))
    if path.startswith("/items/"):
        return _json(start_response, "200 OK", {"id": path[len("/items/") :]})
    if path == "/echo" and method in ("POST", "PUT"):
        return _echo(environ, start_response)
    if path == "/stream":
        return _stream(query["gate"][0], start_response)
    if path == "/download":
        return _download(environ, start_response)
    if path == "/boom-before":
        raise RuntimeError("the app failed before start_response (on purpose)")
    if path == "/boom-during":
        return _boom_during(start_response)
    return _json(start_response, "200 OK", {"path": path})


# As a user would: the library's warnings (e.g. events left unsent at exit) reach stderr.
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

# Built at import: under ``gunicorn --preload`` that is in the master, before the workers fork.
middleware = MoesifMiddleware(inner)


def _warm_up() -> None:
    """One request at import, as an app's start-up self-check would make: under ``--preload``
    the master then has a queue and sender threads before it forks the workers."""
    environ: Dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = "/warm-up"
    for _chunk in middleware(environ, lambda status, headers, exc_info=None: None):
        pass


if os.environ.get("TEST_APP_WARM_UP") == "1":
    _warm_up()


def _report(start_response: StartResponse, **extra: Any) -> List[bytes]:
    report = {"pid": os.getpid(), "stats": middleware.stats(), **extra}
    return _json(start_response, "200 OK", report)


def app(environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO") or ""
    if path == "/_stats":
        return _report(start_response)
    if path == "/_flush":
        flushed = middleware.flush(10.0)
        return _report(start_response, flushed=flushed)
    if path.startswith("/bare/"):
        environ["PATH_INFO"] = path[len("/bare") :]
        return inner(environ, start_response)
    return middleware(environ, start_response)
