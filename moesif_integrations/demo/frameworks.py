"""``python -m moesif_integrations demo --framework NAME|all``: the example apps under
``examples/`` side by side, each under a real server in a process of its own, sent the same
traffic, against one local collector; one table per framework.

WSGI apps run under waitress when it is installed, else the standard library's wsgiref; the
Falcon ASGI app runs under uvicorn. Each app delivers with its own application id
(``demo-<framework>``), so the collector (and its inspector) tells them apart.

The demo adds one route to each app, ``GET /prices/1``, whose view calls the stand-in rates API
the demo serves on loopback; with CAPTURE_OUTGOING_REQUESTS on (from the environment) that call
is an Outgoing event joined to the incoming request, and each table is followed by the pair.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from ..collector import Collector
from ..collector.summary import body_kind, duration_ms, path_of
from . import (
    OUTGOING_CLIENT,
    DemoRequest,
    fetch_rate,
    format_table,
    outgoing_pairs,
    outgoing_problems,
    print_pairs,
    send_request,
    stand_in_url,
)


def find_examples() -> Optional[Path]:
    """The ``examples/`` folder of a source checkout: beside this package (``pip install -e
    .``), else in the current directory (a checkout with the package installed from it)."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "examples" / "flask" / "app.py").is_file():
            return root / "examples"
    return None


API_KEYS = ("key-ada", "key-grace")


def _api_key(key: str) -> Dict[str, str]:
    return {"X-Api-Key": key}


