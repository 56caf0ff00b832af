"""The raw facts of one exchange, as the request path notes them.

Nothing here is computed: the request path fills a record with what it already has in hand
(times as floats, bytes as captured, headers as received) and the worker turns it into a wire
event (``events.py``). Keeping it a plain slotted object keeps each queued event small.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

Headers = List[Tuple[str, str]]


class ExchangeRecord:
    """One request/response pair (or one outgoing call), before any encoding."""

    __slots__ = (
        "direction",
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
        "request_body",
        "request_body_size",
        "status",
        "response_headers",
        "response_body",
        "response_body_size",
        "transaction_id",
        "user_id",
        "company_id",
        "session_token",
        "metadata",
        "route",
        "blocked_by",
        "weight",
    )

    def __init__(self) -> None:
        self.direction: str = "Incoming"
        # Seconds since the epoch (time.time()); formatted by the worker.
        self.request_time: float = 0.0
        # When the last byte of the response body was produced (or the iterable closed).
        self.response_time: float = 0.0
        self.method: str = "GET"
        self.scheme: str = "http"
        # Host as the client named it (Host header), else "SERVER_NAME:SERVER_PORT".
        self.host: str = ""
        # SCRIPT_NAME + PATH_INFO. Under WSGI this is latin-1-decoded bytes (PEP 3333).
        self.path: str = ""
        self.query: str = ""
        # Header pairs as received. When request_headers_cgi is true the names are WSGI environ
        # keys ("HTTP_X_FOO", "CONTENT_TYPE") and the worker turns them into header names.
        self.request_headers: Headers = []
        self.request_headers_cgi: bool = False
        # The peer address (REMOTE_ADDR); None when the server gave none.
        self.remote_addr: Optional[str] = None
        # Captured prefix of the body (at most the configured limit); None when bodies are off.
        self.request_body: Optional[bytes] = None
        # True size of the body in bytes (what was read, or Content-Length when larger).
        self.request_body_size: int = 0
        self.status: int = 0
        self.response_headers: Headers = []
        self.response_body: Optional[bytes] = None
        self.response_body_size: int = 0
        self.transaction_id: Optional[str] = None
        self.user_id: Optional[str] = None
        self.company_id: Optional[str] = None
        self.session_token: Optional[str] = None
        self.metadata: Any = None
        # The route template the framework matched ("/items/{id}"), when an adapter knows it.
        self.route: Optional[str] = None
        self.blocked_by: Optional[str] = None
        # How many real exchanges this event stands for under sampling.
        self.weight: int = 1

    def approximate_size(self) -> int:
        """Bytes this record holds, roughly: what the queue's byte bound counts."""
        size = 600 + 80 * (len(self.request_headers) + len(self.response_headers))
        if self.request_body is not None:
            size += len(self.request_body)
        if self.response_body is not None:
            size += len(self.response_body)
        return size
