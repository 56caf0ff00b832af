"""In-process request drivers: call a WSGI or ASGI app directly, with no server and no test client.

Each driver replays one request (``RequestSpec``) from a prebuilt template, so the only work
measured is the app's (plus whatever wraps it). A WSGI call gets a fresh environ dict and a fresh
``wsgi.input`` per request, consumes the body iterable and closes it, as a server would. An ASGI
call runs on one event loop the driver owns, with a minimal ``receive``/``send`` pair.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

Latencies = List[int]  # nanoseconds, one per request call


@dataclass(frozen=True)
class RequestSpec:
    """One request the benchmark replays, described once for every driver."""

    name: str
    method: str
    path: str
    query: str = ""
    headers: Tuple[Tuple[str, str], ...] = ()
    body: bytes = b""
    expected_status: int = 200


def _json_body_of_size(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes: a few typed fields and a padding string."""
    item: Dict[str, Any] = {
        "name": "widget",
        "price": 9.99,
        "quantity": 3,
        "tags": ["blue", "large", "sale"],
        "owner": {"id": "user-42", "plan": "gold"},
        "notes": "",
    }
    base = len(json.dumps(item, separators=(",", ":")).encode("utf-8"))
    item["notes"] = "x" * max(0, size - base)
    return json.dumps(item, separators=(",", ":")).encode("utf-8")


_COMMON_HEADERS: Tuple[Tuple[str, str], ...] = (
    ("Host", "api.example.com"),
    ("User-Agent", "bench-client/1.0"),
    ("Accept", "application/json"),
    ("Accept-Encoding", "gzip, deflate"),
    ("X-Request-Id", "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"),
)

GET_ITEM = RequestSpec(
    name="GET",
    method="GET",
    path="/items/42",
    query="verbose=1",
    headers=_COMMON_HEADERS,
)

POST_ITEM = RequestSpec(
    name="POST",
    method="POST",
    path="/items",
    headers=(*_COMMON_HEADERS, ("Content-Type", "application/json")),
    body=_json_body_of_size(1024),
    expected_status=201,
)

REQUESTS = (GET_ITEM, POST_ITEM)


# ------------------------------------------------------------------------------------- WSGI


def _environ_key(header: str) -> str:
    name = header.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name


class EnvironFactory:
    """Builds the environ of ``spec`` per request: a copy of a prebuilt template.

    ``fresh_strings`` decodes every header value from bytes on each call, as a real server
    does; without it all requests share the template's string objects. The memory measurement
    needs fresh strings (a queued event must be charged for the header text it keeps); the
    throughput runs do not, and skip the work.
    """

    def __init__(self, spec: RequestSpec, fresh_strings: bool = False) -> None:
        self.spec = spec
        self.fresh_strings = fresh_strings
        template: Dict[str, Any] = {
            "REQUEST_METHOD": spec.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": spec.path,
            "QUERY_STRING": spec.query,
            "SERVER_NAME": "api.example.com",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "203.0.113.7",
            "REMOTE_PORT": "50123",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        headers = list(spec.headers)
        if spec.body:
            headers.append(("Content-Length", str(len(spec.body))))
        for name, value in headers:
            template[_environ_key(name)] = value
        self.template = template
        self._raw_headers = [
            (_environ_key(name), value.encode("latin-1")) for name, value in headers
        ]
        # A bytearray makes BytesIO copy it: every request reads its own bytes object, as it
        # would from a socket (BytesIO over bytes hands back the very same object).
        self._body = bytearray(spec.body)

    def __call__(self) -> Dict[str, Any]:
        environ = self.template.copy()
        if self.fresh_strings:
            for key, raw in self._raw_headers:
                environ[key] = raw.decode("latin-1")
        environ["wsgi.input"] = io.BytesIO(self._body)
        return environ


def _ignore_write(data: bytes) -> None:
    return None


def _start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
    return _ignore_write


class WsgiDriver:
    """Calls a WSGI app in process, as a server would, and times each call."""

    asgi = False

    def __init__(self, app: Callable[..., Any], spec: RequestSpec, fresh_strings: bool = False):
        self.app = app
        self.spec = spec
        self.environ = EnvironFactory(spec, fresh_strings)

    def run(self, count: int, latencies: Optional[Latencies] = None) -> None:
        app = self.app
        make_environ = self.environ
        start_response = _start_response
        clock = time.perf_counter_ns
        record = latencies.append if latencies is not None else None
        for _ in range(count):
            started = clock()
            result = app(make_environ(), start_response)
            try:
                for _chunk in result:
                    pass
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if record is not None:
                record(clock() - started)

    def check(self) -> Tuple[int, bytes]:
        """One request, returning its status and body, to prove the app answers as intended."""
        seen: List[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            seen.append(status)
            return _ignore_write

        result = self.app(self.environ(), start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return int(seen[-1][:3]), body

    def close(self) -> None:
        return None


# ------------------------------------------------------------------------------------- ASGI


@dataclass
class _AsgiExchange:
    body: bytes
    body_sent: bool = False
    status: int = 0
    chunks: List[bytes] = field(default_factory=list)


class AsgiDriver:
    """Calls an ASGI app in process on an event loop of its own, one request at a time."""

    asgi = True

    def __init__(self, app: Callable[..., Any], spec: RequestSpec) -> None:
        self.app = app
        self.spec = spec
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in spec.headers]
        if spec.body:
            headers.append((b"content-length", str(len(spec.body)).encode("ascii")))
        self._scope: Dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": spec.method,
            "scheme": "http",
            "path": spec.path,
            "raw_path": spec.path.encode("latin-1"),
            "query_string": spec.query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "client": ("203.0.113.7", 50123),
            "server": ("api.example.com", 80),
        }
        self._loop = asyncio.new_event_loop()

    async def _call(self, exchange: _AsgiExchange) -> None:
        async def receive() -> Dict[str, Any]:
            if not exchange.body_sent:
                exchange.body_sent = True
                return {"type": "http.request", "body": exchange.body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
            elif message["type"] == "http.response.body":
                exchange.chunks.append(message.get("body", b""))

        scope = self._scope.copy()
        scope["headers"] = list(self._scope["headers"])
        await self.app(scope, receive, send)

    async def _run(self, count: int, latencies: Optional[Latencies]) -> None:
        clock = time.perf_counter_ns
        body = self.spec.body
        record = latencies.append if latencies is not None else None
        for _ in range(count):
            started = clock()
            await self._call(_AsgiExchange(bytes(body)))
            if record is not None:
                record(clock() - started)

    def run(self, count: int, latencies: Optional[Latencies] = None) -> None:
        self._loop.run_until_complete(self._run(count, latencies))

    def check(self) -> Tuple[int, bytes]:
        exchange = _AsgiExchange(self.spec.body)
        self._loop.run_until_complete(self._call(exchange))
        return exchange.status, b"".join(exchange.chunks)

    def close(self) -> None:
        self._loop.close()