def _bearer(key: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Example:
    """One example app and what it takes to talk to it."""

    name: str
    directory: str  # under examples/
    target: str  # module:attribute
    needs: Tuple[str, ...]  # modules it imports
    asgi: bool
    resource: str  # its collection, e.g. /items
    new_item: Dict[str, Any]  # a valid body for POST <resource>
    auth: Callable[[str], Dict[str, str]]
    anonymous_status: int = 401  # its answer to a POST without credentials


EXAMPLES: Tuple[Example, ...] = (
    Example("flask", "flask", "app:app", ("flask",), False, "/items", {"name": "bolt"}, _api_key),
    Example(
        "bottle", "bottle", "app:app", ("bottle",), False, "/items", {"name": "bolt"}, _api_key
    ),
    # Pyramid's security policy forbids (403) what needs a permission the caller lacks.
    Example(
        "pyramid", "pyramid", "app:app", ("pyramid",), False, "/notes", {"text": "hi"}, _bearer, 403
    ),
    Example(
        "falcon", "falcon", "app:app", ("falcon",), False, "/books", {"title": "Sketch"}, _api_key
    ),
    Example(
        "falcon-asgi",
        "falcon",
        "asgi_app:app",
        ("falcon",),
        True,
        "/books",
        {"title": "Sketch"},
        _api_key,
    ),
)
NAMES = tuple(example.name for example in EXAMPLES)


# The route the demo adds to every example app (add_price_route): its view calls the rates API.
PRICE_PATH = "/prices/1"
# The environment variable that tells the app where the rates API is.
RATES_URL_VARIABLE = "MOESIF_DEMO_RATES_URL"


def calls_for(example: Example) -> List[DemoRequest]:
    """The same traffic for every framework: list, create, read, not found, bad input, no
    credentials."""
    resource = example.resource

    def call(
        label: str,
        method: str,
        path: str,
        status: int,
        body: Any,
        key: Optional[str],
        calls_out: bool = False,
    ) -> DemoRequest:
        headers = example.auth(key) if key else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return DemoRequest(label, method, path, status, data, headers, calls_out=calls_out)

    return [
        call("list", "GET", resource, 200, None, API_KEYS[0]),
        call("create", "POST", resource, 201, example.new_item, API_KEYS[0]),
        call("read one", "GET", f"{resource}/1", 200, None, API_KEYS[1]),
        call("not found", "GET", f"{resource}/999", 404, None, API_KEYS[1]),
        call("bad input", "POST", resource, 400, {"unexpected": True}, API_KEYS[0]),
        call("no credentials", "POST", resource, example.anonymous_status, example.new_item, None),
        call("outgoing call", "GET", PRICE_PATH, 200, None, API_KEYS[0], calls_out=True),
    ]


def server_for(example: Example) -> Optional[str]:
    """The server to run ``example`` under, or None when none is installed."""
    if example.asgi:
        return "uvicorn" if importlib.util.find_spec("uvicorn") else None
    return "waitress" if importlib.util.find_spec("waitress") else "wsgiref"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


# Loopback only: a proxy from the environment must not see these requests.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


_COLUMNS = (
    "request",
    "method",
    "path",
    "status",
    "user",
    "company",
    "req body",
    "resp body",
    "ms",
    "txn",
)


def _row(call: DemoRequest, status: int, event: Optional[Dict[str, Any]]) -> Tuple[str, ...]:
    if event is None:
        return (call.label, call.method, call.path, str(status), "(no event)", *[""] * 5)
    return (
        call.label,
        str(event["request"].get("verb")),
        path_of(event),
        str(event["response"].get("status")),
        str(event.get("user_id") or "-"),
        str(event.get("company_id") or "-"),
        body_kind(event["request"]),
        body_kind(event["response"]),
        "?" if duration_ms(event) is None else str(duration_ms(event)),
        str(event.get("transaction_id") or "-")[:8],
    )


@dataclass
class Outcome:
    example: Example
    server: str
    rows: List[Tuple[str, ...]]
    problems: List[str]
    seconds: float
    pairs: List[Tuple[Dict[str, Any], Dict[str, Any]]] = field(default_factory=list)


def run_example(
    example: Example, server: str, collector: Collector, log: TextIO, examples_dir: Path
) -> Outcome:
    """Serves ``example`` (from ``examples_dir``) under ``server`` in a subprocess, sends it the
    traffic, waits for its events at the collector and stops it."""
    started = time.monotonic()
    app_id = f"demo-{example.name}"
    port = _free_port()
    env = {
        **os.environ,
        "MOESIF_APPLICATION_ID": app_id,
        "MOESIF_BASE_URI": collector.url,
        # Events go out a moment after each call, so the table need not wait long.
        "MOESIF_EVENT_BATCH_TIMEOUT": "0.05",
        "MOESIF_CAPTURE_OUTGOING_REQUESTS": "true",
        RATES_URL_VARIABLE: stand_in_url(),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [
        sys.executable,
        "-m",
        __name__,
        "serve",
        server,
        example.target,
        str(port),
        example.name,
    ]
    problems: List[str] = []
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            command,
            cwd=examples_dir / example.directory,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            if not _wait_for_port(port, process, timeout=30):
                output.seek(0)
                problems.append(f"the app did not start under {server}:\n{output.read()}")
                return Outcome(example, server, [], problems, time.monotonic() - started)
            base_url = f"http://127.0.0.1:{port}"
            answers = [send_request(_opener, base_url, call) for call in calls_for(example)]
            print(
                f"      sent {len(answers)} requests; waiting for their events",
                file=log,
                flush=True,
            )
            # The app's call to the rates API is one more event, when the capture sees it.
            expected = len(answers) + (1 if OUTGOING_CLIENT else 0)
            events = _wait_for_events(collector, app_id, expected, timeout=15)
        finally:
            _stop(process)
    by_id = {event.get("transaction_id"): event for event in events}
    pairs = outgoing_pairs(events)
    rows = []
    for call, answer in zip(calls_for(example), answers):
        status, transaction_id = answer.status, answer.transaction_id
        event = by_id.get(transaction_id) if transaction_id else None
        if status != call.expected_status:
            problems.append(f"{call.label}: the app answered {status}, not {call.expected_status}")
        if event is None:
            problems.append(f"{call.label}: no event reached the collector")
        elif event["response"].get("status") != status:
            problems.append(f"{call.label}: the app answered {status}, the event says otherwise")
        if call.calls_out:
            problems.extend(outgoing_problems(call.label, event, pairs))
        rows.append(_row(call, status, event))
    stored_text = json.dumps(events)
    if any(key in stored_text for key in API_KEYS):
        problems.append("an API key reached the collector in clear")
    return Outcome(example, server, rows, problems, time.monotonic() - started, pairs)


def _wait_for_events(
    collector: Collector, app_id: str, count: int, timeout: float
) -> List[Dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        events = [item.body for item in collector.stored("events") if item.app_id == app_id]
        if len(events) >= count or time.monotonic() >= deadline:
            return events
        time.sleep(0.05)


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # Ctrl-C: the app flushes what it holds at exit
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_frameworks(
    names: List[str],
    collector_port: int = 0,
    db_path: Optional[str] = None,
    keep: bool = False,
    out: Optional[TextIO] = None,
    log: Optional[TextIO] = None,
) -> int:
    """Runs the examples named (``all`` for every one); returns the exit status."""
    out = out or sys.stdout
    log = log or sys.stderr
    examples_dir = find_examples()
    if examples_dir is None:
        print(
            "demo --framework runs the apps under examples/, which come with a source checkout "
            "of moesif-integrations (pip install -e .): run it there.",
            file=sys.stderr,
        )
        return 2
    chosen = list(EXAMPLES) if "all" in names else [e for e in EXAMPLES if e.name in names]
    explicit = "all" not in names
    failed = False
    ran = 0
    with Collector(host="127.0.0.1", port=collector_port, db_path=db_path or ":memory:") as coll:
        print(f"collector: {coll.url}  (inspector: {coll.url}/)", file=out, flush=True)
        for number, example in enumerate(chosen, 1):
            missing = [name for name in example.needs if importlib.util.find_spec(name) is None]
            server = server_for(example)
            if missing or server is None:
                install = " ".join(missing) if missing else "uvicorn"
                what = "ASGI server" if not missing else "framework"
                print(
                    f"\n{example.name}: skipped, its {what} is not installed "
                    f"(pip install {install})",
                    file=out,
                    flush=True,
                )
                failed = failed or explicit
                continue
            print(
                f"[{number}/{len(chosen)}] {example.name}: starting examples/{example.directory}/"
                f"{example.target.split(':')[0]}.py under {server}",
                file=log,
                flush=True,
            )
            outcome = run_example(example, server, coll, log, examples_dir)
            ran += 1
            print(
                f"\n{example.name} ({server}, application id demo-{example.name}, "
                f"{outcome.seconds:.1f} s)",
                file=out,
            )
            if outcome.rows:
                print(format_table(_COLUMNS, outcome.rows), file=out)
                print_pairs(out, outcome.pairs)
                out.flush()
            for problem in outcome.problems:
                print(f"  problem: {problem}", file=out, flush=True)
            failed = failed or bool(outcome.problems)
        if keep and ran:
            from . import wait_for_interrupt

            print(f"\nThe collector keeps running: inspector at {coll.url}/ ; Ctrl-C stops it.")
            out.flush()
            wait_for_interrupt()
    return 1 if failed or not ran else 0


# -- the child: one app under one server ------------------------------------------------------


def price_quote() -> Dict[str, Any]:
    """What ``GET /prices/1`` answers: a price converted at the rate the rates API gives."""
    rate = fetch_rate(os.environ[RATES_URL_VARIABLE], "EUR")
    return {"id": 1, "currency": "EUR", "price": round(9.5 * rate, 2)}


class _PriceResource:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = price_quote()


class _AsyncPriceResource:
    async def on_get(self, req: Any, resp: Any) -> None:
        resp.media = price_quote()


def add_price_route(name: str, app: Any) -> None:
    """Adds ``GET /prices/1`` (``price_quote``) to the example app ``name``, each framework its
    own way, behind the app's authentication and capture like its other routes."""
    if name == "flask":
        app.add_url_rule(PRICE_PATH, "demo_price", price_quote)
    elif name == "bottle":
        app.get(PRICE_PATH)(price_quote)
    elif name == "pyramid":
        configurator: Any = importlib.import_module("pyramid.config").Configurator
        config = configurator(registry=app.registry)
        config.add_route("demo_price", PRICE_PATH)
        config.add_view(lambda request: price_quote(), route_name="demo_price", renderer="json")
        config.commit()
    elif name == "falcon":
        app.add_route(PRICE_PATH, _PriceResource())
    elif name == "falcon-asgi":
        app.add_route(PRICE_PATH, _AsyncPriceResource())
    else:
        raise ValueError(f"no price route for {name!r}")


def _serve(server: str, target: str, port: int, name: str) -> None:
    sys.path.insert(0, os.getcwd())
    module_name, _, attribute = target.partition(":")
    app = getattr(importlib.import_module(module_name), attribute)
    add_price_route(name, app)
    if server in ("waitress", "uvicorn"):
        # Imported by name: neither is a dependency of this package.
        module: Any = importlib.import_module(server)
        if server == "waitress":
            module.serve(app, host="127.0.0.1", port=port, threads=4, _quiet=True)
        else:
            module.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    else:
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
            daemon_threads = True

        class QuietHandler(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        make_server("127.0.0.1", port, app, ThreadingWSGIServer, QuietHandler).serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 6:
        try:
            _serve(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        except KeyboardInterrupt:
            pass
    else:
        print("usage: python -m moesif_integrations demo --framework NAME", file=sys.stderr)
        sys.exit(2)
