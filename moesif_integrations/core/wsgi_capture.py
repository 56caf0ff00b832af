"""The WSGI request path: record the facts of one exchange without touching the response.

PEP 3333 is a protocol, not a framework, so this lives in the core and serves the generic
middleware and every WSGI adapter. Per request it notes the arrival time, evaluates SKIP, tees
``wsgi.input``, wraps ``start_response`` and passes the response chunks through as they come,
keeping a bounded copy. At the end (last chunk, ``close()`` or an exception) it notes the time,
calls the identification hooks once each and queues one record.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from .capture import BodyCapture, InputTee, RequestPathSettings
from .ids import transaction_id_for
from .record import ExchangeRecord
from .recorder import Recorder

StartResponse = Callable[..., Any]
WSGIApp = Callable[[Dict[str, Any], StartResponse], Iterable[bytes]]
ExcInfo = Any

TRANSACTION_HEADER = "X-Moesif-Transaction-Id"
EXCHANGE_ENVIRON_KEY = "moesif.exchange"
_HEADER_KEY_PREFIXES = ("HTTP_", "CONTENT_TYPE", "CONTENT_LENGTH")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _request_host(environ: Dict[str, Any], scheme: str) -> str:
    host = environ.get("HTTP_HOST")
    if host:
        return str(host)
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
    """Captures exchanges of one WSGI app for one Recorder. Adapters may subclass it to add
    what their framework knows (the route, the logged-in user)."""

    def __init__(self, recorder: Recorder, hook_app: Any = None) -> None:
        self.read_request_path_settings(recorder)
        self.recorder: Recorder = recorder
        # The first argument moesifwsgi passes to every hook.
        self.hook_app = hook_app
        self.api_version = recorder.settings.api_version
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

    def __call__(
        self, app: WSGIApp, environ: Dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        started = time.time()
        try:
            exchange = self.begin(environ, started)
        except Exception:
            self.recorder.capture_failed("request")
            exchange = None
        if exchange is None:
            return app(environ, start_response)
        return exchange.run(app, start_response)

    def begin(self, environ: Dict[str, Any], started: float) -> Optional[WsgiExchange]:
        """Notes the request's facts; None when SKIP says so."""
        if self.skip_hook is not None and self.recorder.call_hook(
            "SKIP", self.skip_hook, self.hook_app, environ
        ):
            self.recorder.skip()
            return None
        record = ExchangeRecord()
        record.request_time = started
        record.method = environ.get("REQUEST_METHOD") or "GET"
        scheme = environ.get("wsgi.url_scheme") or "http"
        record.scheme = scheme
        record.host = _request_host(environ, scheme)
        record.path = (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "")
        record.query = environ.get("QUERY_STRING") or ""
        record.remote_addr = environ.get("REMOTE_ADDR") or None
        transaction_id = None
        if self.add_transaction_id:
            transaction_id = transaction_id_for(environ.get("HTTP_X_MOESIF_TRANSACTION_ID"))
            # The app and the event see the same id the response will carry.
            environ["HTTP_X_MOESIF_TRANSACTION_ID"] = transaction_id
            record.transaction_id = transaction_id
        record.request_headers = [
            item for item in environ.items() if item[0].startswith(_HEADER_KEY_PREFIXES)
        ]
        record.request_headers_cgi = True
        tee = None
        # Most requests (GETs) have no body: no tee for them. A chunked upload names itself.
        if self.log_body and (
            environ.get("CONTENT_LENGTH", "0") not in ("0", "")
            or "HTTP_TRANSFER_ENCODING" in environ
        ):
            wsgi_input = environ.get("wsgi.input")
            if wsgi_input is not None:
                tee = InputTee(wsgi_input, BodyCapture(self.request_limit))
                environ["wsgi.input"] = tee
        exchange = WsgiExchange(self, environ, record, tee, transaction_id)
        # Adapters find the exchange here to add what their framework knows.
        environ[EXCHANGE_ENVIRON_KEY] = exchange
        return exchange

    # Adapters override these two to add what their framework knows.
    def framework_user(self, environ: Dict[str, Any]) -> Optional[str]:
        """The logged-in user as the framework knows it; REMOTE_USER for plain WSGI."""
        user = environ.get("REMOTE_USER")
        return str(user) if user else None

    def framework_route(self, environ: Dict[str, Any]) -> Optional[str]:
        return None


