"""HTTP to the collector: one keep-alive connection per sender, gzip, timeouts, bounded retries.

The standard library's http.client is enough for one destination host and keeps the core free of
dependencies. Every call has a connect timeout and, once connected, one overall deadline
(READ_TIMEOUT) for sending the request and reading the whole answer, however slowly the answer
trickles in; at most ``MAX_ANSWER_BYTES`` of an answer are read. A call past its deadline fails
like a lost connection and is retried. Retries back off exponentially with full jitter, honour
Retry-After, and stop early when the sender is told to stop.
"""

from __future__ import annotations

import email.utils

# getaddrinfo() imports this codec on a sender's first connection. A fork() during that import
# (gunicorn --preload after the master sent events) leaves the child's codec lookup broken for
# good ("unknown encoding: idna") and it can never connect: import it before any thread runs.
import encodings.idna  # noqa: F401
import functools
import http.client
import io
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional
from urllib.parse import urlsplit

from ..._version import __version__
from .. import draws

if TYPE_CHECKING:
    from ..config.schema import Settings

USER_AGENT = f"moesif-integrations-python/{__version__}"
# Most bytes read of one answer (its body); the collector's answers are a few hundred bytes, the
# app config and governance rules a few kilobytes. The rest is left unread, the connection closed.
MAX_ANSWER_BYTES = 1_000_000


@dataclass
class Response:
    """What one attempt, or the last of several, came to."""

    status: int  # 0 when no HTTP answer came (connection refused, timeout, reset)
    body: bytes = b""
    headers: Optional[Dict[str, str]] = None
    error: Optional[str] = None  # the exception's text when status is 0
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> Optional[str]:
        if not self.headers:
            return None
        return self.headers.get(name.lower())


def is_transient(status: int) -> bool:
    """Worth retrying: no answer, 408, 429 and 5xx."""
    return status == 0 or status in (408, 429) or status >= 500


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def gzip_compress(payload: bytes, level: int) -> bytes:
    # zlib releases the GIL while it compresses, so the app's threads keep running.
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(payload) + compressor.flush()


class _DeadlineSocketReader(io.RawIOBase):
    """A socket's receiving side that gives up at a ``time.monotonic()`` deadline: each receive
    waits at most until then, so an answer dripping in byte by byte ends there too."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("the collector's answer did not arrive within READ_TIMEOUT")
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


class _DeadlineResponse(http.client.HTTPResponse):
    """An HTTP answer read through a ``_DeadlineSocketReader``."""

    def __init__(self, sock: socket.socket, deadline: float, **kwargs: object) -> None:
        super().__init__(sock, **kwargs)  # type: ignore[arg-type]
        self.fp.close()
        self.fp = io.BufferedReader(_DeadlineSocketReader(sock, deadline))


class _TimedHTTPConnection(http.client.HTTPConnection):
    """Connects with one timeout, then reads and writes with another."""

    def __init__(self, host: str, port: Optional[int], connect_timeout: float, read_timeout: float):
        super().__init__(host, port, timeout=connect_timeout)
        self._read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self._read_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _TimedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: Optional[int], connect_timeout: float, read_timeout: float):
        super().__init__(host, port, timeout=connect_timeout, context=ssl.create_default_context())
        self._read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self._read_timeout)


class Transport:
    """Sends requests to the collector over one reusable connection. Not thread-safe: each
    sender thread owns its own Transport."""

    def __init__(self, settings: Settings, stop: Optional[threading.Event] = None) -> None:
        self._settings = settings
        parts = urlsplit(settings.base_uri)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._stop = stop or threading.Event()
        self._conn: Optional[http.client.HTTPConnection] = None
        self._headers = {
            "X-Moesif-Application-Id": settings.application_id,
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json; charset=utf-8",
            "Accept-Encoding": "identity",
        }

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken socket may complain; it is gone either way
                pass
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = _TimedHTTPSConnection if self._https else _TimedHTTPConnection
            self._conn = cls(
                self._host, self._port, self._settings.connect_timeout, self._settings.read_timeout
            )
        return self._conn

    def request_once(
        self, method: str, path: str, body: Optional[bytes] = None, gzipped: bool = False
    ) -> Response:
        """One attempt: connects (within CONNECT_TIMEOUT) if no connection is open, then sends
        and reads the answer within READ_TIMEOUT in all."""
        headers = dict(self._headers)
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        for fresh_connection in (False, True):
            conn = self._connection()
            try:
                if conn.sock is None:
                    conn.connect()
                deadline = time.monotonic() + self._settings.read_timeout
                conn.sock.settimeout(self._settings.read_timeout)
                conn.response_class = functools.partial(  # type: ignore[assignment]
                    _DeadlineResponse, deadline=deadline
                )
                conn.request(method, self._prefix + path, body=body, headers=headers)
                raw = conn.getresponse()
                data = raw.read(MAX_ANSWER_BYTES + 1)
                if len(data) > MAX_ANSWER_BYTES:
                    data = data[:MAX_ANSWER_BYTES]
                    raw.will_close = True
                elif not raw.isclosed():
                    raw.will_close = True
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # A kept-alive connection the server closed meanwhile fails on first use: one
                # immediate retry on a new connection is not a real retry.
                if not fresh_connection and isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                ):
                    continue
                return Response(0, error=f"{type(exc).__name__}: {exc}")
            response_headers = {k.lower(): v for k, v in raw.getheaders()}
            if raw.will_close:
                self.close()
            return Response(raw.status, data, response_headers)
        return Response(0, error="connection closed")  # pragma: no cover - loop always returns

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        gzipped: bool = False,
        deadline: Optional[float] = None,
        retries: Optional[int] = None,
    ) -> Response:
        """One request with bounded retries of transient failures.

        Stops retrying when the attempts (``retries``, default MAX_RETRIES) are used up, when
        the next wait would pass ``deadline`` (a time.monotonic() value), or when the stop event
        is set.
        """
        attempt = 0
        while True:
            attempt += 1
            response = self.request_once(method, path, body, gzipped)
            response.attempts = attempt
            if response.ok or not is_transient(response.status):
                return response
            if attempt > (self._settings.max_retries if retries is None else retries) or (
                self._stop.is_set()
            ):
                return response
            delay = self.backoff(attempt, parse_retry_after(response.header("retry-after")))
            if deadline is not None and time.monotonic() + delay > deadline:
                return response
            if self._stop.wait(delay):
                return response

    def backoff(self, attempt: int, retry_after: Optional[float]) -> float:
        cap = self._settings.retry_max_delay
        if retry_after is not None:
            return min(retry_after, cap)
        ceiling = min(cap, self._settings.retry_backoff * (2 ** (attempt - 1)))
        # Full jitter: senders of many processes that failed together do not retry together.
        return draws.uniform(ceiling / 2, ceiling)
