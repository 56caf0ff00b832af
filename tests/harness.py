"""One conformance suite, many adapters: the contract each adapter's test harness fulfils.

A harness builds *the standard app* in its framework, wrapped by its adapter with the given
settings, and drives it through the framework's own test client. The standard app:

    GET  /items/<id>   200 application/json  {"id": "<id>"}
    POST /items        201 application/json  {"received": <the parsed JSON body>}
    POST /form         200 text/plain        "hello <form field name>"
    POST /upload       200 application/json  {"size": <bytes in the raw body>}
    GET  /big          200 application/octet-stream, BIG_SIZE bytes of b"x"
    GET  /stream       200 text/plain, STREAM_CHUNKS produced lazily: each one is appended to
                       ``harness.produced`` just before it is yielded
    GET  /error        the view raises RuntimeError("view failed") (the framework's 500)
    GET  /health       200 text/plain "ok"
    anything else      404

Harness modules are named ``harness_<name>.py`` and define ``HARNESS = <class>``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

BIG_SIZE = 200_000
STREAM_CHUNKS = (b"chunk-0\n", b"chunk-1\n", b"chunk-2\n")


@dataclass
class Reply:
    status: int
    headers: Dict[str, str]  # lower-case names
    body: bytes


@dataclass
class StreamProbe:
    first_chunk: bytes
    produced_when_first_arrived: int
    body: bytes


class HarnessBase(abc.ABC):
    name = "abstract"

    def __init__(self, settings: Dict[str, Any]) -> None:
        self.settings = settings
        self.produced: List[bytes] = []
        self.setup()

    @abc.abstractmethod
    def setup(self) -> None:
        """Builds the standard app and wraps it with the adapter, using ``self.settings``."""

    @property
    @abc.abstractmethod
    def integration(self) -> Any:
        """The adapter's object: has flush(timeout), shutdown(timeout) and stats()."""

    @abc.abstractmethod
    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Optional[Dict[str, str]] = None,
        query: str = "",
    ) -> Reply:
        """One request through the framework's own test client."""

    @abc.abstractmethod
    def stream_probe(self) -> StreamProbe:
        """GET /stream, reading the first chunk before the rest is produced."""

    @abc.abstractmethod
    def path_of(self, hook_args: Tuple[Any, ...]) -> str:
        """The request path, from the arguments the adapter passes to SKIP and GET_METADATA."""

    def close(self) -> None:
        self.integration.shutdown(timeout=2)
