"""``python -m moesif_integrations demo``: the whole path on one machine, in a few seconds.

Starts the local collector and a small WSGI app wrapped by ``MoesifMiddleware``, served by the
standard library's wsgiref on loopback; sends a varied set of requests with urllib; flushes and
prints what the collector received. Standard library only, no account, no network.

One route calls a third party: a stand-in rates API the demo serves on loopback. With urllib3
installed (which ``requests`` brings) the call goes through it and is captured
(CAPTURE_OUTGOING_REQUESTS) as an Outgoing event joined to the incoming request that made it;
without urllib3 it goes through the standard library, which the capture does not see.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import io
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import ThreadingMixIn
from types import FrameType
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, TextIO, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..collector import Collector
from ..collector.summary import body_kind, duration_ms, path_of
from ..core.outgoing.recorder import INCOMING_TRANSACTION_KEY
from ..wsgi import MoesifMiddleware

__all__ = [
    "CREDENTIALS",
    "DemoRequest",
    "DEMO_CONFIG",
    "DEMO_REQUESTS",
    "DEMO_RULES",
    "demo_app",
    "run_demo",
    "fetch_rate",
    "format_table",
    "outgoing_pairs",
    "pair_lines",
    "send_request",
    "stand_in_url",
]

StartResponse = Callable[..., Any]

# Any non-empty id will do for the local collector; it is a credential all the same.
_APPLICATION_ID = "demo-application-id-5d1e"
_API_KEY = "demo-api-key-3b9f27c4e1"
_SESSION_COOKIE = "demo-session-8c41aa70f2"
_API_KEY_USERS = {_API_KEY: "user-api-7"}
_SIGNING_KEY = b"demo-signing-key"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _make_jwt(claims: Dict[str, Any]) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signature = hmac.new(_SIGNING_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


_JWT = _make_jwt({"sub": "user-jwt-1024", "name": "Ada", "iat": 1767225600})

# Everything secret the demo sends: none of it may be printed or reach the collector in clear.
CREDENTIALS: Tuple[str, ...] = (_APPLICATION_ID, _API_KEY, _SESSION_COOKIE, _JWT)

# Headers whose stored (masked) values the demo shows.
_SHOWN_MASKED = ("Authorization", "Cookie", "X-Api-Key")


# ------------------------------------------------------------------------------- the third party


# The stand-in's one answer: what a currency API would say.
_RATES = {"base": "USD", "rates": {"EUR": 0.92}}
RATES_PATH = "/v1/rates"
# The client the app's own call goes through: urllib3 is captured, the standard library is not.
OUTGOING_CLIENT = "urllib3" if importlib.util.find_spec("urllib3") else None


class _StandInHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = self.path.split("?", 1)[0] == RATES_PATH
        body = json.dumps(_RATES if found else {"error": "no such route"}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


_stand_in_lock = threading.Lock()
_stand_in: Optional[ThreadingHTTPServer] = None


def stand_in_url() -> str:
    """The URL of the rates API the demo apps call: a stand-in for a third party, served on
    loopback in a daemon thread of this process, started on first use."""
    global _stand_in
    with _stand_in_lock:
        if _stand_in is None:
            _stand_in = ThreadingHTTPServer(("127.0.0.1", 0), _StandInHandler)
            _stand_in.daemon_threads = True
            threading.Thread(
                target=_stand_in.serve_forever, name="moesif-demo-stand-in", daemon=True
            ).start()
        return f"http://127.0.0.1:{_stand_in.server_port}{RATES_PATH}"


def fetch_rate(url: str, currency: str) -> float:
    """The app's own HTTP call: the exchange rate of ``currency`` from the rates API at ``url``,
    through urllib3 when it is installed (and so captured), else the standard library."""
    target = f"{url}?{urllib.parse.urlencode({'symbols': currency})}"
    if OUTGOING_CLIENT == "urllib3":
        import urllib3

        with urllib3.PoolManager() as pool:
            data = pool.request("GET", target, timeout=5.0).data
    else:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(target, timeout=5) as response:
            data = response.read()
    return float(json.loads(data)["rates"][currency])


# ------------------------------------------------------------------------------- the app


def _json(start_response: StartResponse, status: str, value: Any) -> List[bytes]:
    body = json.dumps(value).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _read_body(environ: Dict[str, Any]) -> bytes:
    length = environ.get("CONTENT_LENGTH") or ""
    return bytes(environ["wsgi.input"].read(int(length))) if length.isdigit() else b""


def _event_stream() -> Iterator[bytes]:
    # Spaced out so the event's duration shows the last byte, not the first.
    for number in range(1, 5):
        yield json.dumps({"tick": number}).encode() + b"\n"
        time.sleep(0.04)


def _large_csv() -> Iterator[bytes]:
    # About 150 KB: over the default 100 KB capture limit, so the event carries a marker.
    row = b"2026-01-01,widget,9.50,some description of the order line\n"
    for _ in range(50):
        yield row * 50


def demo_app(environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A small plain-WSGI API with one route per kind of exchange the demo shows."""
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO") or "/"
    if method == "GET" and path == "/items/42":
        return _json(start_response, "200 OK", {"id": 42, "name": "widget", "price": 9.5})
    if method == "POST" and path == "/items":
        item = json.loads(_read_body(environ) or b"{}")
        return _json(start_response, "201 Created", {"id": 43, **item})
    if method == "POST" and path == "/contact":
        form = urllib.parse.parse_qs(_read_body(environ).decode("utf-8"))
        name = form.get("name", ["there"])[0]
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"Thanks, {name}. We will be in touch.".encode()]
    if method == "PUT" and path == "/uploads/logo.png":
        data = _read_body(environ)
        stored = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()[:16]}
        return _json(start_response, "201 Created", stored)
    if method == "GET" and path == "/ticks":
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        return _event_stream()
    if method == "GET" and path == "/reports/orders.csv":
        start_response("200 OK", [("Content-Type", "text/csv")])
        return _large_csv()
    if method == "GET" and path == "/prices/42":
        # Answers with data from a third party: the call becomes an Outgoing event.
        rate = fetch_rate(stand_in_url(), "EUR")
        return _json(start_response, "200 OK", {"id": 42, "price": round(9.5 * rate, 2)})
    if method == "GET" and path == "/me":
        return _json(start_response, "200 OK", {"plan": "gold"})
    if method == "GET" and path == "/account":
        user = _API_KEY_USERS.get(environ.get("HTTP_X_API_KEY", ""))
        if user is None:
            return _json(start_response, "401 Unauthorized", {"error": "bad API key"})
        # The IDENTIFY_USER hook reads what the app found out.
        environ["demo.user"] = user
        return _json(start_response, "200 OK", {"balance": 120})
    if method == "GET" and path == "/admin/users":
        return _json(start_response, "200 OK", {"users": ["ada", "grace"]})
    if method == "GET" and path == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if method == "GET" and path == "/boom":
        raise RuntimeError("the demo app failed on purpose")
    return _json(start_response, "404 Not Found", {"error": "no such route"})


