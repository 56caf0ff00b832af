"""Pyramid: ``config.include("moesif_integrations.pyramid")``.

Settings are the app's ``moesif.<option>`` keys (``moesif.application_id``, ``moesif.log_body``,
...; see ``settings.py``) over ``MOESIF_<KEY>`` environment variables; they are checked when the
include runs. The integration (``flush(timeout)``, ``shutdown(timeout)``, ``stats()``) is
``registry["moesif"]``: ``config.registry["moesif"]`` or ``request.registry["moesif"]``.

A tween over ``EXCVIEW`` records each request, so responses that exception views render keep their
real status; an exception no view handles is recorded as 500 and re-raised. An explicit
``pyramid.tweens`` list must name ``moesif_integrations.pyramid.tween_factory`` above
``pyramid.tweens.excview_tween_factory``; a list without it is reported once, at start-up.
A request with ``If-None-Match``, ``If-Modified-Since`` or ``Range`` answered by a response marked
``conditional_response`` (files, static views) is left whole to WebOb, which may answer 304 or
206 as it sends it: its event has no body and the status the response object had.

Hooks keep moesifwsgi's signatures, ``app`` being the Pyramid registry:
``SKIP(app, environ)``, ``IDENTIFY_USER(app, environ, response_headers)``,
``IDENTIFY_COMPANY(app, environ, response_headers)``, ``GET_METADATA(app, environ)``,
``GET_SESSION_TOKEN(app, environ)``. They run inside the tween, so the Pyramid request is there:
``environ["moesif.request"]``. Without IDENTIFY_USER the user is ``request.authenticated_userid``,
else ``REMOTE_USER``, else the Authorization header. The route is ``request.matched_route.pattern``.
"""

from __future__ import annotations

from typing import Any

from pyramid.interfaces import ITweens  # type: ignore[import-untyped]
from pyramid.tweens import EXCVIEW, INGRESS, excview_tween_factory  # type: ignore[import-untyped]

from ..core import IntegrationMethods, Pipeline, Settings, logger
from .settings import MoesifConfigurationError, load_settings
from .tween import REQUEST_ENVIRON_KEY, Handler, MoesifTween, PyramidCapture

__all__ = [
    "REGISTRY_KEY",
    "REQUEST_ENVIRON_KEY",
    "TWEEN_FACTORY",
    "Moesif",
    "MoesifConfigurationError",
    "includeme",
    "tween_factory",
]

REGISTRY_KEY = "moesif"
TWEEN_FACTORY = "moesif_integrations.pyramid.tween_factory"


def includeme(config: Any) -> None:
    """Reads and checks the settings, registers the integration and its tween."""
    moesif = Moesif(load_settings(config))
    config.registry[REGISTRY_KEY] = moesif
    config.add_tween(TWEEN_FACTORY, over=EXCVIEW, under=INGRESS)
    if moesif.enabled:
        # An action runs after the explicit tween list (read at construction) is registered.
        config.action(None, _check_tween_chain, args=(config.registry,))


class Moesif(IntegrationMethods):
    """One Pyramid app's integration: its settings and delivery."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.pipeline = Pipeline(settings) if self.enabled else None


def tween_factory(handler: Handler, registry: Any) -> Handler:
    """Pyramid calls this to build the tween chain."""
    moesif = registry.get(REGISTRY_KEY)
    if not isinstance(moesif, Moesif):
        raise MoesifConfigurationError(
            f"{TWEEN_FACTORY} needs config.include('moesif_integrations.pyramid')"
        )
    if moesif.pipeline is None:
        return handler  # disabled: a pass-through
    return MoesifTween(handler, PyramidCapture(moesif.pipeline, hook_app=registry))


def _check_tween_chain(registry: Any) -> None:
    tweens = registry.queryUtility(ITweens)
    explicit = [factory for _name, factory in getattr(tweens, "explicit", ())]
    if not explicit:
        return  # the implicit chain, where add_tween put the tween over EXCVIEW
    if tween_factory not in explicit:
        logger.warning(
            "pyramid.tweens lists the tweens without %s: no request will be captured; "
            "add it above %s",
            TWEEN_FACTORY,
            EXCVIEW,
        )
        return
    if excview_tween_factory in explicit[: explicit.index(tween_factory)]:
        logger.warning(
            "pyramid.tweens lists %s under %s: responses rendered from exceptions will be "
            "recorded as 500; move it above",
            TWEEN_FACTORY,
            EXCVIEW,
        )
