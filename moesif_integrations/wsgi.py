"""The generic WSGI middleware: ``app = MoesifMiddleware(app, settings)``.

Takes moesifwsgi's settings dict unchanged (see the README's option table); everything else is the
core's.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Optional, Union

from .core.recorder import Recorder
from .core.settings import Settings
from .core.wsgi_capture import StartResponse, WSGIApp, WsgiCapture

__all__ = ["MoesifMiddleware"]


class MoesifMiddleware:
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
        return capture(self.app, environ, start_response)

    # -- users, companies, subscriptions, actions: moesifwsgi's methods, without blocking ------
    # Each returns True when queued (with sync=True: when delivered) and False when not; a
    # missing required field (user_id, company_id, ...) raises ValueError. See core/api.py.

    def update_user(self, user_profile: Any, *, sync: bool = False) -> bool:
        if self.recorder is None:
            return False
        return self.recorder.api.update_user(user_profile, sync=sync)

    def update_users_batch(self, user_profiles: Any, *, sync: bool = False) -> bool:
        if self.recorder is None:
            return False
        return self.recorder.api.update_users_batch(user_profiles, sync=sync)

    def update_company(self, company_profile: Any, *, sync: bool = False) -> bool:
        if self.recorder is None:
            return False
        return self.recorder.api.update_company(company_profile, sync=sync)

    def update_companies_batch(self, companies_profiles: Any, *, sync: bool = False) -> bool:
        if self.recorder is None:
            return False
        return self.recorder.api.update_companies_batch(companies_profiles, sync=sync)

    def update_subscription(self, subscription: Any, *, sync: bool = False) -> bool:
        if self.recorder is None:
            return False
        return self.recorder.api.update_subscription(subscription, sync=sync)

    def update_subscriptions_batch(self, subscriptions: Any, *, sync: bool = False) -> bool:
        if self.recorder is None:
            return False
        return self.recorder.api.update_subscriptions_batch(subscriptions, sync=sync)

    def send_action(self, action: Any, *, sync: bool = False) -> bool:
        if self.recorder is None:
            return False
        return self.recorder.api.send_action(action, sync=sync)

    def send_actions_batch(self, actions: Any, *, sync: bool = False) -> bool:
        if self.recorder is None:
            return False
        return self.recorder.api.send_actions_batch(actions, sync=sync)

    # -- lifecycle -------------------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Delivers what is queued; True when all of it reached the collector in time."""
        return self.recorder.flush(timeout) if self.recorder else True

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Flushes within ``timeout`` (default SHUTDOWN_TIMEOUT) and stops the sender threads."""
        return self.recorder.shutdown(timeout) if self.recorder else True

    def stats(self) -> Dict[str, int]:
        """Counters: captured, sent, skipped, sampled_out, dropped_*, failed, queued, ..."""
        if self.recorder is None:
            return {}
        return self.recorder.stats()
