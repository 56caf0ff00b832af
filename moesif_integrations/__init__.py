"""API analytics for Python web apps: capture every API call and ship it to Moesif.

``MoesifMiddleware`` wraps any WSGI app; the framework adapters live in
``moesif_integrations.flask``, ``.bottle``, ``.pyramid`` and ``.falcon``. ``MoesifClient`` serves
code outside a request (scripts, workers, cron jobs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["MoesifClient", "MoesifMiddleware", "Settings", "ConfigurationError", "__version__"]

if TYPE_CHECKING:
    from .client import MoesifClient
    from .core.config.schema import ConfigurationError, Settings
    from .wsgi import MoesifMiddleware


def __getattr__(name: str) -> Any:
    # Imported on first use, so ``python -m moesif_integrations.collector`` stays light.
    if name == "MoesifMiddleware":
        from .wsgi import MoesifMiddleware

        return MoesifMiddleware
    if name == "MoesifClient":
        from .client import MoesifClient

        return MoesifClient
    if name in ("Settings", "ConfigurationError"):
        from .core.config import schema

        return getattr(schema, name)
    raise AttributeError(name)
