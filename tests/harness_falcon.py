"""Conformance harness for the Falcon middleware on ``falcon.App`` (WSGI), driven by Falcon's own
test client (``falcon.testing``)."""

from __future__ import annotations

import sys
from typing import Any, Dict, Iterator, List, Optional, Tuple

import falcon
import falcon.testing
from harness import BIG_SIZE, STREAM_CHUNKS, HarnessBase, Reply, StreamProbe

from moesif_integrations.falcon import MoesifMiddleware


class Item:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = {"id": item_id}


class Items:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"received": req.get_media()}
        resp.status = falcon.HTTP_201


class Form:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = req.get_media()  # Falcon's urlencoded form handler
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = f"hello {form['name']}"


class Upload:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"size": len(req.bounded_stream.read())}


class Big:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "application/octet-stream"
        resp.data = b"x" * BIG_SIZE


class Stream:
    def __init__(self, produced: List[bytes]) -> None:
        self.produced = produced

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def chunks() -> Iterator[bytes]:
            for chunk in STREAM_CHUNKS:
                self.produced.append(chunk)
                yield chunk

        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = chunks()


class Error:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise RuntimeError("view failed")


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "ok"


def add_standard_routes(app: Any, resources: Any, produced: List[bytes]) -> Any:
    """The standard app's routes on ``app``, served by the resource classes of ``resources`` (a
    module defining Item, Items, Form, Upload, Big, Stream, Error and Health)."""
    routes = {
        "/items/{item_id}": resources.Item(),
        "/items": resources.Items(),
        "/form": resources.Form(),
        "/upload": resources.Upload(),
        "/big": resources.Big(),
        "/stream": resources.Stream(produced),
        "/error": resources.Error(),
        "/health": resources.Health(),
    }
    for path, resource in routes.items():
        app.add_route(path, resource)
    return app


def standard_app(middleware: MoesifMiddleware, produced: List[bytes]) -> falcon.App:
    app = falcon.App(middleware=[middleware])
    return add_standard_routes(app, sys.modules[__name__], produced)


class FalconHarness(HarnessBase):
    name = "falcon"

    def setup(self) -> None:
        self.middleware = MoesifMiddleware(self.settings)
        self.app = self.make_app()
        self.client = falcon.testing.TestClient(self.app)

    def make_app(self) -> Any:
        return standard_app(self.middleware, self.produced)

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
        result = self.client.simulate_request(
            method, path, body=body or None, headers=headers, query_string=query or None
        )
        return self.reply_of(result.status_code, result.headers.items(), result.content)

    def stream_probe(self) -> StreamProbe:
        # The WSGI call by hand, so the body can be read one chunk at a time.
        start_response = falcon.testing.StartResponseMock()
        return self.probe(self.app(falcon.testing.create_environ("/stream"), start_response))

    def path_of(self, hook_args: Tuple[Any, ...]) -> str:
        return str(hook_args[0].path)


HARNESS = FalconHarness
