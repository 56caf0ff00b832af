"""The tween: records one request as it passes, with the core's WSGI capture.

The tween never sees the raw WSGI exchange, so it drives the core's ``WsgiExchange`` as if the
rest of the tween chain were a WSGI app: ``wsgi.input`` is teed before the view reads the body,
status and headers come from the response object, and ``response.app_iter`` is replaced by the
core's wrapper, which passes chunks through as they come and finishes the event at the last one.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, List, Optional

from pyramid.httpexceptions import HTTPException  # type: ignore[import-untyped]
from pyramid.response import Response  # type: ignore[import-untyped]

from ..core import WsgiCapture, WsgiExchange

__all__ = ["REQUEST_ENVIRON_KEY", "MoesifTween", "PyramidCapture"]

# Where hooks find the Pyramid request while the tween runs.
REQUEST_ENVIRON_KEY = "moesif.request"
Handler = Callable[[Any], Any]
_CONDITIONAL_REQUEST_HEADERS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_RANGE")


class PyramidCapture(WsgiCapture):
    """The WSGI capture, plus what the Pyramid request knows."""

    def framework_user(self, environ: Optional[Dict[str, Any]]) -> Optional[str]:
        request = environ.get(REQUEST_ENVIRON_KEY) if environ is not None else None
        if request is not None:
            user = self.sink.call_hook("authenticated_userid", _authenticated_userid, request)
            if user is not None and user != "":
                return str(user)
        return super().framework_user(environ)

    def framework_route(self, environ: Optional[Dict[str, Any]]) -> Optional[str]:
        request = environ.get(REQUEST_ENVIRON_KEY) if environ is not None else None
        route = getattr(request, "matched_route", None)
        pattern = getattr(route, "pattern", None)
        return pattern if isinstance(pattern, str) else None


def _authenticated_userid(request: Any) -> Any:
    return request.authenticated_userid


class MoesifTween:
    """Records each request passing through: the request body through a tee of ``wsgi.input``,
    the response body through a wrapper of ``response.app_iter`` that streams as it comes."""

    def __init__(self, handler: Handler, capture: PyramidCapture) -> None:
        self.handler = handler
        self.capture = capture

    def __call__(self, request: Any) -> Any:
        started = time.time()
        environ = request.environ
        environ[REQUEST_ENVIRON_KEY] = request
        try:
            try:
                exchange = self.capture.begin(environ, started)
            except Exception:
                self.capture.sink.capture_failed("request")
                exchange = None
            if exchange is None:
                return self.handler(request)
            return self._run(request, exchange)
        finally:
            # The hooks have run by now; keeping the request would make a reference cycle.
            environ.pop(REQUEST_ENVIRON_KEY, None)

    def _run(self, request: Any, exchange: WsgiExchange) -> Any:
        # The exchange drives the tween as a WSGI app: governance, the transaction header, status
        # on exceptions and the response wrapper are all its own.
        views: List[Any] = []
        started: List[Any] = []

        def view_app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
            response = self.handler(request)
            views.append(response)
            if isinstance(response, HTTPException):
                response.prepare(environ)  # renders the default body, as its __call__ would
            if _answered_by_webob(request, response):
                # WebOb answers 304 or a range when the response is called: the body stays
                # its own (FileIter seeks to a range), uncaptured.
                exchange.response_capture = None
            # A copy: setting app_iter below drops Content-Length from the response's own list.
            start_response(response.status, list(response.headerlist))
            return response.app_iter

        def keep_start(status: str, headers: List[Any], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return _no_write

        body: Iterable[bytes] = exchange.run(view_app, keep_start)
        status, headers = started
        if not views:  # governance answered for the view
            response = Response(status=status, headerlist=headers, app_iter=body)
        else:
            response = views[0]
            try:
                self._attach(request, response, exchange, body, headers)
            except Exception:  # an unusual response object: it goes out as the view made it
                exchange.capture_failed("response")
                exchange.finish()
        try:
            exchange.identify()  # while the request (and its security policy) is at hand
        except Exception:
            exchange.capture_failed("identify")
        return response

    @staticmethod
    def _attach(
        request: Any, response: Any, exchange: WsgiExchange, body: Any, headers: List[Any]
    ) -> None:
        if _answered_by_webob(request, response):
            exchange.finish()
        else:
            response.app_iter = body
        response.headerlist = headers  # the response's headers and the transaction id


def _answered_by_webob(request: Any, response: Any) -> bool:
    return getattr(response, "conditional_response", False) and any(
        name in request.environ for name in _CONDITIONAL_REQUEST_HEADERS
    )


def _no_write(data: bytes) -> None:
    raise RuntimeError("a Pyramid response has no write() callable")