class WsgiExchange:
    """One request in flight. Finishes exactly once, whatever the server and the app do."""

    __slots__ = (
        "capture",
        "environ",
        "record",
        "tee",
        "transaction_id",
        "status",
        "response_headers",
        "response_capture",
        "finished",
        "identified",
    )

    def __init__(
        self,
        capture: WsgiCapture,
        environ: Dict[str, Any],
        record: ExchangeRecord,
        tee: Optional[InputTee],
        transaction_id: Optional[str],
    ) -> None:
        self.capture = capture
        self.environ = environ
        self.record = record
        self.tee = tee
        self.transaction_id = transaction_id
        self.status: Optional[str] = None
        self.response_headers: List[Tuple[str, str]] = []
        self.response_capture: Optional[BodyCapture] = (
            BodyCapture(capture.response_limit) if capture.log_body else None
        )
        self.finished = False
        # True once an adapter ran the identification hooks inside its request context.
        self.identified = False

    def run(self, app: WSGIApp, start_response: StartResponse) -> Iterable[bytes]:
        outer = start_response

        def capturing_start_response(
            status: str, headers: List[Tuple[str, str]], exc_info: ExcInfo = None
        ) -> Callable[[bytes], Any]:
            self.status = status
            if self.transaction_id is not None:
                headers = list(headers)
                headers.append((TRANSACTION_HEADER, self.transaction_id))
            self.response_headers = headers
            write: Callable[[bytes], Any] = (
                outer(status, headers, exc_info) if exc_info else outer(status, headers)
            )
            if self.response_capture is None:
                return write
            body = self.response_capture

            def capturing_write(data: bytes) -> Any:
                body.add(data)
                return write(data)

            return capturing_write

        block = self.capture.recorder.govern(self.record)
        if block is not None:
            # Governance answers for the app: the app never runs, the event says who blocked it.
            self.record.blocked_by = block.rule_id
            body = block.body
            if self.response_capture is not None:
                self.response_capture.add(body)
            capturing_start_response(block.status_line, list(block.headers))
            self.finish(error=False)
            return [body]
        try:
            result = app(self.environ, capturing_start_response)
        except BaseException:
            self.finish(error=True)
            raise
        file_wrapper = self.environ.get("wsgi.file_wrapper")
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

    def identify(self, response_headers: Optional[Dict[str, str]] = None) -> None:
        """Runs the identification hooks, once. Adapters call this inside the framework's
        request context; otherwise it runs when the response ends."""
        if self.identified:
            return
        self.identified = True
        capture = self.capture
        record = self.record
        environ = self.environ
        if capture.has_identity_hooks:
            if response_headers is None:
                response_headers = dict(self.response_headers)
            self._expose_bodies(response_headers)
            call = capture.recorder.call_hook
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
            from .bodies import encode_body  # worker-side code, only needed for hooks

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
        if self.finished:
            return
        self.finished = True
        try:
            self._finish(error)
        except Exception:
            self.capture.recorder.capture_failed("response")

    def _finish(self, error: bool) -> None:
        record = self.record
        record.response_time = time.time()
        status = self.status
        if error or not status:
            record.status = 500
        else:
            try:
                record.status = int(status[:3])
            except ValueError:
                record.status = 0
        tee = self.tee
        if tee is not None:
            declared = _content_length(self.environ)
            body = tee.capture
            if tee.reads == 0 and 0 < declared <= body.limit and not error:
                try:
                    tee.drain_unread(declared)
                except Exception:  # the client went away; what was read is what we have
                    pass
            record.request_body = body.value()
            record.request_body_size = max(body.size, declared)
        if self.response_capture is not None:
            record.response_body = self.response_capture.value()
            record.response_body_size = self.response_capture.size
        record.response_headers = self.response_headers
        self.identify()
        # environ and the exchange point at each other: break the cycle so that plain reference
        # counting frees both, instead of leaving the work to the cyclic garbage collector.
        if self.environ.get(EXCHANGE_ENVIRON_KEY) is self:
            del self.environ[EXCHANGE_ENVIRON_KEY]
        self.capture.recorder.submit(record)


def _as_text(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


class ResponseIterator:
    """Passes the app's chunks through the moment they come, keeping a bounded copy.

    Finishes the exchange at the last chunk, at ``close()`` or when iteration raises, and calls
    the app's own ``close()`` exactly once.
    """

    __slots__ = ("_exchange", "_result", "_iterator", "_capture", "_closed")

    def __init__(self, exchange: WsgiExchange, result: Iterable[bytes]) -> None:
        self._exchange = exchange
        self._result = result
        self._iterator: Optional[Iterator[bytes]] = None
        self._capture = exchange.response_capture
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        iterator = self._iterator
        if iterator is None:
            try:
                iterator = self._iterator = iter(self._result)
            except BaseException:
                self._fail()
                raise
        try:
            chunk = next(iterator)
        except StopIteration:
            self._exchange.finish(error=False)
            raise
        except BaseException:
            self._fail()
            raise
        if self._capture is not None:
            self._capture.add(chunk)
        return chunk

    def _fail(self) -> None:
        self._exchange.finish(error=True)
        self._close_result()

    def _close_result(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._result, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        try:
            self._close_result()
        finally:
            self._exchange.finish(error=False)


class SizedResponseIterator(ResponseIterator):
    """For list and tuple bodies: servers that look at ``len()`` (wsgiref sets Content-Length
    for one-chunk bodies) keep doing so."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]
