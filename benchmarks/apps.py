"""The benchmarked apps: one small JSON API per framework, bare or with an integration installed.

Every app answers the same two requests (``drivers.GET_ITEM``, ``drivers.POST_ITEM``):
``GET /items/42?verbose=1`` returns a small JSON object; ``POST /items`` parses a 1 KB JSON body
and answers 201 with a small JSON object. Each call of a builder makes a fresh app, so scenarios
never share an app, an integration or its queue.

Integrations: ``bare`` (nothing), ``generic`` (this project's ``MoesifMiddleware`` around the WSGI
callable), ``ours`` (this project's adapter for the framework, its idiomatic install) and
``moesifwsgi`` (the incumbent around the WSGI callable, as its README shows).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

INTEGRATIONS = ("bare", "generic", "generic-process", "ours", "moesifwsgi")


@dataclass
class BuiltApp:
    """An app ready to be driven, and the integration object behind it (None when bare)."""

    app: Callable[..., Any]
    asgi: bool
    integration: Any = None

    def stats(self) -> Dict[str, int]:
        stats = getattr(self.integration, "stats", None)
        return dict(stats()) if stats is not None else {}

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stops the integration's threads while its collector still runs."""
        if _is_moesifwsgi(self.integration):
            # Its at-exit handler: stops the config job (every 60 s, against a collector that
            # may be gone by then) and its batcher and workers, after they drained.
            self.integration._shutdown()
            return
        shutdown = getattr(self.integration, "shutdown", None)
        if shutdown is not None:
            shutdown(timeout)


def _is_moesifwsgi(integration: Any) -> bool:
    return type(integration).__module__.startswith("moesifwsgi")


@dataclass(frozen=True)
class BenchSettings:
    """The settings every integration gets: the project's defaults plus the collector, and the
    batching the brief fixes for both sides (100 events, 1 s)."""

    base_uri: str
    application_id: str = "bench"
    batch_size: int = 100
    batch_timeout: float = 1.0
    queue_size: Optional[int] = None  # None: this project's default

    def ours(self) -> Dict[str, Any]:
        settings: Dict[str, Any] = {
            "APPLICATION_ID": self.application_id,
            "BASE_URI": self.base_uri,
            "BATCH_SIZE": self.batch_size,
            "EVENT_BATCH_TIMEOUT": self.batch_timeout,
        }
        if self.queue_size is not None:
            settings["EVENT_QUEUE_SIZE"] = self.queue_size
        return settings

    def moesifwsgi(self) -> Dict[str, Any]:
        return {
            "APPLICATION_ID": self.application_id,
            "BASE_URI": self.base_uri,
            "LOG_BODY": True,
            "BATCH_SIZE": self.batch_size,
            "EVENT_BATCH_TIMEOUT": self.batch_timeout,
        }


def wrap_generic(wsgi_app: Callable[..., Any], settings: BenchSettings) -> Any:
    from moesif_integrations import MoesifMiddleware

    return MoesifMiddleware(wsgi_app, settings.ours())


def wrap_generic_process(wsgi_app: Callable[..., Any], settings: BenchSettings) -> Any:
    """The generic middleware with DELIVERY_PROCESS: events built and sent by another process."""
    from moesif_integrations import MoesifMiddleware

    return MoesifMiddleware(wsgi_app, {**settings.ours(), "DELIVERY_PROCESS": True})


def wrap_moesifwsgi(wsgi_app: Callable[..., Any], settings: BenchSettings) -> Any:
    from moesifwsgi import MoesifMiddleware

    return MoesifMiddleware(wsgi_app, settings.moesifwsgi())


def wrap_generic_disabled(wsgi_app: Callable[..., Any], settings: BenchSettings) -> Any:
    """The generic middleware with ENABLED false: the floor a sampled-out request is held to."""
    from moesif_integrations import MoesifMiddleware

    return MoesifMiddleware(wsgi_app, {**settings.ours(), "ENABLED": False})


