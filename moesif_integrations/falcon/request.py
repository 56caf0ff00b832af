"""The request side of the Falcon adapter: SKIP, the record's facts, body tees, governance, hooks.

WSGI facts come from the environ and ASGI facts from the scope, as the client sent them (a
middleware may rewrite ``req.path``; the event keeps what was asked for). Paths follow PEP 3333:
latin-1 text of the request's bytes, so the core quotes them the same way for both.
"""

from __future__ import annotations

import logging
from time import time as _time
from typing import Any, Dict, Optional

from ..core.capture.asgi import ReceiveTee
from ..core.capture.ids import transaction_id_for
from ..core.capture.tees import (
    BodyCapture,
    InputTee,
    RequestPathSettings,
    environ_header_items,
    environ_path,
    note_transaction_id,
)
from ..core.capture.wsgi import TRANSACTION_HEADER
from ..core.logs import LogOnce
from ..core.pipeline import Pipeline
from .exchange import FalconExchange, _as_text, answer_with

_problems = LogOnce()


class FalconCapture(RequestPathSettings):
    """The request path of one middleware: its Pipeline, hooks and limits, read once."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.read_request_path_settings(pipeline)
        self.pipeline: Pipeline = pipeline
        self.has_identity_hooks = any(
            hook is not None
            for hook in (
                self.identify_user,
                self.identify_company,
                self.get_session_token,
                self.get_metadata,
            )
        )

    def begin_wsgi(self, req: Any, resp: Any) -> Optional[FalconExchange]:
        """Notes the request's facts before routing; None when SKIP says so."""
        started = _time()
        skip = self.skip_hook
        if skip is not None and self.pipeline.call_hook("SKIP", skip, req, resp):
            self.pipeline.skip()
            return None
        environ: Dict[str, Any] = req.env
        get = environ.get
        headers = environ_header_items(environ)
        transaction_id = None
        if self.add_transaction_id:
            transaction_id = note_transaction_id(environ)
            resp.set_header(TRANSACTION_HEADER, transaction_id)
        exchange = FalconExchange(
            started,
            req.method,
            req.scheme,
            req.netloc,
            environ_path(environ),
            get("QUERY_STRING") or "",
            headers,
            True,
            get("REMOTE_ADDR") or None,
            transaction_id,
        )
        exchange.capture = self
        exchange.environ = environ
        # Most requests (GETs) have no body: no tee for them. A chunked upload names itself.
        if self.log_body and (
            get("CONTENT_LENGTH", "0") not in ("0", "") or "HTTP_TRANSFER_ENCODING" in environ
        ):
            exchange.declared_length = _declared_length(get("CONTENT_LENGTH"))
            exchange.request_capture = body = BodyCapture(self.request_limit)
            exchange.input_tee = tee = InputTee(req.stream, body)
            # Falcon 3 and 4 build bounded_stream from the environ, older code reads .stream.
            req.stream = environ["wsgi.input"] = tee
        if self.pipeline.governs:
            self._govern(exchange, resp)
        return exchange

    def begin_asgi(self, req: Any, resp: Any) -> Optional[FalconExchange]:
        """The same from the ASGI scope and Falcon's parsed headers."""
        started = _time()
        skip = self.skip_hook
        if skip is not None and self.pipeline.call_hook("SKIP", skip, req, resp):
            self.pipeline.skip()
            return None
        scope = req.scope
        path = scope.get("path") or "/"
        root_path = scope.get("root_path") or ""
        if root_path and not path.startswith(root_path):
            path = root_path + path  # servers differ on whether "path" already holds root_path
        if not path.isascii():
            # The same latin-1 view of the UTF-8 bytes as a WSGI server gives (as asgiref).
            path = path.encode("utf-8", "surrogateescape").decode("latin-1")
        query = scope.get("query_string") or b""
        client = scope.get("client")
        parsed = getattr(req, "_asgi_headers", None)  # Falcon's parsed request headers
        if isinstance(parsed, dict):
            # Byte pairs that the worker decodes (see core.headers); the scope's own may be a
            # spent iterator.
            headers: Any = list(parsed.items())
            client_id = parsed.get(b"x-moesif-transaction-id")
            length = parsed.get(b"content-length")
        else:  # not the request Falcon usually makes: its public, decoded API
            parsed = None
            headers = list(req.headers.items())
            client_id = req.get_header(TRANSACTION_HEADER)
            length = req.get_header("Content-Length")
        transaction_id = None
        if self.add_transaction_id:
            if isinstance(client_id, bytes):
                client_id = client_id.decode("latin-1")
            transaction_id = transaction_id_for(client_id)
            resp.set_header(TRANSACTION_HEADER, transaction_id)
            if parsed is not None:  # the app reads the same id the response carries
                parsed[b"x-moesif-transaction-id"] = transaction_id.encode("ascii")
        exchange = FalconExchange(
            started,
            req.method,
            req.scheme,
            req.netloc,
            path,
            query.decode("latin-1") if isinstance(query, bytes) else str(query),
            headers,
            False,
            str(client[0]) if client else None,
            transaction_id,
        )
        exchange.capture = self
        if self.log_body:
            if length is not None:
                if isinstance(length, bytes):
                    length = length.decode("latin-1")
                exchange.declared_length = _declared_length(length)
            _capture_asgi_body(self, exchange, req)
        if self.pipeline.governs:
            self._govern(exchange, resp)
        return exchange

    def _govern(self, exchange: FalconExchange, resp: Any) -> None:
        """The governance seam, while rules are loaded: a Block answers for the resource."""
        block = self.pipeline.govern(exchange)
        if block is not None:
            exchange.blocked_by = block.rule_id
            answer_with(resp, block)

    def identify(self, exchange: FalconExchange, req: Any, resp: Any) -> None:
        """The identification hooks, each once, with Falcon's (req, resp)."""
        call = self.pipeline.call_hook
        if self.identify_user is not None:
            exchange.user_id = _as_text(call("IDENTIFY_USER", self.identify_user, req, resp))
        if self.identify_company is not None:
            exchange.company_id = _as_text(
                call("IDENTIFY_COMPANY", self.identify_company, req, resp)
            )
        if self.get_session_token is not None:
            exchange.session_token = _as_text(
                call("GET_SESSION_TOKEN", self.get_session_token, req, resp)
            )
        if self.get_metadata is not None:
            exchange.metadata = call("GET_METADATA", self.get_metadata, req, resp)


