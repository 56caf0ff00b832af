"""The WSGI request path: record the facts of one exchange without touching the response.

PEP 3333 is a protocol, not a framework, so this lives in the core and serves the generic
middleware and every WSGI adapter. Per request it notes the arrival time, evaluates SKIP, tees
``wsgi.input``, wraps ``start_response`` and passes the response chunks through as they come,
keeping a bounded copy. The exchange (``exchange.py``) finishes at the last chunk, ``close()``
or an exception.
"""

from __future__ import annotations

from itertools import compress
from time import time as _time
from typing import IO, Any, Callable, Dict, Iterable, List, Optional, Tuple, cast

from ..decide.governance import Block
from .exchange import EXCHANGE_ENVIRON_KEY as EXCHANGE_ENVIRON_KEY  # the WSGI path's key
from .exchange import SAMPLED_OUT, Capture, Exchange, HookArguments
from .ids import transaction_id_for
from .sink import CaptureSink
from .tees import InputTee, ReplayInput, ResponseIterator, SizedResponseIterator

StartResponse = Callable[..., Any]
WSGIApp = Callable[[Dict[str, Any], StartResponse], Iterable[bytes]]
ExcInfo = Any

TRANSACTION_HEADER = "X-Moesif-Transaction-Id"
# The transaction header's environ key: the client's id as it came, then the exchange's.
_TRANSACTION_ID_KEY = "HTTP_X_MOESIF_TRANSACTION_ID"
# What the exchange notes from environ.
_REQUEST_FACTS = (
    "REQUEST_METHOD",
    "wsgi.url_scheme",
    "HTTP_HOST",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "REMOTE_ADDR",
    _TRANSACTION_ID_KEY,
    "CONTENT_LENGTH",
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_HEADER_KEY_PREFIXES = ("HTTP_", "CONTENT_TYPE", "CONTENT_LENGTH")
_HEADER_KEYS_LIMIT = 2048  # header names are the client's to choose: a bounded memo


class _HeaderKeys(Dict[str, bool]):
    """Whether an environ key is a request header, remembered per key: servers send the same
    couple of dozen keys on every request. Testing each key with str.startswith instead costs
    20,000 instructions more per Flask GET (2.7 µs; benchmarks/overhead.py --instructions)."""

    def __missing__(self, key: str) -> bool:
        is_header = key.startswith(_HEADER_KEY_PREFIXES)
        if len(self) < _HEADER_KEYS_LIMIT:
            self[key] = is_header
        return is_header


_is_header_key = _HeaderKeys().__getitem__


def environ_header_items(environ: Dict[str, Any]) -> List[Tuple[str, str]]:
    """The request headers of a WSGI environ as (key, value) pairs, in order, keys as the
    environ has them ("HTTP_X_FOO", "CONTENT_TYPE")."""
    return list(compress(environ.items(), map(_is_header_key, environ)))


def _server_host(environ: Dict[str, Any], scheme: str) -> str:
    """The host when the client named none (HTTP/1.0): the server's name and port."""
    name = environ.get("SERVER_NAME") or ""
    port = str(environ.get("SERVER_PORT") or "")
    if port and port != _DEFAULT_PORTS.get(scheme):
        return f"{name}:{port}"
    return str(name)


class WsgiCapture(Capture):
    """Captures exchanges of one WSGI app for one CaptureSink. Adapters subclass it to add what
    their framework knows (the route, the logged-in user)."""

    def __init__(self, sink: CaptureSink, hook_app: Any = None) -> None:
        super().__init__(sink)
        # The first argument moesifwsgi passes to every hook.
        self.hook_app = hook_app

    def serve(
        self, app: WSGIApp, environ: Dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """Serves one request through ``app``, recording it unless SKIP says otherwise."""
        started = _time()
        try:
            exchange = self.begin(environ, started)
        except Exception:
            self.sink.capture_failed("request")
            exchange = None
        if exchange is None:
            return app(environ, start_response)
        return exchange.run(app, start_response)

    def begin(self, environ: Dict[str, Any], started: float) -> Optional[WsgiExchange]:
        """Notes the request's facts; None when SKIP says so. Adapters and hooks find the
        exchange in ``environ[EXCHANGE_ENVIRON_KEY]``. Sampling decided from the route alone
        comes first: a request it drops costs neither a copy nor a hook call."""
        decisions = self.sink.decisions()
        rate = None
        if decisions.sampling.decides_early:
            rate = self.sample_early(
                decisions,
                environ.get("REQUEST_METHOD"),
                environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
                environ.get("REMOTE_ADDR"),
            )
            if rate == SAMPLED_OUT:
                return None
        if self.skips(self.hook_app, environ):
            return None
        exchange = environ[EXCHANGE_ENVIRON_KEY] = WsgiExchange(self, environ, started)
        exchange.decided(decisions, rate)
        return exchange

    def hook_arguments(self, exchange: Exchange) -> Optional[Tuple[HookArguments, HookArguments]]:
        """moesifwsgi's: ``(app, environ)``, and ``(app, environ, response_headers)`` for
        IDENTIFY_USER and IDENTIFY_COMPANY, with the bodies put in environ as it does."""
        environ = exchange.environ
        if environ is None:
            return None
        response_headers = dict(exchange.response_headers)
        _expose_bodies(exchange, environ, response_headers)
        args = (self.hook_app, environ)
        return args, (*args, response_headers)


def _expose_bodies(
    exchange: Exchange, environ: Dict[str, Any], response_headers: Dict[str, str]
) -> None:
    """What moesifwsgi puts in environ for hooks; only built when a hook may read it."""
    environ["moesif.response_headers"] = response_headers
    if exchange.response_capture is not None:
        environ["moesif.response_body_chunks"] = list(exchange.response_capture.chunks)
    body = exchange.request_capture
    if body is not None and "moesif.request_body" not in environ:
        from ..wire.bodies import encode_body  # worker-side code, only needed for hooks

        environ["moesif.request_body"], _encoding = encode_body(
            body.value(),
            body.size,
            body.limit,
            environ.get("CONTENT_TYPE"),
            environ.get("HTTP_CONTENT_ENCODING"),
        )


class WsgiExchange(Exchange):
    """An exchange noted from a WSGI environ, and what the server and the app call on it:
    ``run`` serves the app with ``start_response`` and ``write`` wrapped."""

    __slots__ = ("server_start_response", "server_write")

    def __init__(self, capture: Capture, environ: Dict[str, Any], started: float) -> None:
        # The header snapshot comes first: it holds the client's transaction id as it came.
        headers = environ_header_items(environ)
        method, scheme, host, script_name, path, query, remote_addr, client_id, length = map(
            environ.get, _REQUEST_FACTS
        )
        transaction_id = None
        if capture.add_transaction_id:
            # The app and the event see the id the response will carry.
            transaction_id = environ[_TRANSACTION_ID_KEY] = transaction_id_for(client_id)
        scheme = scheme or "http"
        path = path or ""
        Exchange.__init__(
            self,
            capture,
            started,
            method or "GET",
            scheme,
            host or _server_host(environ, scheme),
            script_name + path if script_name else path,  # the path the client asked for
            query or "",
            headers,
            True,
            remote_addr or None,
            transaction_id,
        )
        self.environ = environ
        # Most requests (GETs) have no body and get no tee; a chunked upload names itself.
        if capture.log_body and (
            length not in (None, "0", "") or "HTTP_TRANSFER_ENCODING" in environ
        ):
            wsgi_input = environ.get("wsgi.input")
            if wsgi_input is not None:
                body = self.capture_request_body(length)
                self.tee = environ["wsgi.input"] = InputTee(wsgi_input, body)
        # Set by run() and start_response(), before anything reads them.
        self.server_start_response: Optional[StartResponse] = None
        self.server_write: Optional[Callable[[bytes], Any]] = None

    def body_for_rules(self) -> Optional[bytes]:
        """Reads ahead a body of declared length, up to the capture limit, and hands the app a
        stream that gives those bytes again before the rest; a body of unknown length (chunked)
        is not read ahead: rules on it see nothing."""
        environ = self.environ
        if environ is None:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        length = min(length, self.capture.request_limit)
        if length <= 0:
            return None
        tee = self.tee
        source = tee._input if isinstance(tee, InputTee) else environ.get("wsgi.input")
        if source is None:
            return None
        prefix = source.read(length)
        replay = ReplayInput(prefix, source)
        if isinstance(tee, InputTee):
            tee._input = cast(IO[bytes], replay)
        else:
            environ["wsgi.input"] = replay
        return bytes(prefix)

    def forget_hook_extras(self) -> None:
        # The bodies hook_arguments exposed before the app are built again at the end.
        environ = self.environ
        if environ is not None:
            environ.pop("moesif.request_body", None)

    def run(self, app: WSGIApp, start_response: StartResponse) -> Iterable[bytes]:
        """Serves ``app``: governance first, then the app with ``start_response`` wrapped, and
        its result passed through (a file wrapper untouched, a list or tuple as it is)."""
        environ = self.environ
        assert environ is not None  # released only when the exchange finishes
        self.server_start_response = start_response
        block = self.governance()
        if block is not None:
            return self._answer_blocked(block)
        try:
            result = app(environ, self.start_response)
        except BaseException:
            self.finish(error=True)
            raise
        result_type = type(result)
        if result_type is list or result_type is tuple:
            # The whole body is in hand: captured now, and the server gets the very same list
            # (wsgiref still sets Content-Length for one chunk; nothing is left to close).
            body = self.response_capture
            if body is not None:
                try:
                    for chunk in result:
                        body.add(chunk)
                except Exception:  # not bytes: the server will say so; capture never raises
                    self.capture_failed("response")
            self.finish()
            return result
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # sendfile must keep working: the wrapper goes back untouched, its body uncaptured.
            self.response_capture = None
            self.finish()
            return result
        if isinstance(result, (list, tuple)):
            return SizedResponseIterator(self, result)
        return ResponseIterator(self, result)

    def start_response(
        self, status: str, headers: List[Tuple[str, str]], exc_info: ExcInfo = None
    ) -> Callable[[bytes], Any]:
        """The start_response the app gets: notes the status and headers, adds the transaction
        header and returns a write() that keeps what it writes."""
        try:
            self.status = int(status[:3])
        except ValueError:  # the server will say so; the record notes a failure
            self.status = 0
        transaction_id = self.transaction_id
        if transaction_id is not None:
            # A new list: the app's own may be a constant it reuses.
            headers = [*headers, (TRANSACTION_HEADER, transaction_id)]
        rule_headers = self.rule_headers
        if rule_headers:
            headers = [*headers, *rule_headers]
        self.response_headers = headers
        outer = self.server_start_response
        write: Callable[[bytes], Any] = (
            outer(status, headers, exc_info) if exc_info else outer(status, headers)  # type: ignore[misc]
        )
        if self.response_capture is None:
            return write
        self.server_write = write
        return self.write

    def write(self, data: bytes) -> Any:
        """The write() the app gets: keeps what it writes, then passes it on. PEP 3333 allows
        it only before the app returns, so always before the end."""
        body = self.response_capture
        if body is not None:
            body.add(data)
        return self.server_write(data)  # type: ignore[misc]

    def _answer_blocked(self, block: Block) -> List[bytes]:
        """Governance answers for the app: the app never runs, the event says who blocked it."""
        body = block.body
        if self.response_capture is not None:
            self.response_capture.add(body)
        self.start_response(block.status_line, list(block.headers))
        self.finish()
        return [body]

    def discard(self) -> None:
        """Records nothing for this exchange and adds no header to its response: for a route
        the adapter learns, once the framework has routed the request, is not to be captured."""
        self.finished = True
        self.transaction_id = None
        # What the record needed goes; the server's callables stay, the app still answers.
        Exchange._release(self)

    def _release(self) -> None:
        # The server's callables too: the submitted record must not keep them alive.
        self.server_start_response = self.server_write = None
        Exchange._release(self)