def identify_user(
    app: Any, environ: Dict[str, Any], response_headers: Optional[Dict[str, str]] = None
) -> Optional[str]:
    """IDENTIFY_USER: the user the app authenticated; None lets the JWT speak."""
    user = environ.get("demo.user")
    return str(user) if user else None


# ------------------------------------------------------------------------------- the requests


@dataclass(frozen=True, eq=False)
class DemoRequest:
    """One request the demo sends (compared by identity, so it can key a dict)."""

    label: str
    method: str
    path: str
    expected_status: int
    body: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)
    # The app config samples this route at 0%: no event is expected.
    sampled_out: bool = False
    # The app calls the rates API while it handles this request: an Outgoing event joins it.
    calls_out: bool = False


DEMO_REQUESTS: Tuple[DemoRequest, ...] = (
    DemoRequest("JSON GET", "GET", "/items/42", 200),
    DemoRequest(
        "JSON POST",
        "POST",
        "/items",
        201,
        b'{"name": "gadget", "price": 12.25}',
        {"Content-Type": "application/json"},
    ),
    DemoRequest(
        "form post",
        "POST",
        "/contact",
        200,
        b"name=Ada&message=Hello%21",
        {"Content-Type": "application/x-www-form-urlencoded"},
    ),
    DemoRequest(
        "binary upload",
        "PUT",
        "/uploads/logo.png",
        201,
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
        {"Content-Type": "image/png"},
    ),
    DemoRequest("streamed response", "GET", "/ticks", 200),
    DemoRequest("large download", "GET", "/reports/orders.csv", 200),
    DemoRequest("app exception", "GET", "/boom", 500),
    DemoRequest("unknown route", "GET", "/nope", 404),
    DemoRequest("JWT user", "GET", "/me", 200, headers={"Authorization": f"Bearer {_JWT}"}),
    DemoRequest(
        "cookie + API key",
        "GET",
        "/account",
        200,
        headers={"Cookie": f"session={_SESSION_COOKIE}; theme=dark", "X-Api-Key": _API_KEY},
    ),
    DemoRequest("outgoing call", "GET", "/prices/42", 200, calls_out=True),
    DemoRequest("blocked by a rule", "GET", "/admin/users", 403),
    DemoRequest("sampled out", "GET", "/health", 200, sampled_out=True),
)

