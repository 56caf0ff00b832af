"""The WSGI request path: record the facts of one exchange without touching the response.

PEP 3333 is a protocol, not a framework, so this lives in the core and serves the generic
middleware and every WSGI adapter. Per request it notes the arrival time, evaluates SKIP, tees
``wsgi.input``, wraps ``start_response`` and passes the response chunks through as they come,
keeping a bounded copy. At the end (last chunk, ``close()`` or an exception) it notes the time,
calls the identification hooks once each and queues one record.
"""

from __future__ import annotations

from time import time as _time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from ..decide.governance import Block
from ..record import ExchangeRecord
from .ids import new_transaction_id, pooled_transaction_id, transaction_id_for
from .sink import CaptureSink
from .tees import (
    BodyCapture,
    BoundedBody,
    InputTee,
    RequestPathSettings,
    environ_header_items,
)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[Dict[str, Any], StartResponse], Iterable[bytes]]
ExcInfo = Any

TRANSACTION_HEADER = "X-Moesif-Transaction-Id"
EXCHANGE_ENVIRON_KEY = "moesif.exchange"
# The transaction header's environ key: the client's id as it came, then the exchange's.
_TRANSACTION_ID_KEY = "HTTP_X_MOESIF_TRANSACTION_ID"
# What the record notes from environ (read one by one when some are missing).
_REQUEST_FACTS = (
    "REQUEST_METHOD",
    "wsgi.url_scheme",
    "HTTP_HOST",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "REMOTE_ADDR",
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _server_host(environ: Dict[str, Any], scheme: str) -> str:
    """The host when the client named none (HTTP/1.0): the server's name and port."""
    name = environ.get("SERVER_NAME") or ""
    port = str(environ.get("SERVER_PORT") or "")
    if port and port != _DEFAULT_PORTS.get(scheme):
        return f"{name}:{port}"
    return str(name)


def _content_length(environ: Dict[str, Any]) -> int:
    """The declared length, or -1 when absent or malformed (a bad header never raises)."""
    value = environ.get("CONTENT_LENGTH")
    if not value:
        return -1
    try:
        length = int(value)
    except (TypeError, ValueError):
        return -1
    return length if length >= 0 else -1


class WsgiCapture(RequestPathSettings):
    """Captures exchanges of one WSGI app for one CaptureSink. Adapters may subclass it to add
    what their framework knows (the route, the logged-in user)."""

    def __init__(self, pipeline: CaptureSink, hook_app: Any = None) -> None:
        self.read_request_path_settings(pipeline)
        self.pipeline: CaptureSink = pipeline
        # The first argument moesifwsgi passes to every hook.
        self.hook_app = hook_app
        self.api_version = pipeline.settings.api_version
        self.has_identity_hooks = any(
            h is not None
            for h in (
                self.identify_user,
                self.identify_company,
                self.get_session_token,
                self.get_metadata,
            )
        )
        # Only subclasses (adapters) know more than REMOTE_USER; the plain path skips two calls.
        cls = type(self)
        self.knows_framework_facts = (
            cls.framework_user is not WsgiCapture.framework_user
            or cls.framework_route is not WsgiCapture.framework_route
        )
        # No hooks and nothing but REMOTE_USER to know: the request path identifies inline.
        self.plain_identity = not self.has_identity_hooks and not self.knows_framework_facts

    def __call__(
        self, app: WSGIApp, environ: Dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        started = _time()
        try:
            if self.skip_hook is None:
                # begin() without SKIP, inline: the common case, one call less per request.
                exchange: Optional[WsgiExchange] = WsgiExchange(self, environ, started)
            else:
                exchange = self.begin(environ, started)
        except Exception:
            self.pipeline.capture_failed("request")
            exchange = None
        if exchange is None:
            return app(environ, start_response)
        return exchange.run(app, start_response)

    # What wrappers call: calling a method costs less than calling the instance (__call__).
    serve = __call__

    def begin(self, environ: Dict[str, Any], started: float) -> Optional[WsgiExchange]:
        """Notes the request's facts; None when SKIP says so."""
        if self.skip_hook is not None and self.pipeline.call_hook(
            "SKIP", self.skip_hook, self.hook_app, environ
        ):
            self.pipeline.skip()
            return None
        return WsgiExchange(self, environ, started)

    # Adapters override these two to add what their framework knows.
    def framework_user(self, environ: Dict[str, Any]) -> Optional[str]:
        """The logged-in user as the framework knows it; REMOTE_USER for plain WSGI."""
        user = environ.get("REMOTE_USER")
        return str(user) if user else None

    def framework_route(self, environ: Dict[str, Any]) -> Optional[str]:
        return None


class WsgiExchange(ExchangeRecord, BoundedBody):
    """One request in flight, and the record it becomes: one object per request, not two.

    It also keeps the bounded copy of its response body (``limit``, ``chunks``, ``kept``,
    ``size``; ``response_capture`` is the exchange itself, or None when bodies are off): a
    BodyCapture less per request. Finishes exactly once, whatever the server and the app do;
    then it drops what only the request needed (environ, the input tee) and is queued as the
    record.
    """

    __slots__ = (
        "capture",
        "environ",
        "tee",
        "status_line",
        "response_capture",
        "finished",
        "identified",
        "server_start_response",
        "server_write",
        # The response body's bounded copy (BoundedBody).
        "limit",
        "chunks",
        "kept",
        "size",
    )

    def __init__(self, capture: WsgiCapture, environ: Dict[str, Any], started: float) -> None:
        # ExchangeRecord.__init__, environ_path() and note_transaction_id() inline, and environ
        # read with as few calls as may be: this runs for every request. The header snapshot
        # comes first: it holds the client's transaction id as it came.
        self.request_headers = environ_header_items(environ)
        self.request_headers_cgi = True
        if capture.add_transaction_id:
            # The app and the event see the id the response will carry.
            if _TRANSACTION_ID_KEY in environ and environ[_TRANSACTION_ID_KEY]:
                transaction_id = transaction_id_for(environ[_TRANSACTION_ID_KEY])
            else:
                # new_transaction_id() inline while the pool has ids: a call less per request.
                try:
                    transaction_id = pooled_transaction_id()
                except IndexError:
                    transaction_id = new_transaction_id()
            self.transaction_id = environ[_TRANSACTION_ID_KEY] = transaction_id
        else:
            self.transaction_id = None
        try:
            # Subscripts cost less than get() calls; servers usually give all of these.
            method = environ["REQUEST_METHOD"]
            scheme = environ["wsgi.url_scheme"]
            host = environ["HTTP_HOST"]
            script_name = environ["SCRIPT_NAME"]
            path = environ["PATH_INFO"]
            query = environ["QUERY_STRING"]
            remote_addr = environ["REMOTE_ADDR"]
        except KeyError:  # a server that leaves some out (no Host from HTTP/1.0 clients)
            method, scheme, host, script_name, path, query, remote_addr = map(
                environ.get, _REQUEST_FACTS
            )
        self.request_time = started
        self.response_time = 0.0
        self.method = method or "GET"
        scheme = self.scheme = scheme or "http"
        self.host = host or _server_host(environ, scheme)
        # SCRIPT_NAME + PATH_INFO: the path the client asked for.
        path = path or ""
        self.path = script_name + path if script_name else path
        self.query = query or ""
        self.remote_addr = remote_addr or None
        self.status = 0
        self.response_headers = ()
        self.capture = capture
        self.environ = environ
        self.tee: Optional[InputTee] = None
        if capture.log_body:
            # Most requests (GETs) have no body: no tee for them. A chunked upload names itself.
            if (
                "CONTENT_LENGTH" in environ and environ["CONTENT_LENGTH"] not in ("0", "")
            ) or "HTTP_TRANSFER_ENCODING" in environ:
                wsgi_input = environ.get("wsgi.input")
                if wsgi_input is not None:
                    self.tee = InputTee(wsgi_input, BodyCapture(capture.request_limit))
                    environ["wsgi.input"] = self.tee
            self.limit = capture.response_limit
            self.chunks = []
            self.kept = 0
            self.size = 0
            self.response_capture: Optional[BoundedBody] = self
        else:
            self.response_capture = None
        # The status line as the app gave it; record.status (an int) is set at the end.
        self.status_line: Optional[str] = None
        self.finished = False
        # True once an adapter ran the identification hooks inside its request context.
        self.identified = False
        # server_start_response and server_write are set by run() and start_response(), before
        # anything reads them.
        # Adapters find the exchange here to add what their framework knows.
        environ[EXCHANGE_ENVIRON_KEY] = self

    @property
    def record(self) -> ExchangeRecord:
        """The record this exchange fills (itself)."""
        return self

    def run(self, app: WSGIApp, start_response: StartResponse) -> Iterable[bytes]:
        # The app gets a bound method, not a closure: cheaper to make, once per request.
        self.server_start_response: Optional[StartResponse] = start_response
        capture = self.capture
        if capture.pipeline.governs:
            block = capture.pipeline.govern(self)
            if block is not None:
                return self._answer_blocked(block, self.start_response)
        try:
            result = app(self.environ, self.start_response)
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
                    for chunk in result:  # type: ignore[union-attr]
                        # add() inline for a chunk that fits whole, as in ResponseIterator.
                        n = len(chunk)
                        if 0 < n <= body.limit - body.kept:
                            body.chunks.append(chunk)
                            body.kept += n
                            body.size += n
                        else:
                            body.add(chunk)
                except Exception:  # not bytes: the server will say so; capture never raises
                    capture.pipeline.capture_failed("response")
            self.finish(False)
            return result
        environ = self.environ
        file_wrapper = environ["wsgi.file_wrapper"] if "wsgi.file_wrapper" in environ else None
        if (
            file_wrapper is not None
            and isinstance(file_wrapper, type)
            and isinstance(result, file_wrapper)
        ):
            # sendfile must keep working: the wrapper goes back untouched, its body uncaptured.
            self.response_capture = None
            self.finish(error=False)
            return result
        if isinstance(result, (list, tuple)):
            return SizedResponseIterator(self, result)
        return ResponseIterator(self, result)

    def start_response(
        self, status: str, headers: List[Tuple[str, str]], exc_info: ExcInfo = None
    ) -> Callable[[bytes], Any]:
        """The start_response the app gets: notes the status and headers, adds the transaction
        header and returns a write() that keeps what it writes."""
        self.status_line = status
        transaction_id = self.transaction_id
        if transaction_id is not None:
            # A new list: the app's own may be a constant it reuses.
            headers = [*headers, (TRANSACTION_HEADER, transaction_id)]
        self.response_headers = headers
        outer = self.server_start_response
        write: Callable[[bytes], Any] = (
            outer(status, headers, exc_info) if exc_info else outer(status, headers)  # type: ignore[misc]
        )
        if self.response_capture is None:
            return write
        self.server_write: Optional[Callable[[bytes], Any]] = write
        return self.write

    def write(self, data: bytes) -> Any:
        """The write() the app gets: keeps what it writes, then passes it on. PEP 3333 allows
        it only before the app returns, so always before the end, which drops the server's."""
        body = self.response_capture
        if body is not None:
            body.add(data)
        return self.server_write(data)  # type: ignore[misc]

    def _answer_blocked(self, block: Block, start_response: StartResponse) -> List[bytes]:
        """Governance answers for the app: the app never runs, the event says who blocked it."""
        self.blocked_by = block.rule_id
        body = block.body
        if self.response_capture is not None:
            self.response_capture.add(body)
        start_response(block.status_line, list(block.headers))
        self.finish(error=False)
        return [body]

    def identify(self, response_headers: Optional[Dict[str, str]] = None) -> None:
        """Runs the identification hooks, once. Adapters call this inside the framework's
        request context; otherwise it runs when the response ends."""
        if self.identified:
            return
        self.identified = True
        capture = self.capture
        record = self
        environ = self.environ
        if capture.has_identity_hooks:
            if response_headers is None:
                response_headers = dict(self.response_headers)
            self._expose_bodies(response_headers)
            call = capture.pipeline.call_hook
            app = capture.hook_app
            if capture.identify_user is not None:
                record.user_id = _as_text(
                    call("IDENTIFY_USER", capture.identify_user, app, environ, response_headers)
                )
            if capture.identify_company is not None:
                record.company_id = _as_text(
                    call(
                        "IDENTIFY_COMPANY", capture.identify_company, app, environ, response_headers
                    )
                )
            if capture.get_session_token is not None:
                record.session_token = _as_text(
                    call("GET_SESSION_TOKEN", capture.get_session_token, app, environ)
                )
            if capture.get_metadata is not None:
                record.metadata = call("GET_METADATA", capture.get_metadata, app, environ)
        if capture.knows_framework_facts:
            if record.user_id is None:
                record.user_id = capture.framework_user(environ)
            if record.route is None:
                record.route = capture.framework_route(environ)
        elif record.user_id is None:
            remote_user = environ.get("REMOTE_USER")
            if remote_user:
                record.user_id = str(remote_user)

    def _expose_bodies(self, response_headers: Dict[str, str]) -> None:
        """What moesifwsgi puts in environ for hooks; only built when a hook may read it."""
        environ = self.environ
        environ["moesif.response_headers"] = response_headers
        if self.response_capture is not None:
            environ["moesif.response_body_chunks"] = list(self.response_capture.chunks)
        if self.tee is not None and "moesif.request_body" not in environ:
            from ..wire.bodies import encode_body  # worker-side code, only needed for hooks

            capture = self.tee.capture
            body, _encoding = encode_body(
                capture.value(),
                capture.size,
                capture.limit,
                environ.get("CONTENT_TYPE"),
                environ.get("HTTP_CONTENT_ENCODING"),
            )
            environ["moesif.request_body"] = body

    def discard(self) -> None:
        """Records nothing for this exchange and adds no header to its response: for a route
        the adapter learns, once the framework has routed the request, is not to be captured."""
        self.finished = True
        self.transaction_id = None
        self.response_capture = None
        if self.environ.get(EXCHANGE_ENVIRON_KEY) is self:
            del self.environ[EXCHANGE_ENVIRON_KEY]

    def finish(self, error: bool) -> None:
        """Ends the exchange, once: notes the time, the status and the bodies, runs the
        identification hooks when no adapter did, and queues the record."""
        if self.finished:
            return
        self.finished = True
        # All in one frame (a try block costs nothing in 3.11 until it catches): this runs for
        # every request.
        try:
            self.response_time = _time()
            status = self.status_line
            if error or not status:
                self.status = 500
            else:
                code = _status_codes.get(status)
                self.status = _status_code(status) if code is None else code
            environ = self.environ
            tee = self.tee
            if tee is not None:
                declared = _content_length(environ)
                body = tee.capture
                if tee.reads == 0 and 0 < declared <= body.limit and not error:
                    try:
                        tee.drain_unread(declared)
                    except Exception:  # the client went away; what was read is what we have
                        pass
                # value() inline for the usual one chunk, and no max(): calls saved per upload.
                chunks = body.chunks
                self.request_body = bytes(chunks[0]) if len(chunks) == 1 else body.value()
                size = body.size
                self.request_body_size = size if size >= declared else declared
            response_body = self.response_capture
            if response_body is not None:
                # value() inline for the usual one chunk: a call less per request.
                chunks = response_body.chunks
                self.response_body = bytes(chunks[0]) if len(chunks) == 1 else response_body.value()
                self.response_body_size = response_body.size
            if not self.identified:
                capture = self.capture
                if capture.plain_identity:
                    # identify() inline for the plain WSGI app: REMOTE_USER is all it knows.
                    self.identified = True
                    if "REMOTE_USER" in environ and self.user_id is None:
                        remote_user = environ["REMOTE_USER"]
                        if remote_user:
                            self.user_id = str(remote_user)
                else:
                    self.identify()
            if response_body is not None:
                # Now in response_body: the queued record does not hold the chunks twice.
                del response_body.chunks
            self.tee = self.response_capture = None
            self.server_start_response = self.server_write = None
            # environ and the exchange point at each other: break the cycle so that plain
            # reference counting frees both, instead of leaving the work to the cyclic garbage
            # collector. The queued record keeps nothing of the request but its facts.
            if environ.get(EXCHANGE_ENVIRON_KEY) is self:
                del environ[EXCHANGE_ENVIRON_KEY]
            self.environ = _NO_ENVIRON
            self.capture.pipeline.submit(self)
        except Exception:
            self.capture.pipeline.capture_failed("response")


# What a finished exchange holds instead of the request's environ (an adapter may still look).
_NO_ENVIRON: Dict[str, Any] = {}

# Status line -> code, remembered: an app answers with a handful of status lines, and a dict
# lookup costs less than parsing one. Bounded: the reason phrase is the app's to choose.
_status_codes: Dict[str, int] = {}
_STATUS_CODES_LIMIT = 256


def _status_code(status: str) -> int:
    try:
        code = int(status[:3])
    except ValueError:
        code = 0
    if len(_status_codes) < _STATUS_CODES_LIMIT:
        _status_codes[status] = code
    return code


def _as_text(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


class ResponseIterator:
    """Passes the app's chunks through the moment they come, keeping a bounded copy.

    Finishes the exchange at the last chunk, at ``close()`` or when iteration raises, and calls
    the app's own ``close()`` exactly once. Servers iterate what ``__iter__`` returns, a
    generator: resuming one costs a fraction of a ``__next__`` method call per chunk.
    """

    __slots__ = ("_exchange", "_result", "_chunks", "_closed")

    def __init__(self, exchange: WsgiExchange, result: Iterable[bytes]) -> None:
        self._exchange = exchange
        self._result = result
        self._chunks: Optional[Iterator[bytes]] = None
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = self._pass_through()
        return chunks

    def __next__(self) -> bytes:
        # For servers that call next() on the result itself instead of iterating it.
        return next(self.__iter__())

    def _pass_through(self) -> Iterator[bytes]:
        exchange = self._exchange
        capture = exchange.response_capture
        try:
            # Not "yield from": it would close the app's iterator itself, and close() again.
            for chunk in self._result:
                if capture is not None:
                    try:
                        # add() inline for a chunk that fits whole: no call per chunk.
                        n = len(chunk)
                        if 0 < n <= capture.limit - capture.kept:
                            capture.chunks.append(chunk)
                            capture.kept += n
                            capture.size += n
                        else:
                            capture.add(chunk)
                    except Exception:  # not bytes: the server will say so; capture never raises
                        exchange.capture.pipeline.capture_failed("response")
                        capture = None
                yield chunk
        except GeneratorExit:  # close() before the end: close() finishes the exchange
            raise
        except BaseException:
            exchange.finish(error=True)
            self._close_result()
            raise
        exchange.finish(False)

    def _close_result(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._result, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        try:
            chunks = self._chunks
            if chunks is not None:
                # The generator's frame holds this object: dropping it breaks the cycle, so
                # reference counting frees both without the cyclic collector.
                self._chunks = None
                chunks.close()  # type: ignore[attr-defined]
            # _close_result() inline: servers call this once per request.
            if not self._closed:
                self._closed = True
                close = getattr(self._result, "close", None)
                if close is not None:
                    close()
        finally:
            exchange = self._exchange
            if not exchange.finished:  # it usually finished at the last chunk: no call then
                exchange.finish(False)


class SizedResponseIterator(ResponseIterator):
    """For list and tuple bodies: servers that look at ``len()`` (wsgiref sets Content-Length
    for one-chunk bodies) keep doing so."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]
