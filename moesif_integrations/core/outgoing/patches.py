"""The process-wide patches that see the app's outgoing calls, at each client's transport.

The events they make: docs/protocol.md, "Outgoing calls".

- urllib3: ``HTTPConnectionPool.urlopen`` (and so ``HTTPSConnectionPool``, ``PoolManager`` and
  ``requests``, which sends through it). One event per ``urlopen`` the app (or requests) makes:
  a pool that follows redirects or retries itself reports the outcome of the whole call. The
  hooks get ``req``, an ``OutgoingRequest`` (method, url, headers, body), and ``res``, the
  ``urllib3.HTTPResponse`` (under requests, ``response.raw``).
- httpx: ``HTTPTransport.handle_request`` and ``AsyncHTTPTransport.handle_async_request``, the
  transports every Client and AsyncClient sends through (one event per request, so one per
  redirect hop). The hooks get the ``httpx.Request`` and ``httpx.Response``.

The app's call is never changed: the same arguments reach the original, its response or
exception reaches the caller, and a streamed response stays streamed. The capture sees the bytes
as they come off the connection (before any content decoding, as for incoming responses), as
far as the caller reads them, and the call ends when the response is read to its end, closed,
garbage-collected, or at the latest at the integration's flush.

``install`` patches on first use and is idempotent; ``remove`` forgets one integration and
restores the originals when none is left; ``uninstall`` restores every patched attribute at
once. A client that is not installed is skipped. Calls to any installed integration's collector
(by destination: scheme, host and port of BASE_URI) are never captured; the package's own
delivery does not go through these clients at all (``delivery/transport.py`` uses http.client).
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Dict, List, Optional, Set, Tuple
from urllib.parse import urlsplit

from . import active
from .recorder import OutgoingExchange, OutgoingRecorder, OutgoingRequest, header_pairs, origin

__all__ = ["install", "installed", "remove", "uninstall"]

_lock = threading.Lock()
# (owner, attribute) -> the original value, for every attribute patched now.
_originals: Dict[Tuple[Any, str], Any] = {}
_recorders: List[OutgoingRecorder] = []
# The collectors of every installed integration: calls to them pass through uncaptured.
_collector_origins: Set[Tuple[str, str, int]] = set()


def install(recorder: OutgoingRecorder) -> None:
    """Patches the installed clients (once per process) and makes ``recorder`` the process-wide
    default. Touches no network."""
    with _lock:
        if not _originals:
            _patch_urllib3()
            _patch_httpx()
        if recorder not in _recorders:
            _recorders.append(recorder)
        _collector_origins.add(recorder.collector_origin)
    recorder.enabled = True
    active.add_default(recorder)


def remove(recorder: OutgoingRecorder) -> None:
    """``recorder`` captures no more (its calls in flight are finished now); the originals come
    back when no recorder is left."""
    recorder.enabled = False
    active.remove_default(recorder)
    with _lock:
        if recorder in _recorders:
            _recorders.remove(recorder)
        _reset_collector_origins()
        if not _recorders:
            _restore()
    recorder.finish_pending()


def uninstall() -> None:
    """Restores every patched attribute and stops every integration's outgoing capture."""
    active.clear_defaults()
    with _lock:
        recorders = list(_recorders)
        _recorders.clear()
        _reset_collector_origins()
        _restore()
    for recorder in recorders:
        recorder.enabled = False
        recorder.finish_pending()


def installed() -> bool:
    """Whether the patches are in place."""
    return bool(_originals)


def _reset_collector_origins() -> None:
    _collector_origins.clear()
    _collector_origins.update(recorder.collector_origin for recorder in _recorders)


def _patch(owner: Any, name: str, replacement: Any) -> None:
    _originals[(owner, name)] = owner.__dict__[name]
    setattr(owner, name, replacement)


def _restore() -> None:
    for (owner, name), original in _originals.items():
        setattr(owner, name, original)
    _originals.clear()


def _target(scheme: str, host: str, port: Optional[int]) -> Optional[active.Active]:
    """Whose options apply to a call to ``scheme://host:port`` made now; None when it is not
    to be captured (nobody captures, the capture itself is running, or it goes to a
    collector)."""
    if active.paused.on:
        return None
    found = active.current()
    if found is None or not found.recorder.enabled:
        return None
    if origin(scheme, host, port) in _collector_origins:
        return None
    return found


def _failed(recorder: OutgoingRecorder) -> None:
    recorder.sink.capture_failed("outgoing")


