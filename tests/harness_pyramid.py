"""Conformance harness for the Pyramid adapter, driven by WebTest (Pyramid's test client)."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional

import webtest
from harness import BIG_SIZE, STREAM_CHUNKS, HarnessBase, Reply, StreamProbe
from pyramid.config import Configurator
from pyramid.response import Response


def standard_app(settings: Dict[str, Any], produced: List[bytes]) -> Any:
    """The standard app in Pyramid; ``settings`` are Pyramid settings (``moesif.<key>``)."""
    config = Configurator(settings=settings)
    config.include("moesif_integrations.pyramid")

    def add(name: str, pattern: str, method: str, view: Any, **view_options: Any) -> None:
        config.add_route(name, pattern, request_method=method)
        config.add_view(view, route_name=name, **view_options)

    def item(request: Any) -> Any:
        return {"id": request.matchdict["id"]}

    def create(request: Any) -> Any:
        request.response.status = 201
        return {"received": request.json_body}

    def form(request: Any) -> Any:
        return Response(f"hello {request.POST['name']}".encode(), content_type="text/plain")

    def upload(request: Any) -> Any:
        return {"size": len(request.body)}

    def big(request: Any) -> Any:
        return Response(b"x" * BIG_SIZE, content_type="application/octet-stream")

    def stream(request: Any) -> Any:
        def chunks() -> Iterator[bytes]:
            for chunk in STREAM_CHUNKS:
                produced.append(chunk)
                yield chunk

        return Response(app_iter=chunks(), content_type="text/plain")

    def error(request: Any) -> Any:
        raise RuntimeError("view failed")

    def health(request: Any) -> Any:
        return Response(b"ok", content_type="text/plain")

    add("item", "/items/{id}", "GET", item, renderer="json")
    add("create", "/items", "POST", create, renderer="json")
    add("form", "/form", "POST", form)
    add("upload", "/upload", "POST", upload, renderer="json")
    add("big", "/big", "GET", big)
    add("stream", "/stream", "GET", stream)
    add("error", "/error", "GET", error)
    add("health", "/health", "GET", health)
    return config.make_wsgi_app()


def pyramid_settings(options: Dict[str, Any]) -> Dict[str, Any]:
    """moesifwsgi's upper-case keys as Pyramid settings keys."""
    return {f"moesif.{key.lower()}": value for key, value in options.items()}


class PyramidHarness(HarnessBase):
    name = "pyramid"

    def setup(self) -> None:
        self.app = standard_app(pyramid_settings(self.settings), self.produced)
        self.client = webtest.TestApp(self.app)

    @property
    def integration(self) -> Any:
        return self.app.registry["moesif"]

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Optional[Dict[str, str]] = None,
        query: str = "",
    ) -> Reply:
        try:
            return self.webtest_request(self.client, method, path, body, headers, query)
        except RuntimeError:
            # No exception view handles it: the WSGI server would answer 500.
            return Reply(500, {}, b"")

    def stream_probe(self) -> StreamProbe:
        # WebTest reads whole bodies; WebOb's call_application hands back the app's iterable.
        request = webtest.TestRequest.blank("/stream")
        _status, _headers, iterable = request.call_application(self.app)
        return self.probe(iterable)


HARNESS = PyramidHarness