# What the collector serves at /v1/config and /v1/rules during the demo: health checks sampled
# at 0%, and a governance rule that answers for the app on /admin.
DEMO_CONFIG: Dict[str, Any] = {
    "sample_rate": 100,
    "regex_config": [
        {"conditions": [{"path": "request.route", "value": "^/health$"}], "sample_rate": 0}
    ],
}
DEMO_RULES: List[Dict[str, Any]] = [
    {
        "_id": "block-admin",
        "name": "No admin API from outside",
        "type": "regex",
        "block": True,
        "regex_config": [{"conditions": [{"path": "request.route", "value": "^/admin/"}]}],
        "response": {
            "status": 403,
            "headers": {"X-Blocked-By": "block-admin"},
            "body": {"error": "the admin API is not public"},
        },
    }
]


@dataclass
class Answer:
    status: int
    transaction_id: Optional[str]


def send_request(
    opener: urllib.request.OpenerDirector, base_url: str, request: DemoRequest
) -> Answer:
    """Sends one request; its status and the transaction id header of the answer."""
    outgoing = urllib.request.Request(
        base_url + request.path,
        data=request.body,
        headers=request.headers,
        method=request.method,
    )
    try:
        with opener.open(outgoing, timeout=10) as response:
            response.read()
            return Answer(response.status, response.headers.get("X-Moesif-Transaction-Id"))
    except urllib.error.HTTPError as error:
        with error:
            error.read()
            return Answer(error.code, error.headers.get("X-Moesif-Transaction-Id"))


# ------------------------------------------------------------------------------- the server


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What the app writes to wsgi.errors: the traceback of /boom is expected, so it is kept
        # here and shown only when the demo finds something wrong.
        self.errors = io.StringIO()
        self._handled = 0
        self._handled_changed = threading.Condition()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._handled_changed:
                self._handled += 1
                self._handled_changed.notify_all()

    def wait_handled(self, count: int, timeout: float) -> bool:
        """Waits until ``count`` requests are completely handled. A client has its answer a
        moment before the server thread closes the response, which is when the event is
        queued: flushing before that would miss it."""
        with self._handled_changed:
            return self._handled_changed.wait_for(lambda: self._handled >= count, timeout)


class _QuietHandler(WSGIRequestHandler):
    server: _ThreadingWSGIServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_stderr(self) -> io.StringIO:
        return self.server.errors


