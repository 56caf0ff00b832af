"""The raw facts of one exchange, as the request path notes them.

Nothing here is computed: the request path fills a record with what it already has in hand
(times as floats, bytes as captured, headers as received) and the wire room turns it into an
event, off the request path (``core/wire/event.py``). Keeping it a small slotted object keeps
each queued event small.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

Headers = Sequence[Tuple[str, str]]

# What a record counts for against the queue's byte bound beyond its strings: the record, its
# floats and small fields; one header pair (a tuple, two strings); one string object.
_RECORD_OVERHEAD = 600
_HEADER_OVERHEAD = 160
_STRING_OVERHEAD = 50
_OPTIONAL_TEXTS = ("user_id", "company_id", "session_token", "route", "blocked_by")
# Deeper metadata than this counts as the bound's worth: it is never queued whole.
_METADATA_DEPTH = 32


def held_size(value: Any, depth: int = 0) -> int:
    """Bytes a hook's value (metadata: dicts, lists, strings, numbers) holds, roughly."""
    if isinstance(value, (str, bytes, bytearray)):
        return _STRING_OVERHEAD + len(value)
    if depth > _METADATA_DEPTH:
        return 1 << 40
    if isinstance(value, dict):
        return _STRING_OVERHEAD + sum(
            held_size(key, depth + 1) + held_size(item, depth + 1) for key, item in value.items()
        )
    if isinstance(value, (list, tuple, set, frozenset)):
        return _STRING_OVERHEAD + sum(held_size(item, depth + 1) for item in value)
    return _STRING_OVERHEAD


class ExchangeRecord:
    """One request/response pair (or one outgoing call), before any encoding.

    The facts every exchange has live in slots, set at construction. The ones most exchanges
    leave at their default (identity, bodies, route, governance, sampling) are class attributes
    until set: an instance only gets its own ``__dict__`` when one of them is.
    """

    __slots__ = (
        "request_time",
        "response_time",
        "method",
        "scheme",
        "host",
        "path",
        "query",
        "request_headers",
        "request_headers_cgi",
        "remote_addr",
        "status",
        "response_headers",
        "transaction_id",
        "__dict__",
    )

    direction: str = "Incoming"
    # Captured prefix of the body (at most the configured limit); None when bodies are off.
    request_body: Optional[bytes] = None
    # True size of the body in bytes (what was read, or Content-Length when larger).
    request_body_size: int = 0
    response_body: Optional[bytes] = None
    response_body_size: int = 0
    user_id: Optional[str] = None
    company_id: Optional[str] = None
    session_token: Optional[str] = None
    metadata: Any = None
    # The route template the framework matched ("/items/{id}"), when an adapter knows it.
    route: Optional[str] = None
    blocked_by: Optional[str] = None
    # How many real exchanges this event stands for under sampling.
    weight: int = 1
    # The sample rate decided before the app ran (the event is kept when it is not 0); None
    # when sampling is decided once the exchange has finished.
    sample_rate: Optional[float] = None

    def __init__(
        self,
        request_time: float = 0.0,
        method: str = "GET",
        scheme: str = "http",
        host: str = "",
        path: str = "",
        query: str = "",
        request_headers: Headers = (),
        request_headers_cgi: bool = False,
        remote_addr: Optional[str] = None,
        transaction_id: Optional[str] = None,
    ) -> None:
        # Seconds since the epoch (time.time()); formatted by the worker.
        self.request_time = request_time
        # When the last byte of the response body was produced (or the iterable closed).
        self.response_time: float = 0.0
        self.method = method
        self.scheme = scheme
        # Host as the client named it (Host header), else "SERVER_NAME:SERVER_PORT".
        self.host = host
        # SCRIPT_NAME + PATH_INFO. Under WSGI this is latin-1-decoded bytes (PEP 3333).
        self.path = path
        self.query = query
        # Header pairs as received. When request_headers_cgi is true the names are WSGI environ
        # keys ("HTTP_X_FOO", "CONTENT_TYPE") and the worker turns them into header names.
        self.request_headers = request_headers
        self.request_headers_cgi = request_headers_cgi
        # The peer address (REMOTE_ADDR); None when the server gave none.
        self.remote_addr = remote_addr
        self.status: int = 0
        self.response_headers: Headers = ()
        self.transaction_id = transaction_id

    def approximate_size(self) -> int:
        """Bytes this record holds: what the queue's byte bound counts. Every string the client
        or a hook chose (path, query, each header's name and value, identities, metadata,
        bodies) counts by its length, with each object's own overhead."""
        size = _RECORD_OVERHEAD + len(self.path) + len(self.query)
        for headers in (self.request_headers, self.response_headers):
            size += _HEADER_OVERHEAD * len(headers)
            for name, value in headers:
                size += len(name) + len(value)
        if self.request_body is not None:
            size += len(self.request_body)
        if self.response_body is not None:
            size += len(self.response_body)
        # Set by hooks, mostly left at their class defaults: read the instance's own.
        extra = self.__dict__
        if extra:
            for name in _OPTIONAL_TEXTS:
                text = extra.get(name)
                if text is not None:
                    size += _STRING_OVERHEAD + len(text)
            metadata = extra.get("metadata")
            if metadata is not None:
                size += held_size(metadata)
        return size
