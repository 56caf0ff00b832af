"""The HTTP side of the collector: routing, the request handler and the threaded server."""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Dict, FrozenSet, Iterator, List, Mapping, Optional, Set, Tuple
from urllib.parse import parse_qs, urlsplit

from moesif_integrations._version import __version__
from moesif_integrations.collector.appconfig import AppConfig
from moesif_integrations.collector.faults import Fault, FaultSwitch
from moesif_integrations.collector.payloads import (
    BadPayloadError,
    check_nesting,
    decode_body,
    items_of,
)
from moesif_integrations.collector.storage import KINDS, ItemFilter, Storage
from moesif_integrations.collector.summary import item_summary
from moesif_integrations.core.logs import logger


@dataclass(frozen=True)
class Endpoint:
    """One route of the Moesif collector API; ``kind`` is the table a data POST fills."""

    path: str
    method: str
    kind: Optional[str] = None
    batch: bool = False


ENDPOINTS: Tuple[Endpoint, ...] = (
    Endpoint("/v1/events/batch", "POST", "events", batch=True),
    Endpoint("/v1/events", "POST", "events"),
    Endpoint("/v1/config", "GET"),
    Endpoint("/v1/rules", "GET"),
    Endpoint("/v1/users/batch", "POST", "users", batch=True),
    Endpoint("/v1/users", "POST", "users"),
    Endpoint("/v1/companies/batch", "POST", "companies", batch=True),
    Endpoint("/v1/companies", "POST", "companies"),
    Endpoint("/v1/subscriptions/batch", "POST", "subscriptions", batch=True),
    Endpoint("/v1/subscriptions", "POST", "subscriptions"),
    Endpoint("/v1/actions/batch", "POST", "actions", batch=True),
    Endpoint("/v1/actions", "POST", "actions"),
)

READ_API_PREFIX = "/_collector/"
DEFAULT_READ_LIMIT = 1000
# Past this a read would hold the storage lock (and build the answer in memory) too long.
MAX_READ_LIMIT = 100_000
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 1000
# SQLite integers are 64-bit.
_MAX_ID = 2**63 - 1
# Calls that change what the collector stores or serves: JSON bodies only, so that a web page
# cannot make them with a plain form or a no-preflight fetch.
CONTROL_CALLS = ("fault", "config", "rules", "reset")
# Host names every collector answers to, with its own port; --allow-host adds more.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# The inspector: served at "/" and under INSPECTOR_PREFIX, from the package.
INSPECTOR_PREFIX = "/_inspector/"
INSPECTOR_FILES = {
    "index.html": "text/html; charset=utf-8",
    "inspector.js": "text/javascript; charset=utf-8",
    "inspector.css": "text/css; charset=utf-8",
}
_INSPECTOR_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
SINGULAR = {
    "events": "event",
    "users": "user",
    "companies": "company",
    "subscriptions": "subscription",
    "actions": "action",
}


def match_endpoint(path: str) -> Optional[Endpoint]:
    """The endpoint a path ends with, so any base path prefix (a secure proxy's) works."""
    path = path.rstrip("/")
    for endpoint in ENDPOINTS:
        # Endpoint paths start with "/", so a suffix match always falls on a segment boundary.
        if path.endswith(endpoint.path):
            return endpoint
    return None


def read_api_name(path: str) -> Optional[str]:
    """``events`` for ``[/prefix]/_collector/events``; None for any other path."""
    before, found, name = path.rstrip("/").rpartition(READ_API_PREFIX)
    if not found or "/" in name:
        return None
    return name