class _ServedApp:
    """A WSGI app served by wsgiref (threaded) on a free loopback port, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, _ThreadingWSGIServer, _QuietHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="moesif-demo-app",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(1.0)


# ------------------------------------------------------------------------------- the report


_COLUMNS = ("request", "method", "path", "status", "user", "req body", "resp body", "ms", "txn")


def _table_rows(matched: List[Tuple[DemoRequest, Dict[str, Any]]]) -> List[Tuple[str, ...]]:
    rows: List[Tuple[str, ...]] = []
    for request, event in matched:
        rows.append(
            (
                request.label,
                str(event["request"].get("verb")),
                path_of(event),
                str(event["response"].get("status")),
                str(event.get("user_id") or "-"),
                body_kind(event["request"]),
                body_kind(event["response"]),
                _cell(duration_ms(event)),
                str(event.get("transaction_id") or "-")[:8],
            )
        )
    return rows


# (incoming event, the outgoing event of a call made while handling it)
Pair = Tuple[Dict[str, Any], Dict[str, Any]]
_PAIR_COLUMNS = ("direction", "method", "url", "status", "ms", "txn", "incoming txn")


def outgoing_pairs(events: List[Dict[str, Any]]) -> List[Pair]:
    """(incoming event, outgoing event) for every Outgoing event whose metadata names the
    transaction id of an incoming event among ``events``."""
    incoming = {
        event.get("transaction_id"): event
        for event in events
        if event.get("direction") != "Outgoing" and event.get("transaction_id")
    }
    pairs = []
    for event in events:
        metadata = event.get("metadata")
        if event.get("direction") == "Outgoing" and isinstance(metadata, dict):
            made_for = incoming.get(metadata.get(INCOMING_TRANSACTION_KEY))
            if made_for is not None:
                pairs.append((made_for, event))
    return pairs


def pair_lines(pairs: List[Pair]) -> List[str]:
    """The pairs as a table: each incoming event, then the outgoing call it made, whose
    ``incoming txn`` (``metadata.incoming_transaction_id``) is the incoming one's ``txn``."""
    rows: List[Tuple[str, ...]] = []
    for incoming, outgoing in pairs:
        made_for = str(outgoing["metadata"][INCOMING_TRANSACTION_KEY])
        rows.append(_pair_row(incoming, path_of(incoming), "-"))
        rows.append(_pair_row(outgoing, str(outgoing["request"].get("uri")), made_for[:8]))
    return format_table(_PAIR_COLUMNS, rows).splitlines()


def _pair_row(event: Dict[str, Any], url: str, joined: str) -> Tuple[str, ...]:
    return (
        str(event.get("direction") or "Incoming"),
        str(event["request"].get("verb")),
        url,
        str(event["response"].get("status")),
        _cell(duration_ms(event)),
        str(event.get("transaction_id") or "-")[:8],
        joined,
    )


def outgoing_problems(
    label: str, incoming: Optional[Dict[str, Any]], pairs: List[Pair]
) -> List[str]:
    """What is wrong with the outgoing call made for the request ``label``, if anything."""
    if OUTGOING_CLIENT is None or incoming is None:
        return []
    made = [out for made_for, out in pairs if made_for is incoming]
    if len(made) != 1:
        return [f"{label}: {len(made)} outgoing events joined to it, expected 1"]
    if not str(made[0]["request"].get("uri")).startswith(stand_in_url()):
        return [f"{label}: the outgoing event is not the call to the rates API"]
    return []


def _cell(value: Any) -> str:
    return "?" if value is None else str(value)


def format_table(columns: Tuple[str, ...], rows: List[Tuple[str, ...]]) -> str:
    """Rows under a header, cells two spaces apart; the ``ms`` column right-aligned."""
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]
    # The duration reads best right-aligned; everything else left.
    right = {columns.index("ms")} if "ms" in columns else set()

    def line(cells: Tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(columns), line(tuple("-" * w for w in widths)), *map(line, rows)])


