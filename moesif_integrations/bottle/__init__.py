"""Bottle: ``app.install(MoesifPlugin(settings))``, a plugin of Bottle's plugin API v2.

Installing the plugin wraps the app's WSGI callable (``app.wsgi``), so every exchange is
recorded: 404s, errors and streamed bodies included, which a route plugin alone never sees.
Bottle hands ``apply`` each route the plugin applies to; a route opts out with
``skip=["moesif"]``, ``skip=[plugin]`` or ``moesif.enabled = False`` in its config
(``@app.get("/health", moesif={"enabled": False})``). ``close()`` (Bottle calls it on
``app.uninstall`` and ``app.close()``) unhooks the plugin and flushes what is queued.

Settings, first that sets an option wins: the constructor's (moesifwsgi's settings dict, and
keyword options), ``app.config["moesif.<key_in_lower_case>"]`` (text values such as ``"false"``
or ``"package.module:function"`` are parsed, as from ``app.config.load_config``), ``MOESIF_<KEY>``
environment variables, defaults. They are read when the plugin is installed.

Hooks keep moesifwsgi's signatures, ``app`` being the Bottle app: ``SKIP(app, environ)``,
``IDENTIFY_USER(app, environ, response_headers)``, ``IDENTIFY_COMPANY(app, environ,
response_headers)``, ``GET_METADATA(app, environ)``, ``GET_SESSION_TOKEN(app, environ)``. SKIP
runs before Bottle sees the request (``bottle.request`` is not bound yet: read ``environ``);
the other four run once, when the response has ended, on the thread that served it, where
``bottle.request`` is still this request. The route is the matched ``route.rule``. When an outer
Moesif capture (another plugin or ``MoesifMiddleware``) already records the request, this plugin
lets it through untouched: one event per exchange.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Set, Union

import bottle  # type: ignore[import-untyped]

from ..core import (
    EXCHANGE_ENVIRON_KEY,
    OPTIONS,
    IntegrationMethods,
    InvalidValueError,
    LogOnce,
    Pipeline,
    Settings,
    SettingsLayer,
    StartResponse,
    WsgiCapture,
    WsgiExchange,
)

__all__ = ["MoesifPlugin"]

CONFIG_PREFIX = "moesif."
CONFIG_SOURCE = "Bottle app.config"
ROUTE_SWITCH = "moesif.enabled"
_ENABLED = next(spec for spec in OPTIONS if spec.key == "ENABLED")


class BottleCapture(WsgiCapture):
    """The WSGI capture of one Bottle app, plus the route Bottle matched."""

    def framework_route(self, environ: Optional[Dict[str, Any]]) -> Optional[str]:
        route = environ.get("bottle.route") if environ is not None else None
        return str(route.rule) if route is not None else None


class MoesifPlugin(IntegrationMethods):
    """Records every request to the app it is installed on; one plugin per app."""

    name = "moesif"
    api = 2

    def __init__(
        self, settings: Union[Mapping[str, Any], Settings, None] = None, **options: Any
    ) -> None:
        self._settings = settings
        self._options = options
        self.app: Any = None
        self.settings: Optional[Settings] = None
        self.pipeline: Optional[Pipeline] = None
        self._capture: Optional[BottleCapture] = None
        self._served: Callable[..., Iterable[bytes]]  # app.wsgi as it was; set by setup
        self._routes: Set[Any] = set()  # routes of self.app that this plugin applies to
        self._problems = LogOnce()

    # ------------------------------------------------------------------ Bottle's plugin API

    def setup(self, app: Any) -> None:
        """Reads the settings (ConfigurationError) and wraps ``app.wsgi``."""
        if self.app is not None:
            raise bottle.PluginError("a MoesifPlugin serves one app: create one per app")
        if any(getattr(plugin, "name", None) == self.name for plugin in app.plugins):
            raise bottle.PluginError("a Moesif plugin is already installed on this app")
        self.settings = self.settings_for(app)
        self.app, self._routes = app, set()
        if not self.settings.enabled:
            return  # a pass-through: nothing hooked in
        self.pipeline = Pipeline(self.settings)
        self._capture = BottleCapture(self.pipeline, hook_app=app)
        self._served = app.wsgi
        app.wsgi = self._wsgi
        app.add_hook("after_request", self._after_request)
        app.add_hook("config", self._config_changed)

    def apply(self, callback: Callable[..., Any], route: Any) -> Callable[..., Any]:
        # Bottle calls this only for routes that do not skip the plugin; the callback itself
        # needs nothing from us, the WSGI wrapper records the exchange.
        if self._capture is not None and self._route_enabled(route):
            self._routes.add(route)
        if self.app is not None and self.app.config.get("_mount.app") is not None:
            # Bottle 0.13 merges a mounted app's routes into the parent, whose wsgi serves them.
            self._problems.log(
                "mounted",
                logging.WARNING,
                "this Bottle app is mounted into another one, which serves its routes: "
                "only a Moesif plugin installed on that app records them",
            )
        return callback

    def close(self) -> None:
        """Unhooks from the app and flushes (SHUTDOWN_TIMEOUT at most); Bottle calls it on
        ``app.uninstall(plugin)`` and ``app.close()``."""
        app, self.app, self._capture = self.app, None, None
        if app is not None and app.__dict__.get("wsgi") == self._wsgi:
            del app.wsgi
            if app.wsgi != self._served:
                app.wsgi = self._served  # a wrapper installed before ours
        if app is not None:
            app.remove_hook("after_request", self._after_request)
            app.remove_hook("config", self._config_changed)
        self.shutdown()

    # ------------------------------------------------------------------ the integration

    def settings_for(self, app: Any) -> Settings:
        """The constructor's settings over ``app.config["moesif.*"]`` over the environment."""
        layer = SettingsLayer.prefixed(CONFIG_SOURCE, app.config, CONFIG_PREFIX, upper=True)
        return Settings.resolve(self._settings, self._options, layer)

    # ------------------------------------------------------------------ per request

    def _wsgi(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        capture = self._capture
        if capture is None or EXCHANGE_ENVIRON_KEY in environ:
            return self._served(environ, start_response)
        return capture.serve(self._served, environ, start_response)

    def _after_request(self) -> None:
        """After routing, inside Bottle's request: drops the exchange of a skipped route."""
        capture = self._capture
        if capture is None:
            return
        try:
            environ = bottle.request.environ
            exchange = environ.get(EXCHANGE_ENVIRON_KEY)
            route = environ.get("bottle.route")
            if route is None or route in self._routes or not isinstance(exchange, WsgiExchange):
                return  # unrouted (404, 405) or captured
            if exchange.capture is not capture:
                return  # an outer capture's exchange
            ours = route.app is self.app and "mountpoint.target" not in route.config
            if ours or not self._route_enabled(route):
                exchange.discard()
                capture.sink.skip()
        except Exception:
            capture.sink.capture_failed("bottle after_request")

    def _route_enabled(self, route: Any) -> bool:
        value = route.config.get(ROUTE_SWITCH)
        if value is None:
            return True
        try:
            return bool(_ENABLED.convert(value, text=True))
        except InvalidValueError as error:
            self._problems.log(
                f"route-{route.rule}",
                logging.WARNING,
                "%s of route %s %s: got %r; expected %s. The route is captured",
                ROUTE_SWITCH,
                route.method,
                route.rule,
                value,
                error,
            )
            return True

    def _config_changed(self, *args: Any) -> None:
        # Bottle 0.12 passes (key, value), 0.13 (config, key, value); it must never raise.
        key = args[-2] if len(args) >= 2 else None
        if isinstance(key, str) and key.startswith(CONFIG_PREFIX):
            self._problems.log(
                f"config-{key}",
                logging.WARNING,
                "app.config[%r] changed after the Moesif plugin was installed and is ignored: "
                "set moesif.* keys before app.install()",
                key,
            )
