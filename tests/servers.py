"""Runs an app under a real server (gunicorn, waitress, uvicorn, wsgiref) in a subprocess, and
talks to it over loopback HTTP."""

from __future__ import annotations

import contextlib
import functools
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT_DIR = os.path.dirname(TESTS_DIR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


def installed(server: str) -> bool:
    """Whether ``server`` can run here (wsgiref always can; gunicorn needs a POSIX system)."""
    if server == "wsgiref":
        return True
    if server == "gunicorn" and os.name != "posix":
        return False
    return importlib.util.find_spec(server) is not None


@dataclass
class HttpReply:
    status: int
    headers: Dict[str, str]  # lower-case names, repeated headers joined with ", "
    body: bytes
    complete: bool = True  # False when the server cut the body short

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    port: int,
    method: str = "GET",
    path: str = "/",
    body: Union[bytes, Iterable[bytes], None] = None,
    headers: Optional[Dict[str, str]] = None,
    timeout: float = 10.0,
) -> HttpReply:
    """One request on a fresh connection to 127.0.0.1:``port``. A body that is an iterable of
    chunks (not bytes) goes with ``Transfer-Encoding: chunked`` and no Content-Length."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        chunked = body is not None and not isinstance(body, (bytes, bytearray))
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = conn.getresponse()
        complete = True
        try:
            data = response.read()
        except http.client.IncompleteRead as cut:
            data, complete = cut.partial, False
        joined: Dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        return HttpReply(response.status, joined, data, complete)
    finally:
        conn.close()


def post_json(port: int, path: str, value: Any, app_id: str) -> HttpReply:
    """POSTs ``value`` as JSON with ``X-Moesif-Application-Id: app_id`` (to a collector)."""
    headers = {"Content-Type": "application/json", "X-Moesif-Application-Id": app_id}
    return http_request(port, "POST", path, json.dumps(value).encode(), headers)


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Sends ``data`` as it is on a new connection, ends the sending side, and returns all the
    server answered until it closed (for requests no HTTP client would send)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received.append(chunk)
        return b"".join(received)


class ServedApp:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: str) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.exit_seconds: Optional[float] = None

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stops the server and returns its exit code; records how long the exit took."""
        if self.process.poll() is None:
            started = time.monotonic()
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.exit_seconds = time.monotonic() - started
        return int(self.process.returncode)

    def request(self, method: str = "GET", path: str = "/", **kwargs: Any) -> HttpReply:
        return http_request(self.port, method, path, **kwargs)

    def stats(self) -> Dict[str, Any]:
        """``/_stats`` of apps.wrapped: the answering process's pid and counters."""
        reply = self.request("GET", "/_stats")
        assert reply.status == 200, reply
        return dict(reply.json())

    def wait_recorded(self, count: int, timeout: float = 10.0) -> Dict[str, Any]:
        """Polls ``/_stats`` of apps.wrapped until ``count`` exchanges were recorded (queued,
        dropped or skipped); returns the stats. A client can read a whole response before the
        server closes the app's iterable, which is when the exchange is recorded."""
        deadline = time.monotonic() + timeout
        while True:
            stats: Dict[str, Any] = self.stats()["stats"]
            recorded = stats["captured"] + stats["dropped_queue_full"] + stats["skipped"]
            if recorded >= count:
                return stats
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{recorded} exchanges recorded within {timeout} s, not {count}")
            time.sleep(0.01)

    def flush(self) -> Dict[str, Any]:
        """``/_flush`` of apps.wrapped: delivers what is queued, then answers like stats()."""
        reply = self.request("GET", "/_flush", timeout=20.0)
        assert reply.status == 200, reply
        return dict(reply.json())


def server_command(server: str, target: str, port: int, *extra: str) -> List[str]:
    """The command line that serves ``target`` ("module:attr") with ``server``."""
    bind = f"127.0.0.1:{port}"
    if server == "gunicorn":
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            bind,
            "--graceful-timeout",
            "10",
            *_gunicorn_isolation(),
            *extra,
            target,
        ]
    if server == "waitress":
        return [sys.executable, "-m", "waitress", f"--listen={bind}", *extra, target]
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            *extra,
            target,
        ]
    if server == "wsgiref":
        return [sys.executable, os.path.join(TESTS_DIR, "wsgiref_serve.py"), bind, target]
    raise ValueError(server)


@functools.cache
def _gunicorn_isolation() -> List[str]:
    # Gunicorn 24+ opens a control socket at one fixed path per user: servers running side by
    # side would take it from each other, and tests have no use for it.
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return []
    if any("--no-control-socket" in setting.cli for setting in KNOWN_SETTINGS if setting.cli):
        return ["--no-control-socket"]
    return []


@contextlib.contextmanager
def serve(
    server: str,
    target: str,
    env: Optional[Dict[str, str]] = None,
    *extra: str,
    cwd: Optional[str] = None,
    log_dir: Optional[str] = None,
    prefix: Sequence[str] = (),
) -> Iterator[ServedApp]:
    """Serves ``target`` on a free loopback port for the duration of the block; ``prefix``
    goes before the command (``taskset -c 0``)."""
    port = free_port()
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [TESTS_DIR, ROOT_DIR, environment.get("PYTHONPATH", "")]
    )
    environment.update(env or {})
    log_dir = log_dir or os.environ.get("TMPDIR", "/tmp")
    log_path = os.path.join(log_dir, f"served-{server}-{port}.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*prefix, *server_command(server, target, port, *extra)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd or TESTS_DIR,
        )
    served = ServedApp(process, port, log_path)
    try:
        wait_for_port(port, process)
        yield served
    finally:
        served.stop()