def _masked_headers(matched: List[Tuple[DemoRequest, Dict[str, Any]]]) -> List[str]:
    shown = []
    for request, event in matched:
        headers = event["request"].get("headers") or {}
        for name in _SHOWN_MASKED:
            if name in request.headers and name in headers:
                shown.append((f"{request.method} {request.path}", f"{name}: {headers[name]}"))
    width = max((len(where) for where, _ in shown), default=0)
    return [f"  {where.ljust(width)}  {header}" for where, header in shown]


def _check(
    answers: Dict[DemoRequest, Answer],
    matched: List[Tuple[DemoRequest, Dict[str, Any]]],
    stored_text: str,
    pairs: List[Pair],
) -> List[str]:
    """What went wrong, if anything: the demo checks the claims it prints."""
    problems = []
    events = dict(matched)
    for request, answer in answers.items():
        if answer.status != request.expected_status:
            problems.append(
                f"{request.label}: the app answered {answer.status}, "
                f"expected {request.expected_status}"
            )
        event = events.get(request)
        if request.sampled_out:
            if event is not None:
                problems.append(f"{request.label}: sampled at 0%, yet an event arrived")
            continue
        if event is None:
            problems.append(f"{request.label}: no event reached the collector")
            continue
        if event["response"].get("status") != request.expected_status:
            problems.append(f"{request.label}: the event says {event['response'].get('status')}")
        if answer.transaction_id and answer.transaction_id != event.get("transaction_id"):
            problems.append(f"{request.label}: the event's transaction id differs from the header")
        if request.calls_out:
            problems.extend(outgoing_problems(request.label, event, pairs))
    if any(secret in stored_text for secret in CREDENTIALS):
        problems.append("a credential reached the collector in clear")
    return problems


def _match(events: List[Dict[str, Any]]) -> List[Tuple[DemoRequest, Dict[str, Any]]]:
    by_route = {(str(e["request"].get("verb")), path_of(e)): e for e in events}
    matched = []
    for request in DEMO_REQUESTS:
        event = by_route.get((request.method, request.path))
        if event is not None:
            matched.append((request, event))
    return matched


def _print_report(
    out: TextIO,
    app_url: str,
    received: int,
    elapsed: float,
    matched: List[Tuple[DemoRequest, Dict[str, Any]]],
    pairs: List[Pair],
) -> None:
    print(
        f"Sent {len(DEMO_REQUESTS)} requests to a WSGI app wrapped by MoesifMiddleware "
        f"({app_url}, wsgiref); the collector received {received} events in {elapsed:.1f} s.\n",
        file=out,
    )
    print(format_table(_COLUMNS, _table_rows(matched)), file=out)
    print_pairs(out, pairs)
    print(
        "\nCredentials are masked before they leave the app (as the collector stored them):",
        file=out,
    )
    for line in _masked_headers(matched):
        print(line, file=out)
    print("\nSampling and governance (the app config and rules the collector serves):", file=out)
    for request, event in matched:
        if event.get("blocked_by"):
            print(
                f"  {request.method} {request.path}  blocked by rule {event['blocked_by']!r}: "
                f"the app never ran, the client got {event['response'].get('status')}",
                file=out,
            )
    for request in DEMO_REQUESTS:
        if request.sampled_out:
            print(
                f"  {request.method} {request.path}  sampled at 0%: served, no event sent",
                file=out,
            )


def print_pairs(out: TextIO, pairs: List[Pair]) -> None:
    """The outgoing calls joined to their incoming requests, or why there are none."""
    if OUTGOING_CLIENT is None:
        print(
            "\nThe app's own call to the rates API went through the standard library, which "
            "CAPTURE_OUTGOING_REQUESTS does not see (pip install urllib3 to see it captured).",
            file=out,
        )
        return
    print(
        f"\nThe app's own HTTP call ({OUTGOING_CLIENT}, to a stand-in rates API on loopback) "
        "is an Outgoing event,\njoined to the request that made it by its "
        "metadata.incoming_transaction_id:",
        file=out,
    )
    for line in pair_lines(pairs):
        print(f"  {line}", file=out)


