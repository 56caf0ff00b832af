"""Flask: ``moesif = Moesif(app, settings)``, or ``Moesif()`` then ``moesif.init_app(app)``.

Settings, first that sets an option wins: the constructor's (moesifwsgi's settings dict, and
keyword options), ``app.config["MOESIF_<KEY>"]`` (text values such as ``"false"`` or
``"package.module:function"`` are parsed), ``MOESIF_<KEY>`` environment variables, defaults.
One ``Moesif`` may serve several apps (the application factory); each app gets its own settings
and its own delivery, reachable as ``app.extensions["moesif"]`` (a ``MoesifApp``).

Hooks keep moesifwsgi's signatures, ``app`` being the Flask app:
``SKIP(app, environ)``, ``IDENTIFY_USER(app, environ, response_headers)``,
``IDENTIFY_COMPANY(app, environ, response_headers)``, ``GET_METADATA(app, environ)``,
``GET_SESSION_TOKEN(app, environ)``. SKIP runs before Flask sees the request (no request
context); the other four run once, in ``teardown_request``, so ``flask.request``, ``flask.g`` and
Flask-Login's ``current_user`` work inside them (the response body is not produced yet there).
Without IDENTIFY_USER the user is Flask-Login's authenticated ``current_user.get_id()`` (when the
app has a LoginManager), else ``REMOTE_USER``, else the Authorization header. The route is
``request.url_rule.rule``. An exception that Flask reports through ``got_request_exception``
makes the event's status 500, even when an error handler answered with another status.
"""

from __future__ import annotations

import time
import weakref
from typing import Any, Dict, Mapping, Optional, Union

import flask
from flask.signals import got_request_exception

from ..core import IntegrationMethods, Pipeline, Settings, SettingsLayer
from .capture import CapturedWsgiApp, FlaskCapture

__all__ = ["Moesif", "MoesifApp"]

CONFIG_PREFIX = "MOESIF_"
CONFIG_SOURCE = "Flask app.config"
EXTENSION_KEY = "moesif"


class MoesifApp(IntegrationMethods):
    """The integration on one Flask app: ``app.extensions["moesif"]``."""

    def __init__(self, extension: Moesif, app: flask.Flask, settings: Settings) -> None:
        self.extension = extension
        self.settings = settings
        self.enabled = settings.enabled
        self.pipeline = Pipeline(settings) if self.enabled else None
        if self.pipeline is None:
            return  # a pass-through: nothing hooked in
        capture = FlaskCapture(self.pipeline, hook_app=app)
        # First: Flask refuses it once the app has served a request, and then nothing has changed.
        app.teardown_request(capture.teardown)
        app.wsgi_app = CapturedWsgiApp(app.wsgi_app, capture)  # type: ignore[method-assign]
        # sender=app: several apps in one process each hear only their own exceptions.
        # The receiver is held weakly: the app keeps the capture alive, not the other way round.
        got_request_exception.connect(capture.note_exception, app)


class Moesif:
    """The Flask extension. ``flush``, ``shutdown`` and ``stats`` cover every app it serves."""

    def __init__(
        self,
        app: Optional[flask.Flask] = None,
        settings: Union[Mapping[str, Any], Settings, None] = None,
        **options: Any,
    ) -> None:
        self._settings = settings
        self._options = options
        self._apps: weakref.WeakSet[MoesifApp] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> MoesifApp:
        """Validates the settings for ``app`` (ConfigurationError) and hooks into it."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"Moesif is already set up on the Flask app {app.name!r}")
        integration = MoesifApp(self, app, self.settings_for(app))
        app.extensions[EXTENSION_KEY] = integration
        self._apps.add(integration)
        return integration

    def settings_for(self, app: flask.Flask) -> Settings:
        """The constructor's settings over ``app.config["MOESIF_<KEY>"]`` over the environment."""
        layer = SettingsLayer.prefixed(CONFIG_SOURCE, app.config, CONFIG_PREFIX)
        return Settings.resolve(self._settings, self._options, layer)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Delivers what every app queued; True when all of it arrived within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return all([app.flush(_remaining(deadline)) for app in list(self._apps)])

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Shuts every app's delivery down, all within ``timeout`` when given."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return all([app.shutdown(_remaining(deadline)) for app in list(self._apps)])

    def stats(self) -> Dict[str, int]:
        """The counters of every app served, added up (``app.extensions["moesif"].stats()``
        gives one app's)."""
        total: Dict[str, int] = {}
        for app in list(self._apps):
            for name, count in app.stats().items():
                total[name] = total.get(name, 0) + count
        return total


def _remaining(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
