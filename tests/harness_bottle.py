"""Conformance harness for the Bottle plugin, driven by WebTest (the client Bottle's docs use)."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional

import bottle
import webtest
from harness import BIG_SIZE, STREAM_CHUNKS, HarnessBase, Reply, StreamProbe

from moesif_integrations.bottle import MoesifPlugin


def standard_app(produced: List[bytes]) -> bottle.Bottle:
    app = bottle.Bottle()

    @app.get("/items/<item_id>")
    def get_item(item_id: str) -> Dict[str, Any]:
        return {"id": item_id}

    @app.post("/items")
    def create_item() -> Dict[str, Any]:
        bottle.response.status = 201
        return {"received": bottle.request.json}

    @app.post("/form")
    def form() -> str:
        bottle.response.content_type = "text/plain"
        return f"hello {bottle.request.forms.get('name')}"

    @app.post("/upload")
    def upload() -> Dict[str, Any]:
        return {"size": len(bottle.request.body.read())}

    @app.get("/big")
    def big() -> bytes:
        bottle.response.content_type = "application/octet-stream"
        return b"x" * BIG_SIZE

    @app.get("/stream")
    def stream() -> Iterator[bytes]:
        bottle.response.content_type = "text/plain"
        for chunk in STREAM_CHUNKS:
            produced.append(chunk)
            yield chunk

    @app.get("/error")
    def error() -> None:
        raise RuntimeError("view failed")

    @app.get("/health")
    def health() -> str:
        bottle.response.content_type = "text/plain"
        return "ok"

    return app


class BottleHarness(HarnessBase):
    name = "bottle"

    def setup(self) -> None:
        self.app = standard_app(self.produced)
        self.plugin = self.app.install(MoesifPlugin(self.settings))
        self.client = webtest.TestApp(self.app)

    @property
    def integration(self) -> Any:
        return self.plugin

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Optional[Dict[str, str]] = None,
        query: str = "",
    ) -> Reply:
        return self.webtest_request(self.client, method, path, body, headers, query)

    def stream_probe(self) -> StreamProbe:
        return self.probe_wsgi(self.app)


HARNESS = BottleHarness