def _host_text(host: str, port: Optional[int]) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


# ---------------------------------------------------------------------- urllib3 (and requests)


def _patch_urllib3() -> None:
    try:
        from urllib3 import connectionpool
    except ImportError:
        return
    pool_class = connectionpool.HTTPConnectionPool
    original = pool_class.urlopen

    @functools.wraps(original)
    def urlopen(
        pool: Any,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        *args: Any,
        **kw: Any,
    ) -> Any:
        target = _target(pool.scheme, pool.host, pool.port)
        if target is None:
            return original(pool, method, url, body, headers, *args, **kw)
        exchange = _begin_urllib3(target, pool, method, url, body, headers)
        # A pool's own retries and redirects call urlopen again: those pass through.
        active.paused.on = True
        try:
            response = original(pool, method, url, body, headers, *args, **kw)
        except BaseException as exc:
            active.paused.on = False
            if exchange is not None:
                exchange.fail(exc)
            raise
        active.paused.on = False
        if exchange is not None:
            _watch_urllib3(exchange, response)
        return response

    _patch(pool_class, "urlopen", urlopen)


def _begin_urllib3(
    target: active.Active, pool: Any, method: str, url: str, body: Any, headers: Any
) -> Optional[OutgoingExchange]:
    recorder: OutgoingRecorder = target.recorder
    try:
        scheme = pool.scheme
        host = _host_text(pool.host, pool.port)
        if "://" in url:  # through a proxy the URL is absolute
            parts = urlsplit(url)
            scheme, host, path, query = parts.scheme, parts.netloc, parts.path, parts.query
        else:
            path, _, query = url.partition("?")
        pairs = header_pairs((pool.headers if headers is None else headers).items())
        request = OutgoingRequest(
            method, f"{scheme}://{host}{url}" if "://" not in url else url, dict(pairs), body
        )
        exchange = recorder.begin(
            target.incoming_transaction_id, method, scheme, host, path, query, pairs, request
        )
        exchange.note_request_body(body)
        return exchange
    except Exception:
        _failed(recorder)
        return None


def _watch_urllib3(exchange: OutgoingExchange, response: Any) -> None:
    """Sees the response's body as it is read, and ends the call at its end."""
    try:
        exchange.note_response(response, response.status, header_pairs(response.headers.items()))
        preloaded = getattr(response, "_body", None)
        if preloaded is not None or _urllib3_read_to_end(response):
            body = exchange.response_capture
            if preloaded and body is not None:
                body.add(preloaded)
                if response.decode_content:  # the body urllib3 kept is decoded already
                    exchange.response_headers = [
                        pair
                        for pair in exchange.response_headers
                        if pair[0].lower() != "content-encoding"
                    ]
            exchange.finish()
            return
        response.__dict__[_EXCHANGE_ATTRIBUTE] = exchange
        response.__class__ = _watching_class(type(response))
    except Exception:
        _failed(exchange.recorder)
        exchange.finish()


def _urllib3_read_to_end(response: Any) -> bool:
    fp = getattr(response, "_fp", None)
    if fp is None:
        return True
    isclosed = getattr(fp, "isclosed", None)
    return bool(isclosed()) if isclosed is not None else False


_EXCHANGE_ATTRIBUTE = "_moesif_exchange"
# urllib3 response class -> its watching subclass (see _watching_class).
_watching: Dict[type, type] = {}


def _watching_class(cls: type) -> type:
    """A subclass of a urllib3 response class that keeps what is read and ends the call when
    the response is released, drained or closed. A watched response is switched to it and
    back to ``cls`` at its end: the response holds no closure of its own, so it is freed as
    soon as the caller drops it. ``_fp_read`` and ``_handle_chunk`` are the two places the
    raw bytes come from (urllib3 1.26 and 2.x), before any content decoding."""
    watching = _watching.get(cls)
    if watching is not None:
        return watching
    namespace: Dict[str, Any] = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
    for name in ("_fp_read", "_handle_chunk"):
        if hasattr(cls, name):
            namespace[name] = _reading(getattr(cls, name))
    for name in ("release_conn", "drain_conn", "close"):
        if hasattr(cls, name):
            namespace[name] = _ending(getattr(cls, name), cls)
    watching = _watching[cls] = type(cls.__name__, (cls,), namespace)
    return watching


