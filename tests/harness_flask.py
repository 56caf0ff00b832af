"""Conformance harness for the Flask extension, driven by Flask's own test client."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional

import flask
from harness import BIG_SIZE, STREAM_CHUNKS, HarnessBase, Reply, StreamProbe

from moesif_integrations.flask import Moesif


def standard_app(produced: List[bytes]) -> flask.Flask:
    app = flask.Flask("conformance")

    @app.get("/items/<item_id>")
    def get_item(item_id: str) -> Any:
        return {"id": item_id}

    @app.post("/items")
    def create_item() -> Any:
        return {"received": flask.request.get_json()}, 201

    @app.post("/form")
    def form() -> Any:
        return f"hello {flask.request.form['name']}", 200, {"Content-Type": "text/plain"}

    @app.post("/upload")
    def upload() -> Any:
        return {"size": len(flask.request.get_data())}

    @app.get("/big")
    def big() -> Any:
        return flask.Response(b"x" * BIG_SIZE, mimetype="application/octet-stream")

    @app.get("/stream")
    def stream() -> Any:
        def chunks() -> Iterator[bytes]:
            for chunk in STREAM_CHUNKS:
                produced.append(chunk)
                yield chunk

        return flask.Response(chunks(), mimetype="text/plain")

    @app.get("/error")
    def error() -> Any:
        raise RuntimeError("view failed")

    @app.get("/health")
    def health() -> Any:
        return "ok", 200, {"Content-Type": "text/plain"}

    return app


class FlaskHarness(HarnessBase):
    name = "flask"

    def setup(self) -> None:
        self.app = standard_app(self.produced)
        self.moesif = Moesif(self.app, self.settings)
        self.client = self.app.test_client()

    @property
    def integration(self) -> Any:
        return self.moesif

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Optional[Dict[str, str]] = None,
        query: str = "",
    ) -> Reply:
        response = self.client.open(
            path, method=method, data=body, headers=headers, query_string=query
        )
        return self.reply_of(response.status_code, response.headers.items(), response.get_data())

    def stream_probe(self) -> StreamProbe:
        response = self.client.get("/stream", buffered=False)
        return self.probe(response.response, response.close)


HARNESS = FlaskHarness