class RequestLog:
    """How many requests each endpoint received, whatever became of them, and the headers of
    the last one (so tests can check what a client puts on the wire)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {endpoint.path: 0 for endpoint in ENDPOINTS}
        self._last_headers: Dict[str, Dict[str, str]] = {}

    def add(self, endpoint_path: str, headers: Dict[str, str]) -> None:
        with self._lock:
            self._counts[endpoint_path] += 1
            self._last_headers[endpoint_path] = headers

    def count(self, endpoint_path: str) -> int:
        with self._lock:
            return self._counts[endpoint_path]

    def last_headers(self, endpoint_path: str) -> Dict[str, str]:
        with self._lock:
            return dict(self._last_headers.get(endpoint_path, {}))

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            for path in self._counts:
                self._counts[path] = 0
            self._last_headers.clear()


@dataclass
class CollectorState:
    """Everything the handler threads share."""

    storage: Storage
    app_config: AppConfig
    faults: FaultSwitch
    requests: RequestLog
    application_ids: Optional[FrozenSet[str]]
    # Extra names the Host header may carry (any port), in lower case.
    allowed_hosts: FrozenSet[str]
    validate: bool
    max_body_bytes: int
    idle_timeout: Optional[float]
    verbose: bool
    stopping: threading.Event


class HttpError(Exception):
    """Ends a request with a JSON error answer."""

    def __init__(
        self,
        status: int,
        message: str,
        close: bool = False,
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close
        self.headers = headers or {}


class ClientGoneError(Exception):
    """The client closed the connection mid-request: nothing to answer."""


class CollectorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    server_version = f"moesif-local-collector/{__version__}"
    # Headers and body go out in two writes; without this, Nagle's algorithm and delayed ACKs
    # add ~40 ms to every answer on a reused connection.
    disable_nagle_algorithm = True
    server: CollectorServer
    _responded = False

    def setup(self) -> None:
        super().setup()
        # Idle keep-alive connections end after this, so their threads do not pile up.
        self.connection.settimeout(self.server.state.idle_timeout)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:  # noqa: N802 (name fixed by BaseHTTPRequestHandler)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.state.verbose:
            super().log_message(format, *args)

    # -- dispatch ---------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        self._responded = False
        try:
            self._route(method)
        except HttpError as error:
            self._send_json(error.status, {"error": error.message}, error.headers, error.close)
        except ClientGoneError:
            self.close_connection = True
        except Exception:
            logger.error("collector: error while handling %s", self.command, exc_info=True)
            if self._responded:
                self.close_connection = True
            else:
                self._send_json(500, {"error": "internal collector error"}, close=True)

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        state = self.server.state
        self._check_host()
        if url.path == "/favicon.ico":
            self._read_body()
            self._send(204, b"")  # browsers ask for it; the inspector has none
            return
        if url.path == "/" or url.path.startswith(INSPECTOR_PREFIX):
            self._read_body()
            self._inspector_file(method, url.path)
            return
        name = read_api_name(url.path)
        if name is not None:
            body = self._read_body()
            self._read_api(method, name, url.query, body)
            return
        endpoint = match_endpoint(url.path)
        if endpoint is None:
            self._read_body()
            raise HttpError(404, f"no such endpoint: {url.path}")
        state.requests.add(endpoint.path, self._header_dict())
        body = self._read_body()
        if method != endpoint.method:
            raise HttpError(
                405, f"{endpoint.path} takes {endpoint.method}", headers={"Allow": endpoint.method}
            )
        fault, release = state.faults.take(config_request=endpoint.kind is None)
        if fault is not None and self._apply_fault(fault, release):
            return
        app_id = self._application_id()
        config_text, rules_text, etag = state.app_config.snapshot()
        etag_header = {"X-Moesif-Config-ETag": etag}
        if endpoint.kind is None:
            text = config_text if endpoint.path == "/v1/config" else rules_text
            self._send(200, text.encode("utf-8"), etag_header)
            return
        try:
            payload = self._decode(body)
            items = items_of(endpoint.kind, payload, endpoint.batch, state.validate)
            state.storage.insert(endpoint.kind, app_id, items)
        except BadPayloadError as exc:
            raise HttpError(400, str(exc)) from None
        self._send(201, b"{}", etag_header)

    def _check_host(self) -> None:
        """Refuses a Host header that names neither this collector nor an allowed name: a page
        on another site, its name rebound to 127.0.0.1, must not read or change the store."""
        hosts = self.headers.get_all("Host") or []
        if not hosts:
            return  # HTTP/1.0 without Host: no browser sends that
        if len(hosts) > 1:
            raise HttpError(400, "more than one Host header", close=True)
        server = self.server
        if host_allowed(hosts[0], server.server_port, server.bound_names, server.state):
            return
        self._read_body()
        raise HttpError(
            403,
            f"Host {hosts[0]!r} is not this collector's; start it with --allow-host NAME to "
            "accept another name",
            close=True,
        )

    def _inspector_file(self, method: str, path: str) -> None:
        if method != "GET":
            raise HttpError(405, f"{path} takes GET", headers={"Allow": "GET"})
        name = "index.html" if path == "/" else path[len(INSPECTOR_PREFIX) :]
        content_type = INSPECTOR_FILES.get(name)
        if content_type is None:
            raise HttpError(404, f"no such inspector file: {name}")
        data = resources.files("moesif_integrations.collector").joinpath("inspector", name)
        self._send(200, data.read_bytes(), _INSPECTOR_HEADERS, content_type=content_type)

    def _header_dict(self) -> Dict[str, str]:
        headers: Dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    def _application_id(self) -> str:
        app_id = (self.headers.get("X-Moesif-Application-Id") or "").strip()
        if not app_id:
            raise HttpError(401, "missing X-Moesif-Application-Id header")
        accepted = self.server.state.application_ids
        if accepted is not None and app_id not in accepted:
            raise HttpError(401, "unknown application id in X-Moesif-Application-Id")
        return app_id

    def _apply_fault(self, fault: Fault, release: threading.Event) -> bool:
        """Plays the fault; True when it took over the request (answered or dropped it)."""
        if fault.mode == "fail":
            headers = {}
            retry_after = fault.retry_after_header()
            if retry_after is not None:
                headers["Retry-After"] = retry_after
            self._send_json(fault.status, {"error": f"injected failure {fault.status}"}, headers)
            return True
        if fault.mode == "delay":
            if not self.server.state.stopping.wait(fault.seconds):
                return False
            # Stopping mid-delay: give up on this request rather than hold the stop.
        elif fault.mode == "hang":
            release.wait()
        # drop, a released hang, an interrupted delay: close without a word.
        self.close_connection = True
        return True

    # -- the read API ----------------------------------------------------------------------

    def _read_api(self, method: str, name: str, query: str, body: bytes) -> None:
        state = self.server.state
        if name in KINDS or name in ("counts", "page", "item"):
            if method != "GET":
                raise HttpError(405, f"/_collector/{name} takes GET", headers={"Allow": "GET"})
            if name == "counts":
                counts: Dict[str, Any] = dict(state.storage.counts())
                counts["requests"] = state.requests.snapshot()
                counts["applications"] = state.storage.counts_by_application()
                counts["last_ids"] = state.storage.last_ids()
                self._send_json(200, counts)
            elif name == "page":
                self._send_page(parse_qs(query))
            elif name == "item":
                self._send_item(parse_qs(query))
            else:
                self._send_stored(name, query)
            return
        if name not in CONTROL_CALLS:
            raise HttpError(404, f"no such read API call: /_collector/{name}")
        if method != "POST":
            raise HttpError(405, f"/_collector/{name} takes POST", headers={"Allow": "POST"})
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HttpError(415, f"/_collector/{name} takes Content-Type: application/json")
        if name == "reset":
            state.storage.delete_all()
            state.requests.reset()
            self._send_json(200, {})
            return
        try:
            value = self._decode(body)
            check_nesting(value)
            if name == "fault":
                if not isinstance(value, dict):
                    raise BadPayloadError("a fault must be a JSON object")
                state.faults.set(Fault.from_json(value))
            elif name == "config":
                state.app_config.config.set(value)
            else:
                state.app_config.rules.set(value)
        except (BadPayloadError, ValueError, TypeError) as exc:
            raise HttpError(400, str(exc)) from None
        self._send_json(200, {"etag": state.app_config.etag})

    def _send_stored(self, kind: str, query: str) -> None:
        params = parse_qs(query)
        since = _int_param(params, "since", 0, minimum=0)
        limit = _int_param(params, "limit", DEFAULT_READ_LIMIT, minimum=1, maximum=MAX_READ_LIMIT)
        rows = self.server.state.storage.fetch(kind, since, limit)
        singular = SINGULAR[kind]
        listed: List[Dict[str, Any]] = [
            {"id": row.id, "received_at": row.received_at, "app_id": row.app_id, singular: row.body}
            for row in rows
        ]
        self._send_json(200, {kind: listed, "last_id": rows[-1].id if rows else since})

    def _send_page(self, params: Dict[str, List[str]]) -> None:
        """``GET /_collector/page?kind=events&before=&after=&limit=`` with filters (``status``
        as ``2xx``, ``user``, ``company``, ``path``, ``method``, ``direction``, ``app``, ``q``):
        the newest matching items, newest first, as the inspector's rows."""
        kind = _kind_param(params)
        before = _int_param(params, "before", None, minimum=1)
        after = _int_param(params, "after", None, minimum=0)
        limit = _int_param(params, "limit", DEFAULT_PAGE_LIMIT, minimum=1, maximum=MAX_PAGE_LIMIT)
        where = ItemFilter(
            status_class=_status_class_param(params),
            user_id=_text_param(params, "user"),
            company_id=_text_param(params, "company"),
            path=_text_param(params, "path"),
            method=_text_param(params, "method"),
            direction=_text_param(params, "direction"),
            app_id=_text_param(params, "app"),
            text=_text_param(params, "q"),
        )
        storage = self.server.state.storage
        items, total = storage.page(kind, where, before, after, limit)
        self._send_json(
            200,
            {
                "kind": kind,
                "items": [item_summary(kind, item) for item in items],
                "total": total,
                "last_id": storage.last_ids()[kind],
            },
        )

    def _send_item(self, params: Dict[str, List[str]]) -> None:
        """``GET /_collector/item?kind=events&id=N``: one stored item, whole."""
        kind = _kind_param(params)
        item_id = _int_param(params, "id", None, minimum=1)
        if item_id is None:
            raise HttpError(400, "id is required")
        item = self.server.state.storage.get(kind, item_id)
        if item is None:
            raise HttpError(404, f"no {SINGULAR[kind]} with id {item_id}")
        self._send_json(
            200,
            {
                "kind": kind,
                "id": item.id,
                "received_at": item.received_at,
                "app_id": item.app_id,
                "item": item.body,
            },
        )

    # -- reading and writing ---------------------------------------------------------------

    def _read_body(self) -> bytes:
        limit = self.server.state.max_body_bytes
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return b"".join(self._read_chunks(limit))
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            raise HttpError(400, f"bad Content-Length {length_header!r}", close=True)
        if length > limit:
            # Read and discard a moderately large body so the client, still sending, gets to
            # see the 413 instead of a broken pipe; past that, just close.
            drained = length <= 4 * limit and self._discard(length)
            raise HttpError(413, f"body larger than {limit} bytes", close=not drained)
        return self._read_exactly(length)

    def _discard(self, length: int) -> bool:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                raise ClientGoneError()
            length -= len(chunk)
        return True

    def _read_chunks(self, limit: int) -> Iterator[bytes]:
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise ClientGoneError()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "bad chunked encoding", close=True) from None
            if size == 0:
                break
            total += size
            if total > limit:
                raise HttpError(413, f"body larger than {limit} bytes", close=True)
            yield self._read_exactly(size)
            self.rfile.readline(1024)  # the CRLF after the chunk
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # trailers: ignored

    def _read_exactly(self, length: int) -> bytes:
        data = self.rfile.read(length)
        if len(data) < length:
            raise ClientGoneError()
        return data

    def _decode(self, body: bytes) -> Any:
        encoding = self.headers.get("Content-Encoding") or ""
        return decode_body(body, encoding, self.server.state.max_body_bytes)

    def _send_json(
        self,
        status: int,
        value: Any,
        headers: Optional[Mapping[str, str]] = None,
        close: bool = False,
    ) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), headers, close)

    def _send(
        self,
        status: int,
        body: bytes,
        headers: Optional[Mapping[str, str]] = None,
        close: bool = False,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self._responded = True
        self.wfile.write(body)


def _int_param(
    params: Dict[str, List[str]],
    name: str,
    default: Any,
    minimum: int,
    maximum: int = _MAX_ID,
) -> Any:
    """The integer query parameter ``name`` within [minimum, maximum]; 400 otherwise."""
    values = params.get(name)
    if not values or values[-1] == "":
        return default
    text = values[-1].strip()
    # int() of a huge digit string is slow; no valid value has more than 19 digits.
    value = int(text) if text.isdigit() and len(text) <= 19 else minimum - 1
    if not minimum <= value <= maximum:
        raise HttpError(
            400, f"{name} must be an integer from {minimum} to {maximum}, not {values[-1]!r}"
        )
    return value


def _text_param(params: Dict[str, List[str]], name: str) -> Optional[str]:
    values = params.get(name)
    if not values or not values[-1].strip():
        return None
    return values[-1].strip()


def _kind_param(params: Dict[str, List[str]]) -> str:
    kind = _text_param(params, "kind") or "events"
    if kind not in KINDS:
        raise HttpError(400, f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


def _status_class_param(params: Dict[str, List[str]]) -> Optional[int]:
    """``2xx`` (or ``2``) -> 2."""
    text = _text_param(params, "status")
    if text is None:
        return None
    digit = text.lower().rstrip("x")
    if len(digit) != 1 or digit not in "12345":
        raise HttpError(400, f"status must be a class from 1xx to 5xx, not {text!r}")
    return int(digit)


def split_host(host: str) -> Tuple[str, Optional[int]]:
    """(name in lower case, port or None) of a Host header; ValueError when malformed."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(host)
        port_text = rest[1:] if rest else ""
    elif host.count(":") == 1:
        name, _, port_text = host.partition(":")
    elif ":" in host:
        raise ValueError(host)
    else:
        name, port_text = host, ""
    if not name:
        raise ValueError(host)
    if not port_text:
        return name, None
    if not port_text.isdigit() or len(port_text) > 5:
        raise ValueError(host)
    return name, int(port_text)


def host_allowed(
    host: str, server_port: int, bound_names: FrozenSet[str], state: CollectorState
) -> bool:
    """Whether a Host header names this collector: a loopback name or the bound address with
    the collector's port, or any name given with --allow-host (``name`` or ``name:port``)."""
    try:
        name, port = split_host(host)
    except ValueError:
        return False
    if name in state.allowed_hosts or host.strip().lower() in state.allowed_hosts:
        return True
    if (80 if port is None else port) != server_port:
        return False
    return name in LOOPBACK_NAMES or name in bound_names


class CollectorServer(ThreadingHTTPServer):
    """A threaded HTTP server that knows its open connections, so a stop can cut them."""

    daemon_threads = True
    request_queue_size = 128  # bursts of pooled clients connecting at once

    def __init__(self, host: str, port: int, state: CollectorState) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.state = state
        self.requested_host = host
        self._connections: Set[socket.socket] = set()
        self._connections_changed = threading.Condition()
        super().__init__((host, port), CollectorHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can take seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        # The address it was asked to listen on, as clients would write it in Host.
        self.bound_names = frozenset({str(host).lower(), self.requested_host.strip("[]").lower()})

    def track(self, connection: socket.socket) -> None:
        with self._connections_changed:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_changed:
            self._connections.discard(connection)
            self._connections_changed.notify_all()

    def close_connections(self, timeout: float) -> None:
        """Cuts every open connection (idle keep-alive ones too) and waits up to ``timeout``
        for their handler threads to finish."""
        with self._connections_changed:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client
        with self._connections_changed:
            self._connections_changed.wait_for(lambda: not self._connections, timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients vanishing mid-answer is normal; never print tracebacks to the host's stderr.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError, socket.timeout)):
            return
        logger.error("collector: error on a connection", exc_info=True)