def _reading(read: Callable[..., bytes]) -> Callable[..., bytes]:
    @functools.wraps(read)
    def reading(response: Any, *args: Any, **kwargs: Any) -> bytes:
        data = read(response, *args, **kwargs)
        if data:
            exchange = response.__dict__.get(_EXCHANGE_ATTRIBUTE)
            body = exchange.response_capture if exchange is not None else None
            if body is not None:
                body.add(data)
        return data

    return reading


def _ending(method: Callable[..., Any], cls: type) -> Callable[..., Any]:
    @functools.wraps(method)
    def ending(response: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(response, *args, **kwargs)
        finally:
            exchange = response.__dict__.pop(_EXCHANGE_ATTRIBUTE, None)
            if exchange is not None:
                response.__class__ = cls
                exchange.finish()

    return ending


# ---------------------------------------------------------------------- httpx


def _patch_httpx() -> None:
    try:
        import httpx
    except ImportError:
        return
    sync_tee, async_tee = _httpx_tees(httpx)
    sync_original = httpx.HTTPTransport.handle_request
    async_original = httpx.AsyncHTTPTransport.handle_async_request

    @functools.wraps(sync_original)
    def handle_request(transport: Any, request: Any) -> Any:
        url = request.url
        target = _target(url.scheme, url.host, url.port)
        if target is None:
            return sync_original(transport, request)
        exchange = _begin_httpx(target, request)
        try:
            response = sync_original(transport, request)
        except BaseException as exc:
            if exchange is not None:
                exchange.fail(exc)
            raise
        if exchange is not None:
            _watch_httpx(exchange, response, sync_tee)
        return response

    @functools.wraps(async_original)
    async def handle_async_request(transport: Any, request: Any) -> Any:
        url = request.url
        target = _target(url.scheme, url.host, url.port)
        if target is None:
            return await async_original(transport, request)
        exchange = _begin_httpx(target, request)
        try:
            response = await async_original(transport, request)
        except BaseException as exc:
            if exchange is not None:
                exchange.fail(exc)
            raise
        if exchange is not None:
            _watch_httpx(exchange, response, async_tee)
        return response

    _patch(httpx.HTTPTransport, "handle_request", handle_request)
    _patch(httpx.AsyncHTTPTransport, "handle_async_request", handle_async_request)


def _begin_httpx(target: active.Active, request: Any) -> Optional[OutgoingExchange]:
    recorder: OutgoingRecorder = target.recorder
    try:
        url = request.url
        path, _, query = url.raw_path.decode("ascii").partition("?")
        exchange = recorder.begin(
            target.incoming_transaction_id,
            request.method,
            url.scheme,
            _host_text(url.host, url.port),
            path,
            query,
            header_pairs(request.headers.multi_items()),
            request,
        )
        try:
            content = request.content
        except Exception:  # a streamed upload (httpx.RequestNotRead): not captured
            content = None
        exchange.note_request_body(content)
        return exchange
    except Exception:
        _failed(recorder)
        return None


def _watch_httpx(exchange: OutgoingExchange, response: Any, tee: Callable[..., Any]) -> None:
    try:
        headers = header_pairs(response.headers.multi_items())
        exchange.note_response(response, response.status_code, headers)
        response.stream = tee(response.stream, exchange)
    except Exception:
        _failed(exchange.recorder)
        exchange.finish()


def _httpx_tees(httpx: Any) -> Tuple[type, type]:
    """The response streams that pass httpx's bytes through and keep a bounded copy; they end
    the call at the end of the body, when reading raises, or at close."""

    class SyncTee(httpx.SyncByteStream):  # type: ignore[misc]
        def __init__(self, stream: Any, exchange: OutgoingExchange) -> None:
            self._stream = stream
            self._exchange = exchange

        def __iter__(self) -> Any:
            exchange = self._exchange
            body = exchange.response_capture
            try:
                for chunk in self._stream:
                    if body is not None:
                        body.add(chunk)
                    yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:
                exchange.fail(exc)
                raise
            exchange.finish()

        def close(self) -> None:
            try:
                self._stream.close()
            finally:
                self._exchange.finish()

    class AsyncTee(httpx.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, stream: Any, exchange: OutgoingExchange) -> None:
            self._stream = stream
            self._exchange = exchange

        async def __aiter__(self) -> Any:
            exchange = self._exchange
            body = exchange.response_capture
            try:
                async for chunk in self._stream:
                    if body is not None:
                        body.add(chunk)
                    yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:
                exchange.fail(exc)
                raise
            exchange.finish()

        async def aclose(self) -> None:
            try:
                await self._stream.aclose()
            finally:
                self._exchange.finish()

    return SyncTee, AsyncTee