# Sampling and governance scenarios: app config and rules documents, in force from the first
# request (the collector's own are never fetched).
_NO_MATCH_RULES = [
    {
        "_id": f"rule-{number}",
        "type": "regex",
        "block": True,
        "regex_config": [
            {"conditions": [{"path": "request.route", "value": f"^/never/{number}/"}]}
        ],
        "response": {"status": 403, "body": {"error": "blocked"}},
    }
    for number in range(50)
]
DECISION_DOCUMENTS: Dict[str, Tuple[Dict[str, Any], Any]] = {
    # 50 regex rules loaded, none matching.
    "generic-rules50": ({}, _NO_MATCH_RULES),
    # The benchmarked routes sampled at 0%: every request dropped from the route alone.
    "generic-sampled-out": (
        {
            "regex_config": [
                {"conditions": [{"path": "request.route", "value": "^/items"}], "sample_rate": 0}
            ]
        },
        [],
    ),
    # 10% of the requests kept, each standing for 10.
    "generic-sample10": ({"sample_rate": 10}, []),
}


def wrap_generic_decided(name: str) -> Callable[[Callable[..., Any], BenchSettings], Any]:
    def wrap(wsgi_app: Callable[..., Any], settings: BenchSettings) -> Any:
        from moesif_integrations.core.decide.decisions import compile_decisions
        from moesif_integrations.core.logs import LogOnce

        middleware = wrap_generic(wsgi_app, settings)
        config, rules = DECISION_DOCUMENTS[name]
        app_config = middleware.pipeline.app_config
        app_config.started = True  # these documents, not the collector's
        app_config.decisions = compile_decisions(config, rules, name, LogOnce())
        return middleware

    return wrap


WRAPPERS = {
    "generic": wrap_generic,
    "generic-process": wrap_generic_process,
    "moesifwsgi": wrap_moesifwsgi,
    "generic-disabled": wrap_generic_disabled,
    **{name: wrap_generic_decided(name) for name in DECISION_DOCUMENTS},
}
# The rows of the sampling and governance comparison, beside full capture ("generic").
DECISION_INTEGRATIONS = ("generic-disabled", *DECISION_DOCUMENTS)


ITEM = {"id": 42, "name": "widget", "price": 9.99, "tags": ["blue", "large"], "in_stock": True}


# ------------------------------------------------------------------------------------ Flask


def build_flask(integration: str, settings: BenchSettings) -> BuiltApp:
    from flask import Flask, request

    app = Flask("bench_flask")

    @app.get("/items/<int:item_id>")
    def get_item(item_id: int) -> Any:
        return dict(ITEM, id=item_id)

    @app.post("/items")
    def create_item() -> Any:
        data = request.get_json()
        return {"id": 43, "name": data["name"], "fields": len(data)}, 201

    if integration == "bare":
        return BuiltApp(app, asgi=False)
    if integration == "ours":
        from moesif_integrations.flask import Moesif

        return BuiltApp(app, asgi=False, integration=Moesif(app, settings.ours()))
    # The incumbent's README wraps app.wsgi_app; the generic middleware goes in the same place.
    wrapped = WRAPPERS[integration](app.wsgi_app, settings)
    app.wsgi_app = wrapped
    return BuiltApp(app, asgi=False, integration=wrapped)


# ----------------------------------------------------------------------------------- Bottle


def build_bottle(integration: str, settings: BenchSettings) -> BuiltApp:
    import bottle

    app = bottle.Bottle()

    @app.get("/items/<item_id:int>")
    def get_item(item_id: int) -> Any:
        return dict(ITEM, id=item_id)

    @app.post("/items")
    def create_item() -> Any:
        data = bottle.request.json
        bottle.response.status = 201
        return {"id": 43, "name": data["name"], "fields": len(data)}

    if integration == "bare":
        return BuiltApp(app, asgi=False)
    if integration == "ours":
        from moesif_integrations.bottle import MoesifPlugin

        plugin = MoesifPlugin(settings.ours())
        app.install(plugin)
        return BuiltApp(app, asgi=False, integration=plugin)
    wrapped = WRAPPERS[integration](app, settings)
    return BuiltApp(wrapped, asgi=False, integration=wrapped)


# ---------------------------------------------------------------------------------- Pyramid


def _pyramid_get_item(request: Any) -> Any:
    return dict(ITEM, id=int(request.matchdict["item_id"]))


def _pyramid_create_item(request: Any) -> Any:
    data = request.json_body
    request.response.status_int = 201
    return {"id": 43, "name": data["name"], "fields": len(data)}


