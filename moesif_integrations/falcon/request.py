"""The request side of the Falcon adapter: what it reads from Falcon's request before routing.

Under WSGI the core notes the facts from the environ, as the client sent them (a middleware may
rewrite ``req.path``; the event keeps what was asked for). Under ASGI the scope gives the path,
query and client, and Falcon's own request the rest: its parsed headers (where the app reads the
transaction id) and the body's first event, already received. The private attributes read here
are pinned per supported Falcon release by tests/test_falcon_privates.py.
"""

from __future__ import annotations

import logging
from time import time as _time
from typing import Any, Optional

from ..core import (
    SAMPLED_OUT,
    TRANSACTION_HEADER,
    Capture,
    Exchange,
    LogOnce,
    WsgiExchange,
    capture_request_body,
    exchange_from_scope,
    receive_ahead,
    scope_client,
    scope_path,
    transaction_id_for,
)

_problems = LogOnce()
_TRANSACTION_ID_NAME = b"x-moesif-transaction-id"


def begin_wsgi(capture: Capture, req: Any, resp: Any) -> Optional[Exchange]:
    """Notes the request's facts before routing; None when SKIP says so."""
    started = _time()
    env = req.env
    decisions = capture.sink.decisions()
    rate = None
    if decisions.sampling.decides_early:
        route = env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "")
        rate = capture.sample_early(decisions, req.method, route, env.get("REMOTE_ADDR"))
        if rate == SAMPLED_OUT:
            return None
    if capture.skips(req, resp):
        return None
    exchange = WsgiExchange(capture, env, started)
    exchange.decided(decisions, rate)
    if exchange.tee is not None:
        req.stream = exchange.tee  # Falcon took req.stream from wsgi.input before this
    if exchange.transaction_id is not None:
        resp.set_header(TRANSACTION_HEADER, exchange.transaction_id)
    _govern(exchange, req, resp)
    if exchange.tee is None and env.get("wsgi.input") is not req.stream:
        req.stream = env["wsgi.input"]  # read ahead for the rules: the app reads it again
    return exchange


def begin_asgi(capture: Capture, req: Any, resp: Any) -> Optional[Exchange]:
    """The same from the ASGI scope and Falcon's parsed request."""
    started = _time()
    decisions = capture.sink.decisions()
    rate = None
    if decisions.sampling.decides_early:
        scope = req.scope
        rate = capture.sample_early(decisions, req.method, scope_path(scope), scope_client(scope))
        if rate == SAMPLED_OUT:
            return None
    if capture.skips(req, resp):
        return None
    parsed = getattr(req, "_asgi_headers", None)  # Falcon's parsed request headers
    if isinstance(parsed, dict):
        # Byte pairs that the worker decodes (see core.wire.headers); the scope's own may be a
        # spent iterator.
        headers: Any = list(parsed.items())
        client_id = parsed.get(_TRANSACTION_ID_NAME)
        length = parsed.get(b"content-length")
    else:  # not the request Falcon usually makes: its public, decoded API
        parsed = None
        headers = list(req.headers.items())
        client_id = req.get_header(TRANSACTION_HEADER)
        length = req.get_header("Content-Length")
    transaction_id = None
    if capture.add_transaction_id:
        if isinstance(client_id, bytes):
            client_id = client_id.decode("latin-1")
        transaction_id = transaction_id_for(client_id)
        resp.set_header(TRANSACTION_HEADER, transaction_id)
        if parsed is not None:  # the app reads the same id the response carries
            parsed[_TRANSACTION_ID_NAME] = transaction_id.encode("ascii")
    exchange = exchange_from_scope(
        capture, req.scope, started, req.method, req.scheme, req.netloc, transaction_id, headers
    )
    exchange.decided(decisions, rate)
    if capture.log_body:
        _capture_asgi_body(exchange, req, length)
    return exchange


async def govern_asgi(exchange: Exchange, req: Any, resp: Any) -> None:
    """``_govern`` under ASGI: a rule on the body gets it received ahead (up to the capture
    limit), and the app receives it again through ``req._receive``."""
    body = None
    if exchange.decisions.governance.needs_body and never_read(req):
        receive = getattr(req, "_receive", None)
        if receive is not None:
            body, replay = await receive_ahead(
                getattr(req, "_first_event", None), receive, exchange.capture.request_limit
            )
            if replay is not None:
                req._receive = replay
    _govern(exchange, req, resp, body)


def _capture_asgi_body(exchange: Exchange, req: Any, length: Any) -> None:
    """Falcon received the body's first event before the middleware; when more follow, the app
    pulls them through ``req._receive``, which gets the core's tee."""
    first = getattr(req, "_first_event", None)
    receive = None
    # Something read the body before this middleware: its first chunk is all there is to see.
    if never_read(req):
        receive = getattr(req, "_receive", None)
        if receive is None:
            _problems.log(
                "asgi-receive",
                logging.WARNING,
                "this Falcon version keeps no req._receive; only the first chunk of request "
                "bodies is captured",
            )
    tee = capture_request_body(exchange, length, first, receive)
    if tee is not None:
        req._receive = tee


def never_read(req: Any) -> bool:
    """Whether nothing has read the ASGI request body yet: Falcon makes ``req.stream`` on first
    use."""
    return getattr(req, "_stream", None) is None


def _govern(exchange: Exchange, req: Any, resp: Any, body: Optional[bytes] = None) -> None:
    """Governance answers for the resource when its rules say so: Falcon skips routing and the
    responder. Headers the rules add without blocking go on the response now."""
    block = exchange.governance((req, resp), body=body)
    if block is None:
        for name, value in exchange.rule_headers or ():
            resp.append_header(name, value)
    else:
        resp.status = block.status_line
        for name, value in block.headers:
            resp.append_header(name, value)
        resp.data = block.body
        resp.complete = True
