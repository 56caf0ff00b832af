"""Moesif API analytics for Falcon, WSGI and ASGI alike: one middleware class for both.

    import falcon
    from moesif_integrations.falcon import MoesifMiddleware

    moesif = MoesifMiddleware({"APPLICATION_ID": "..."})
    app = falcon.App(middleware=[moesif])          # or falcon.asgi.App(middleware=[moesif])

Put it first in the middleware list: it then sees the request before the other middleware and
the response after them (Falcon runs ``process_response`` in reverse order).

Settings: moesifwsgi's dict (upper-case keys), keyword options on top, then ``MOESIF_<KEY>``
environment variables underneath. The hooks receive Falcon's own objects:

    SKIP(req, resp) -> bool              before routing; resp is not filled yet
    IDENTIFY_USER(req, resp) -> str      after the resource (req.context, resp.media are set)
    IDENTIFY_COMPANY(req, resp) -> str
    GET_METADATA(req, resp) -> dict
    GET_SESSION_TOKEN(req, resp) -> str

Under ASGI the hooks run on the event loop: keep them quick and non-blocking. Without
IDENTIFY_USER the user is the server's REMOTE_USER (WSGI), else read from the Authorization
header. The route is ``req.uri_template``. Request bodies are teed as the resource reads them
(``req.media``, ``req.bounded_stream`` and ``req.stream`` keep working); response streams pass
through unbuffered and the event is finished when they end. Unhandled exceptions, which Falcon
turns into 500 responses, are recorded with that status.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Mapping, Union

import falcon
import falcon.asgi

from ..core import Capture, IntegrationMethods, Pipeline, Settings
from .request import begin_asgi, begin_wsgi, govern_asgi
from .response import respond, respond_async

__all__ = ["MoesifMiddleware"]


class MoesifMiddleware(IntegrationMethods):
    """Records every request to a Falcon app as a Moesif event and ships it in the background."""

    def __init__(
        self, settings: Union[Mapping[str, Any], Settings, None] = None, **options: Any
    ) -> None:
        settings = Settings.resolve(settings, options)
        self.settings: Settings = settings
        self.enabled = settings.enabled
        self.pipeline = Pipeline(settings) if self.enabled else None
        self._capture = Capture(self.pipeline) if self.pipeline else None
        # Where the request's exchange waits for process_response: the environ (scope) lives
        # exactly as long as the request. One key per instance, so two never mix.
        self._key = f"moesif.falcon_exchange.{id(self)}"

    # ------------------------------------------------------------------ falcon.App (WSGI)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        capture = self._capture
        if capture is None:
            return
        try:
            exchange = begin_wsgi(capture, req, resp)
        except Exception:
            capture.sink.capture_failed("request")
            return
        if exchange is not None:
            req.env[self._key] = exchange

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        if self._capture is None:
            return
        exchange = req.env.pop(self._key, None)
        if exchange is not None:
            try:
                respond(exchange, req, resp)
            except Exception:
                exchange.capture_failed("response")
                exchange.finish()

    # ------------------------------------------------------------------ falcon.asgi.App

    async def process_request_async(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        capture = self._capture
        if capture is None:
            return
        try:
            exchange = begin_asgi(capture, req, resp)
            if exchange is not None:
                await govern_asgi(exchange, req, resp)
        except Exception:
            capture.sink.capture_failed("request")
            return
        if exchange is not None:
            req.scope[self._key] = exchange

    async def process_response_async(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        if self._capture is None:
            return
        exchange = req.scope.pop(self._key, None)
        if exchange is not None:
            try:
                await respond_async(exchange, req, resp)
            except Exception:
                exchange.capture_failed("response")
                exchange.finish()

    async def process_shutdown(self, scope: Dict[str, Any], event: Dict[str, Any]) -> None:
        """ASGI lifespan shutdown: delivers what is queued, off the event loop."""
        if self.pipeline is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.pipeline.flush, self.settings.shutdown_timeout)

    # ------------------------------------------------------------------ lifecycle