def build_pyramid(integration: str, settings: BenchSettings) -> BuiltApp:
    from pyramid.config import Configurator

    config_settings: Dict[str, Any] = {}
    if integration == "ours":
        # The .ini way: string values under moesif.<option>.
        config_settings = {
            f"moesif.{key.lower()}": str(value) for key, value in settings.ours().items()
        }
    with Configurator(settings=config_settings) as config:
        config.add_route("item", "/items/{item_id}", request_method="GET")
        config.add_route("items", "/items", request_method="POST")
        config.add_view(_pyramid_get_item, route_name="item", renderer="json")
        config.add_view(_pyramid_create_item, route_name="items", renderer="json")
        if integration == "ours":
            config.include("moesif_integrations.pyramid")
    app = config.make_wsgi_app()
    if integration == "bare":
        return BuiltApp(app, asgi=False)
    if integration == "ours":
        return BuiltApp(app, asgi=False, integration=_pyramid_integration(app))
    wrapped = WRAPPERS[integration](app, settings)
    return BuiltApp(wrapped, asgi=False, integration=wrapped)


def _pyramid_integration(app: Any) -> Any:
    """The adapter's flush/stats object, wherever the adapter keeps it in the registry."""
    registry = app.registry
    found = getattr(registry, "moesif", None)
    if found is None:
        try:
            found = registry["moesif"]
        except (KeyError, TypeError):
            found = None
    return found


# ----------------------------------------------------------------------------------- Falcon


class _FalconItem:
    def on_get(self, req: Any, resp: Any, item_id: int) -> None:
        resp.media = dict(ITEM, id=item_id)


class _FalconItems:
    def on_post(self, req: Any, resp: Any) -> None:
        import falcon

        data = req.get_media()
        resp.status = falcon.HTTP_201
        resp.media = {"id": 43, "name": data["name"], "fields": len(data)}


class _FalconAsyncItem:
    async def on_get(self, req: Any, resp: Any, item_id: int) -> None:
        resp.media = dict(ITEM, id=item_id)


class _FalconAsyncItems:
    async def on_post(self, req: Any, resp: Any) -> None:
        import falcon

        data = await req.get_media()
        resp.status = falcon.HTTP_201
        resp.media = {"id": 43, "name": data["name"], "fields": len(data)}


def build_falcon(integration: str, settings: BenchSettings) -> BuiltApp:
    import falcon

    middleware = []
    ours = None
    if integration == "ours":
        from moesif_integrations.falcon import MoesifMiddleware

        ours = MoesifMiddleware(settings.ours())
        middleware.append(ours)
    app = falcon.App(middleware=middleware)
    app.add_route("/items/{item_id:int}", _FalconItem())
    app.add_route("/items", _FalconItems())
    if integration in ("bare", "ours"):
        return BuiltApp(app, asgi=False, integration=ours)
    wrapped = WRAPPERS[integration](app, settings)
    return BuiltApp(wrapped, asgi=False, integration=wrapped)


def build_falcon_asgi(integration: str, settings: BenchSettings) -> BuiltApp:
    import falcon.asgi

    middleware = []
    ours = None
    if integration == "ours":
        from moesif_integrations.falcon import MoesifMiddleware

        ours = MoesifMiddleware(settings.ours())
        middleware.append(ours)
    app = falcon.asgi.App(middleware=middleware)
    app.add_route("/items/{item_id:int}", _FalconAsyncItem())
    app.add_route("/items", _FalconAsyncItems())
    return BuiltApp(app, asgi=True, integration=ours)


# --------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Framework:
    """A benchmarked framework: how to build its app, which package it needs, what applies."""

    name: str
    label: str
    build: Callable[[str, BenchSettings], BuiltApp]
    distribution: str
    adapter_module: str
    wsgi: bool = True


FRAMEWORKS: Tuple[Framework, ...] = (
    Framework("flask", "Flask", build_flask, "flask", "moesif_integrations.flask"),
    Framework("bottle", "Bottle", build_bottle, "bottle", "moesif_integrations.bottle"),
    Framework("pyramid", "Pyramid", build_pyramid, "pyramid", "moesif_integrations.pyramid"),
    Framework("falcon", "Falcon (WSGI)", build_falcon, "falcon", "moesif_integrations.falcon"),
    Framework(
        "falcon-asgi",
        "Falcon (ASGI)",
        build_falcon_asgi,
        "falcon",
        "moesif_integrations.falcon",
        wsgi=False,
    ),
)


def missing(module: str) -> Optional[str]:
    """Why ``module`` cannot be imported, or None when it can."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # an adapter being written may fail in any way on import
        return f"{type(exc).__name__}: {exc}"
    return None


def version_of(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
