"""Conformance harness for the generic WSGI middleware over a plain WSGI app."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Optional
from urllib.parse import parse_qs

from harness import BIG_SIZE, STREAM_CHUNKS, HarnessBase, Reply, StreamProbe
from wsgi_client import call

from moesif_integrations import MoesifMiddleware


def standard_app(produced: List[bytes]) -> Any:
    def app(environ: Dict[str, Any], start_response: Any) -> Any:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        length = environ.get("CONTENT_LENGTH") or ""
        body = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""

        def reply(status: str, content_type: str, data: bytes) -> List[bytes]:
            start_response(
                status, [("Content-Type", content_type), ("Content-Length", str(len(data)))]
            )
            return [data]

        if method == "GET" and path.startswith("/items/"):
            item = json.dumps({"id": path[len("/items/") :]}).encode()
            return reply("200 OK", "application/json", item)
        if method == "POST" and path == "/items":
            received = json.dumps({"received": json.loads(body)}).encode()
            return reply("201 Created", "application/json", received)
        if method == "POST" and path == "/form":
            name = parse_qs(body.decode())["name"][0]
            return reply("200 OK", "text/plain", f"hello {name}".encode())
        if method == "POST" and path == "/upload":
            return reply("200 OK", "application/json", json.dumps({"size": len(body)}).encode())
        if path == "/big":
            return reply("200 OK", "application/octet-stream", b"x" * BIG_SIZE)
        if path == "/health":
            return reply("200 OK", "text/plain", b"ok")
        if path == "/error":
            raise RuntimeError("view failed")
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "text/plain")])

            def chunks() -> Iterator[bytes]:
                for chunk in STREAM_CHUNKS:
                    produced.append(chunk)
                    yield chunk

            return chunks()
        return reply("404 Not Found", "text/plain", b"not found")

    return app


class WsgiHarness(HarnessBase):
    name = "wsgi"

    def setup(self) -> None:
        self.middleware = MoesifMiddleware(standard_app(self.produced), self.settings)

    @property
    def integration(self) -> Any:
        return self.middleware

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Optional[Dict[str, str]] = None,
        query: str = "",
    ) -> Reply:
        try:
            result = call(self.middleware, method, path, body=body, headers=headers, query=query)
        except RuntimeError:
            # A bare WSGI app has no error page: the server would answer 500.
            return Reply(500, {}, b"")
        return self.reply_of(result.status_code, result.headers, result.body)

    def stream_probe(self) -> StreamProbe:
        return self.probe_wsgi(self.middleware)


HARNESS = WsgiHarness
