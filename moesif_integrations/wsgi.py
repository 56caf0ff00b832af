"""The generic WSGI middleware: ``app = MoesifMiddleware(app, settings)``.

Takes moesifwsgi's settings dict unchanged (see the README's option table); everything else is the
core's.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Union

from .core import IntegrationMethods, Pipeline, Settings, StartResponse, WSGIApp, WsgiCapture

__all__ = ["MoesifMiddleware"]


class MoesifMiddleware(IntegrationMethods):
    """Records every request to ``app`` as a Moesif event and ships it in the background."""

    def __init__(
        self,
        app: WSGIApp,
        settings: Union[Mapping[str, Any], Settings, None] = None,
        **options: Any,
    ) -> None:
        settings = Settings.resolve(settings, options)
        self.app = app
        self.settings: Settings = settings
        self.enabled = settings.enabled
        self.pipeline = Pipeline(settings) if self.enabled else None
        self._capture = WsgiCapture(self.pipeline, hook_app=app) if self.pipeline else None

    def __call__(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        capture = self._capture
        if capture is None:
            return self.app(environ, start_response)
        return capture.serve(self.app, environ, start_response)

    # -- users, companies, subscriptions, actions: moesifwsgi's methods, without blocking ------
    # Each returns True when queued (with sync=True: when delivered) and False when not; a
    # missing required field (user_id, company_id, ...) raises ValueError. See core/api.py.

    # -- lifecycle -------------------------------------------------------------------------
