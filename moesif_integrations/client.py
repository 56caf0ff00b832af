"""``MoesifClient``: Moesif for code outside a request (scripts, queue workers, cron jobs).

The same settings as every integration (a settings dict with moesifwsgi's keys or a Settings
object, keyword options on top, the environment underneath), the profile and action calls every
integration has, and the switch for capturing the process's outgoing HTTP calls. Used as a
context manager, it flushes on exit.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Mapping, Optional, Type, Union

from .core import IntegrationMethods, Pipeline, Settings

__all__ = ["MoesifClient"]


class MoesifClient(IntegrationMethods):
    """Sends users, companies, subscriptions and actions (and, with CAPTURE_OUTGOING_REQUESTS or
    ``capture_outgoing()``, the process's outgoing calls) in the background. Nothing touches the
    network until something is sent."""

    def __init__(
        self, settings: Union[Mapping[str, Any], Settings, None] = None, **options: Any
    ) -> None:
        settings = Settings.resolve(settings, options)
        self.settings: Settings = settings
        self.enabled = settings.enabled
        self.pipeline = Pipeline(settings) if self.enabled else None

    def capture_outgoing(self, enabled: bool = True) -> None:
        """Starts (or with ``False`` stops) capturing the outgoing calls this process makes with
        requests, httpx and urllib3, as events with this client's options."""
        if self.pipeline is not None:
            self.pipeline.capture_outgoing(enabled)

    @property
    def capturing_outgoing(self) -> bool:
        """Whether outgoing calls are being captured for this client."""
        return self.pipeline is not None and self.pipeline.outgoing is not None

    def __enter__(self) -> MoesifClient:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.flush(self.settings.shutdown_timeout)
