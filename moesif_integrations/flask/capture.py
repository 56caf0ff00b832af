"""The Flask side of the WSGI capture: the request context's facts (route, user, failures)."""

from __future__ import annotations

import importlib
from typing import Any, Dict, Iterable, Optional

import flask

from ..core.capture.wsgi import (
    EXCHANGE_ENVIRON_KEY,
    StartResponse,
    WSGIApp,
    WsgiCapture,
    WsgiExchange,
)

_UNHANDLED_KEY = "moesif.flask.unhandled_exception"


class FlaskCapture(WsgiCapture):
    """The WSGI capture of one Flask app, plus what Flask knows inside its request context."""

    def framework_user(self, environ: Dict[str, Any]) -> Optional[str]:
        user: Optional[str] = None
        uses_flask_login = getattr(self.hook_app, "login_manager", None) is not None
        if uses_flask_login and flask.has_request_context():
            user = self.pipeline.call_hook("Flask-Login current_user", _flask_login_user)
        return user or super().framework_user(environ)

    def teardown(self, error: Optional[BaseException] = None) -> None:
        """``teardown_request``: runs the identification hooks while ``request`` and ``g`` are
        still there, on success and failure alike."""
        try:
            environ = flask.request.environ
            exchange = environ.get(EXCHANGE_ENVIRON_KEY)
            if not isinstance(exchange, WsgiExchange) or exchange.capture is not self:
                return  # skipped, or the exchange of another app in the same WSGI stack
            rule = flask.request.url_rule
            if rule is not None:
                exchange.route = rule.rule
            failed = environ.pop(_UNHANDLED_KEY, False)
            if failed and not (exchange.status_line or "").startswith("5"):
                # An error handler may have answered with another status; the request failed.
                exchange.status_line = "500 INTERNAL SERVER ERROR"
            exchange.identify()
        except Exception:
            self.pipeline.capture_failed("flask teardown")

    def note_exception(self, sender: Any, **extra: Any) -> None:
        """``got_request_exception``: comes before the error response, so teardown acts on it."""
        if flask.has_request_context():
            flask.request.environ[_UNHANDLED_KEY] = True


def _flask_login_user() -> Optional[str]:
    # Imported only for apps that set up a LoginManager: Flask-Login is not a dependency.
    current_user = importlib.import_module("flask_login").current_user
    if current_user is None or not current_user.is_authenticated:
        return None
    user_id = current_user.get_id()
    return str(user_id) if user_id else None


class CapturedWsgiApp:
    """What ``app.wsgi_app`` becomes: sees 404s, errors and streamed bodies like any WSGI app."""

    __slots__ = ("wsgi_app", "capture")

    def __init__(self, wsgi_app: WSGIApp, capture: FlaskCapture) -> None:
        self.wsgi_app = wsgi_app
        self.capture = capture

    def __call__(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return self.capture.serve(self.wsgi_app, environ, start_response)