def _capture_asgi_body(capture: FalconCapture, exchange: FalconExchange, req: Any) -> None:
    """ASGI: the first body event is already in hand; when more follow, they are teed as the
    app pulls them. A body that came whole is kept as it is, with no capture or tee."""
    first = getattr(req, "_first_event", None) or {}
    body = first.get("body") or b""
    whole = bool(first) and not first.get("more_body")
    # Something read the body before this middleware: its first chunk is all there is to see.
    if whole or getattr(req, "_stream", None) is not None:
        declared = exchange.declared_length
        if body or declared > 0:  # else the event has no body, as with an empty capture
            size = len(body)
            limit = capture.request_limit
            if size > limit:
                body = body[:limit]
            exchange.request_body = body if type(body) is bytes else bytes(body)
            exchange.request_body_size = max(size, declared)
        return
    exchange.request_capture = body_capture = BodyCapture(capture.request_limit)
    body_capture.add(body)
    receive = getattr(req, "_receive", None)
    if receive is None:
        _problems.log(
            "asgi-receive",
            logging.WARNING,
            "this Falcon version keeps no req._receive; only the first chunk of request "
            "bodies is captured",
        )
        return
    exchange.input_tee = req._receive = ReceiveTee(receive, body_capture, done=False)


def _declared_length(value: Any) -> int:
    """Content-Length, or -1 when absent or malformed (a bad header never raises)."""
    if not value:
        return -1
    try:
        length = int(value)
    except (TypeError, ValueError):
        return -1
    return length if length >= 0 else -1
