"""The Flask side of the WSGI capture: the route, Flask-Login's user and unhandled exceptions."""

from __future__ import annotations

import importlib
from typing import Any, Dict, Iterable, Optional

import flask

from ..core import EXCHANGE_ENVIRON_KEY, Exchange, StartResponse, WSGIApp, WsgiCapture

_UNHANDLED_KEY = "moesif.flask.unhandled_exception"
# Where Werkzeug keeps the request of an environ: Flask's own, with its url_rule.
_REQUEST_KEY = "werkzeug.request"


class FlaskCapture(WsgiCapture):
    """The WSGI capture of one Flask app, plus what Flask knows about the request."""

    def framework_route(self, environ: Optional[Dict[str, Any]]) -> Optional[str]:
        request = environ.get(_REQUEST_KEY) if environ is not None else None
        rule = getattr(request, "url_rule", None)
        return rule.rule if rule is not None else None

    def framework_user(self, environ: Optional[Dict[str, Any]]) -> Optional[str]:
        user: Optional[str] = None
        if self._uses_flask_login() and flask.has_request_context():
            user = self.sink.call_hook("Flask-Login current_user", _flask_login_user)
        return user or super().framework_user(environ)

    def _uses_flask_login(self) -> bool:
        return getattr(self.hook_app, "login_manager", None) is not None

    def teardown(self, error: Optional[BaseException] = None) -> None:
        """``teardown_request``: runs the identification hooks while ``request``, ``g`` and
        Flask-Login's ``current_user`` are still there, on success and failure alike, and makes
        the status of a request that failed 500. An app with neither hooks nor Flask-Login needs
        nothing from the request context: its exchange identifies itself at the end."""
        if error is None and not (self.has_identity_hooks or self._uses_flask_login()):
            return
        try:
            environ = flask.request.environ
            exchange = environ.get(EXCHANGE_ENVIRON_KEY)
            if not isinstance(exchange, Exchange) or exchange.capture is not self:
                return  # skipped, or the exchange of another app in the same WSGI stack
            if environ.pop(_UNHANDLED_KEY, False) and not 500 <= exchange.status < 600:
                # An error handler may have answered with another status; the request failed.
                exchange.status = 500
            exchange.identify()
        except Exception:
            self.sink.capture_failed("flask teardown")

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
