"""A real local HTTP server for the outgoing-capture tests: the third party the app calls."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

JSON_BODY = b'{"hello": "world"}'
CHUNKS = (b"part-0;", b"part-1;", b"part-2;")
BIG_SIZE = 200_000


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without this, Nagle's algorithm holds the
    # body until the client's delayed acknowledgement, 40 ms a call.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        path = self.path.split("?", 1)[0]
        if path == "/json":
            self._reply(200, JSON_BODY, "application/json")
        elif path == "/echo":
            self._reply(200, self._body(), "application/json")
        elif path == "/fail":
            self._reply(500, b'{"error": "boom"}', "application/json")
        elif path == "/redirect":
            self._reply(302, b"", "text/plain", Location="/json")
        elif path == "/gzip":
            self._reply(
                200, gzip.compress(JSON_BODY), "application/json", **{"Content-Encoding": "gzip"}
            )
        elif path == "/big":
            self._reply(200, b"x" * BIG_SIZE, "application/octet-stream")
        elif path == "/empty":
            self._reply(204, b"", "text/plain")
        elif path == "/slow":
            time.sleep(1.0)
            self._reply(200, JSON_BODY, "application/json")
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in CHUNKS:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._reply(404, b"not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        self.do_GET()

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        if self.command in ("POST", "PUT") and self.path.split("?", 1)[0] != "/echo":
            self._body()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ThirdParty:
    """The server on a free loopback port; ``url(path)`` names one of its routes."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def third_party() -> Iterator[ThirdParty]:
    server = ThirdParty()
    try:
        yield server
    finally:
        server.close()
