"""A declared request body that never comes: the app answers without reading it, and the capture
must neither hold the worker nor withhold the response (it records what the app read).

Each app runs under a real server; the request goes over a raw socket that declares a body in
Content-Length, sends its first bytes only and stays open, as a slow or hostile client would (a
first part, because Falcon's ASGI app itself waits for the first body event before it runs).
"""

from __future__ import annotations

import base64
import os
import socket
import time
from typing import Any, Dict, Tuple

import pytest
from servers import ROOT_DIR, TESTS_DIR, installed, serve

# What the bare apps take to answer here is milliseconds; the server's worker timeout is 30 s.
ANSWER_WITHIN = 5.0
FIRST_PART = b'{"first": '  # of the 1000 bytes declared

# name -> (server, target, directory, path answered without reading the body)
APPS: Dict[str, Tuple[str, str, str, str]] = {
    "wsgi-gunicorn": ("gunicorn", "apps.wrapped:app", TESTS_DIR, "/items/1"),
    "flask-gunicorn": ("gunicorn", "app:app", os.path.join(ROOT_DIR, "examples", "flask"), "/x"),
    "bottle-gunicorn": (
        "gunicorn",
        "app:app",
        os.path.join(ROOT_DIR, "examples", "bottle"),
        "/items",
    ),
    "pyramid-gunicorn": (
        "gunicorn",
        "app:app",
        os.path.join(ROOT_DIR, "examples", "pyramid"),
        "/notes",
    ),
    "falcon-gunicorn": (
        "gunicorn",
        "app:app",
        os.path.join(ROOT_DIR, "examples", "falcon"),
        "/books",
    ),
    "falcon-asgi-uvicorn": (
        "uvicorn",
        "asgi_app:app",
        os.path.join(ROOT_DIR, "examples", "falcon"),
        "/books",
    ),
}


def _read_response(sock: socket.socket, deadline: float) -> bytes:
    """Reads one response with a Content-Length body, or until the server closes, or the
    deadline."""
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and len(body) >= int(value):
                return received
    return received


def _declared_but_never_sent(port: int, path: str) -> Tuple[bytes, float]:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode() + FIRST_PART
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN) as sock:
        started = time.monotonic()
        sock.sendall(request)  # and nothing more: the connection stays open
        answer = _read_response(sock, started + ANSWER_WITHIN)
        return answer, time.monotonic() - started


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=pytest.mark.skipif(not installed(spec[0]), reason=f"{spec[0]} not installed"),
        )
        for name, spec in APPS.items()
    ],
)
def test_a_declared_body_that_never_comes_delays_nothing(name: str, collector: Any) -> None:
    server, target, directory, path = APPS[name]
    env = {
        "MOESIF_APPLICATION_ID": "unread-body-app",
        "MOESIF_BASE_URI": collector.url,
        "MOESIF_EVENT_BATCH_TIMEOUT": "0.05",
    }
    with serve(server, target, env, cwd=directory) as served:
        # The worker has booted and imported the app (slow on a loaded machine).
        status = served.request("GET", path, timeout=60).status
        answer, took = _declared_but_never_sent(served.port, path)
        assert answer.startswith(b"HTTP/1.1 "), (answer, took, served.output()[-2000:])
        assert took < ANSWER_WITHIN and int(answer[9:12]) == status
        # The worker is free for the next client, and the exchanges were recorded.
        assert served.request("GET", path, timeout=ANSWER_WITHIN).status == status
        events = collector.wait_for_events(3, timeout=10)
    assert [event["request"]["uri"].endswith(path) for event in events] == [True] * 3
    # What was recorded of the body is what came (the part an ASGI framework received), no more.
    recorded = [event["request"].get("body") for event in events]
    assert set(recorded) <= {None, base64.b64encode(FIRST_PART).decode()}, recorded
