"""Runs an app under a real server (gunicorn, waitress, uvicorn, wsgiref) in a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Optional

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


def server_command(server: str, target: str, port: int, *extra: str) -> List[str]:
    """The command line that serves ``target`` ("module:attr") with ``server``."""
    bind = f"127.0.0.1:{port}"
    if server == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "--bind", bind, "--graceful-timeout", "10",
                *extra, target]
    if server == "waitress":
        return [sys.executable, "-m", "waitress", f"--listen={bind}", *extra, target]
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
                "--no-access-log", *extra, target]
    if server == "wsgiref":
        return [sys.executable, os.path.join(TESTS_DIR, "wsgiref_serve.py"), bind, target]
    raise ValueError(server)


@contextlib.contextmanager
def serve(server: str, target: str, env: Optional[Dict[str, str]] = None, *extra: str,
          cwd: Optional[str] = None, log_dir: Optional[str] = None) -> Iterator[ServedApp]:
    """Serves ``target`` on a free loopback port for the duration of the block."""
    port = free_port()
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [TESTS_DIR, ROOT_DIR, environment.get("PYTHONPATH", "")])
    environment.update(env or {})
    log_dir = log_dir or os.environ.get("TMPDIR", "/tmp")
    log_path = os.path.join(log_dir, f"served-{server}-{port}.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(server_command(server, target, port, *extra), env=environment,
                                   stdout=log, stderr=subprocess.STDOUT, cwd=cwd or TESTS_DIR)
    served = ServedApp(process, port, log_path)
    try:
        wait_for_port(port, process)
        yield served
    finally:
        served.stop()