def _stats_line(stats: Dict[str, int]) -> str:
    return ", ".join(f"{name}={value}" for name, value in stats.items())


# ------------------------------------------------------------------------------- the run


def run_demo(
    db_path: Optional[str] = None,
    keep: bool = False,
    collector_port: int = 0,
    out: Optional[TextIO] = None,
) -> int:
    """Runs the demo; returns the exit status (0 when every check passed)."""
    out = out or sys.stdout
    collector = Collector(
        host="127.0.0.1",
        port=collector_port,
        db_path=db_path or ":memory:",
        config=DEMO_CONFIG,
        rules=DEMO_RULES,
    )
    collector.start()
    served: Optional[_ServedApp] = None
    middleware: Optional[MoesifMiddleware] = None
    try:
        # Events already in a kept database are not this run's.
        before = collector.stored("events")
        since_id = before[-1].id if before else 0
        middleware = MoesifMiddleware(
            demo_app,
            {
                "APPLICATION_ID": _APPLICATION_ID,
                "BASE_URI": collector.url,
                "IDENTIFY_USER": identify_user,
                "API_VERSION": "1.0.0",
                "CAPTURE_OUTGOING_REQUESTS": True,
            },
        )
        served = _ServedApp(middleware)
        # The app config arrives in the background after the first request; the demo waits
        # for it so that its first requests show the rules at work.
        assert middleware.pipeline is not None
        middleware.pipeline.wait_for_app_config(timeout=5)
        # Loopback only: a proxy from the environment must not see these requests.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        started = time.monotonic()
        answers = {request: send_request(opener, served.url, request) for request in DEMO_REQUESTS}
        handled = served.server.wait_handled(len(DEMO_REQUESTS), timeout=10)
        delivered = middleware.flush(timeout=10)
        events = collector.events(since_id)
        elapsed = time.monotonic() - started
        stored_text = json.dumps(events)
        matched = _match(events)
        pairs = outgoing_pairs(events)

        _print_report(out, served.url, len(events), elapsed, matched, pairs)
        print(f"\nmiddleware stats: {_stats_line(middleware.stats())}", file=out)
        storage = f"in the SQLite file {db_path}" if db_path else "in memory (--db PATH keeps them)"
        print(f"collector: {collector.url}, events stored {storage}", file=out)
        problems = _check(answers, matched, stored_text, pairs)
        if not handled:
            problems.append("the demo app did not finish handling every request")
        if not delivered:
            problems.append("flush timed out before every event was delivered")
        if problems:
            print("\nThe demo found problems:", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            print(served.server.errors.getvalue(), file=sys.stderr)
            return 1
        if keep:
            print(
                f"  inspector: {collector.url}/  (open it in a browser: events as they arrive)",
                file=out,
            )
            print(f"  read them: curl {collector.url}/_collector/events", file=out)
            print(
                "  follow them: python -m moesif_integrations.collector tail --url "
                + collector.url,
                file=out,
            )
            print(f"demo app: {served.url} (its requests show up in the collector too)", file=out)
            print("Both keep running; Ctrl-C stops them.", file=out)
            out.flush()
            wait_for_interrupt()
        else:
            print("  (stopped now; --keep keeps it running so you can query it)", file=out)
        return 0
    finally:
        if served is not None:
            served.stop()
        if middleware is not None:
            middleware.shutdown(timeout=2)
        collector.close()


class _TerminatedError(Exception):
    """Raised in the main thread by the SIGTERM handler to end the --keep wait."""


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    raise _TerminatedError()


def wait_for_interrupt() -> None:
    """Waits for Ctrl-C, or SIGTERM from a process manager; either ends the demo cleanly."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, _TerminatedError):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
