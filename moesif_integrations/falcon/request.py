"""The request side of the Falcon adapter: SKIP, the record's facts, body tees, governance, hooks.

WSGI facts come from the environ and ASGI facts from the scope, as the client sent them (a
middleware may rewrite ``req.path``; the event keeps what was asked for). Paths follow PEP 3333:
latin-1 text of the request's bytes, so the core quotes them the same way for both.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional, Union

from ..core.capture import BodyCapture, InputTee, RequestPathSettings
from ..core.ids import transaction_id_for
from ..core.logs import LogOnce
from ..core.record import ExchangeRecord
from ..core.recorder import Recorder
from ..core.wsgi_capture import TRANSACTION_HEADER
from .exchange import FalconExchange, answer_with
from .streams import ReceiveTee

_problems = LogOnce()


class FalconCapture(RequestPathSettings):
    """The request path of one middleware: its Recorder, hooks and limits, read once."""

    def __init__(self, recorder: Recorder) -> None:
        self.read_request_path_settings(recorder)
        self.recorder: Recorder = recorder

    def begin(self, req: Any, resp: Any, asgi: bool) -> Optional[FalconExchange]:
        """Notes the request's facts before routing; None when SKIP says so."""
        started = time.time()
        skip = self.skip_hook
        if skip is not None and self.recorder.call_hook("SKIP", skip, req, resp):
            self.recorder.skip()
            return None
        record = ExchangeRecord()
        record.request_time = started
        record.method = req.method
        record.scheme = req.scheme
        record.host = req.netloc
        environ: Optional[Dict[str, Any]] = None
        if asgi:
            _describe_scope(record, req.scope)
            record.request_headers = _asgi_headers(req)
        else:
            environ = req.env
            _describe_environ(record, req.env)
        if self.add_transaction_id:
            transaction_id = transaction_id_for(req.get_header(TRANSACTION_HEADER))
            record.transaction_id = transaction_id
            resp.set_header(TRANSACTION_HEADER, transaction_id)
            _show_transaction_id(req, environ, transaction_id)
        request_capture = None
        tee: Union[InputTee, ReceiveTee, None] = None
        if self.log_body:
            request_capture = BodyCapture(self.request_limit)
            if environ is None:
                tee = _tee_receive(req, request_capture)
            else:
                tee = InputTee(req.stream, request_capture)
                # Falcon 3 and 4 build bounded_stream from the environ, older code reads .stream.
                req.stream = environ["wsgi.input"] = tee
        declared = _declared_length(req.get_header("Content-Length"))
        exchange = FalconExchange(self, record, request_capture, tee, declared, environ)
        block = self.recorder.govern(record)
        if block is not None:
            record.blocked_by = block.rule_id
            answer_with(resp, block)
        return exchange

    def identify(self, exchange: FalconExchange, req: Any, resp: Any) -> None:
        """The identification hooks, each once, with Falcon's (req, resp); then REMOTE_USER."""
        record = exchange.record
        call = self.recorder.call_hook
        if self.identify_user is not None:
            record.user_id = _as_text(call("IDENTIFY_USER", self.identify_user, req, resp))
        if self.identify_company is not None:
            record.company_id = _as_text(call("IDENTIFY_COMPANY", self.identify_company, req, resp))
        if self.get_session_token is not None:
            record.session_token = _as_text(
                call("GET_SESSION_TOKEN", self.get_session_token, req, resp)
            )
        if self.get_metadata is not None:
            record.metadata = call("GET_METADATA", self.get_metadata, req, resp)
        if record.user_id is None and exchange.environ is not None:
            # Falcon has no user of its own; a server that authenticated says so here.
            record.user_id = _as_text(exchange.environ.get("REMOTE_USER"))


def _describe_environ(record: ExchangeRecord, environ: Dict[str, Any]) -> None:
    record.path = (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "")
    record.query = environ.get("QUERY_STRING") or ""
    record.remote_addr = environ.get("REMOTE_ADDR") or None
    record.request_headers = [
        (key, value)
        for key, value in environ.items()
        if key[:5] == "HTTP_" or key == "CONTENT_TYPE" or key == "CONTENT_LENGTH"
    ]
    record.request_headers_cgi = True


def _describe_scope(record: ExchangeRecord, scope: Dict[str, Any]) -> None:
    path = scope.get("path") or "/"
    root_path = scope.get("root_path") or ""
    if root_path and not path.startswith(root_path):
        path = root_path + path  # servers differ on whether "path" already holds root_path
    # The same latin-1 view of the UTF-8 bytes as a WSGI server gives (asgiref does the same).
    record.path = path.encode("utf-8", "surrogateescape").decode("latin-1")
    query = scope.get("query_string") or b""
    record.query = query.decode("latin-1") if isinstance(query, bytes) else str(query)
    client = scope.get("client")
    record.remote_addr = str(client[0]) if client else None


def _asgi_headers(req: Any) -> Any:
    """Falcon's parsed request headers (the scope's may be a spent iterator): byte pairs that
    the worker decodes (see core.headers), else the public, decoded mapping."""
    parsed = getattr(req, "_asgi_headers", None)
    if isinstance(parsed, dict):
        return list(parsed.items())
    return list(req.headers.items())


def _show_transaction_id(req: Any, environ: Optional[Dict[str, Any]], value: str) -> None:
    """The app reads the same id the response carries, as with the WSGI middleware."""
    if environ is not None:
        environ["HTTP_X_MOESIF_TRANSACTION_ID"] = value
        return
    headers = getattr(req, "_asgi_headers", None)  # Falcon's parsed request headers
    if isinstance(headers, dict):
        headers[b"x-moesif-transaction-id"] = value.encode("ascii")


def _tee_receive(req: Any, capture: BodyCapture) -> Optional[ReceiveTee]:
    """ASGI: the first body event is already in hand; later ones are teed as the app pulls."""
    first = getattr(req, "_first_event", None) or {}
    body = first.get("body")
    if body:
        capture.add(body)
    if getattr(req, "_stream", None) is not None:
        return None  # something read the body before this middleware: its first chunk is all
    receive = getattr(req, "_receive", None)
    if receive is None:
        _problems.log(
            "asgi-receive",
            logging.WARNING,
            "this Falcon version keeps no req._receive; only the first chunk of request "
            "bodies is captured",
        )
        return None
    tee = ReceiveTee(receive, capture, done=bool(first) and not first.get("more_body"))
    req._receive = tee
    return tee


def _declared_length(value: Any) -> int:
    """Content-Length, or -1 when absent or malformed (a bad header never raises)."""
    if not value:
        return -1
    try:
        length = int(value)
    except (TypeError, ValueError):
        return -1
    return length if length >= 0 else -1


def _as_text(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
