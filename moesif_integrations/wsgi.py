"""The generic WSGI middleware: ``app = MoesifMiddleware(app, settings)``.

Takes moesifwsgi's settings dict unchanged (see the README's option table); everything else is the
core's.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Union

from .core.integration import RecorderMethods
from .core.recorder import Recorder
from .core.settings import Settings
from .core.wsgi_capture import StartResponse, WSGIApp, WsgiCapture

__all__ = ["MoesifMiddleware"]


class MoesifMiddleware(RecorderMethods):
    """Records every request to ``app`` as a Moesif event and ships it in the background."""

    def __init__(
        self,
        app: WSGIApp,
        settings: Union[Mapping[str, Any], Settings, None] = None,
        **options: Any,
    ) -> None:
        if isinstance(settings, Settings):
            if options:
                settings = settings.merged(options)
        else:
            merged = dict(settings or {})
            merged.update(options)
            settings = Settings.load(merged)
        self.app = app
        self.settings: Settings = settings
        self.enabled = settings.enabled
        self.recorder = Recorder(settings) if self.enabled else None
        self._capture = WsgiCapture(self.recorder, hook_app=app) if self.recorder else None

    def __call__(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        capture = self._capture
        if capture is None:
            return self.app(environ, start_response)
        return capture.serve(self.app, environ, start_response)

    # -- users, companies, subscriptions, actions: moesifwsgi's methods, without blocking ------
    # Each returns True when queued (with sync=True: when delivered) and False when not; a
    # missing required field (user_id, company_id, ...) raises ValueError. See core/api.py.

    # -- lifecycle -------------------------------------------------------------------------
