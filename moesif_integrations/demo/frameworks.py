"""``python -m moesif_integrations demo --framework NAME|all``: the example apps under
``examples/`` side by side, each under a real server in a process of its own, sent the same
traffic, against one local collector; one table per framework.

WSGI apps run under waitress when it is installed, else the standard library's wsgiref; the
Falcon ASGI app runs under uvicorn. Each app delivers with its own application id
(``demo-<framework>``), so the collector (and its inspector) tells them apart.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from ..collector import Collector
from ..collector.summary import body_kind, duration_ms, path_of
from . import DemoRequest, format_table, send_request


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


def calls_for(example: Example) -> List[DemoRequest]:
    """The same traffic for every framework: list, create, read, not found, bad input, no
    credentials."""
    resource = example.resource

    def call(
        label: str, method: str, path: str, status: int, body: Any, key: Optional[str]
    ) -> DemoRequest:
        headers = example.auth(key) if key else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return DemoRequest(label, method, path, status, data, headers)

    return [
        call("list", "GET", resource, 200, None, API_KEYS[0]),
        call("create", "POST", resource, 201, example.new_item, API_KEYS[0]),
        call("read one", "GET", f"{resource}/1", 200, None, API_KEYS[1]),
        call("not found", "GET", f"{resource}/999", 404, None, API_KEYS[1]),
        call("bad input", "POST", resource, 400, {"unexpected": True}, API_KEYS[0]),
        call("no credentials", "POST", resource, example.anonymous_status, example.new_item, None),
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
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [sys.executable, "-m", __name__, "serve", server, example.target, str(port)]
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
            events = _wait_for_events(collector, app_id, len(answers), timeout=15)
        finally:
            _stop(process)
    by_id = {event.get("transaction_id"): event for event in events}
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
        rows.append(_row(call, status, event))
    stored_text = json.dumps(events)
    if any(key in stored_text for key in API_KEYS):
        problems.append("an API key reached the collector in clear")
    return Outcome(example, server, rows, problems, time.monotonic() - started)


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
                print(format_table(_COLUMNS, outcome.rows), file=out, flush=True)
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


def _serve(server: str, target: str, port: int) -> None:
    sys.path.insert(0, os.getcwd())
    module_name, _, attribute = target.partition(":")
    app = getattr(importlib.import_module(module_name), attribute)
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
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 5:
        try:
            _serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        except KeyboardInterrupt:
            pass
    else:
        print("usage: python -m moesif_integrations demo --framework NAME", file=sys.stderr)
        sys.exit(2)
