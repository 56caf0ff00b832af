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

Harness modules are named ``harness_<name>.py`` and define ``HARNESS = <class>``. What every
harness does alike lives in ``HarnessBase``; a harness module holds only its framework's part.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from wsgi_client import make_environ

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

    def path_of(self, hook_args: Tuple[Any, ...]) -> str:
        """The request path, from the arguments the adapter passes to SKIP and GET_METADATA:
        moesifwsgi's ``(app, environ)`` unless the adapter passes others."""
        return str(hook_args[1]["PATH_INFO"])

    def close(self) -> None:
        self.integration.shutdown(timeout=2)

    # ------------------------------------------------------------ for the harnesses' use

    @staticmethod
    def reply_of(status: int, headers: Iterable[Tuple[str, str]], body: bytes) -> Reply:
        """A Reply from a test client's status, header pairs and body."""
        return Reply(status, {name.lower(): value for name, value in headers}, body)

    def probe(
        self, iterable: Iterable[bytes], close: Optional[Callable[[], Any]] = None
    ) -> StreamProbe:
        """``stream_probe`` of a response body iterable: reads the first chunk, notes how many
        chunks the app had produced by then, reads the rest, then closes it (``close``, or the
        iterable's own ``close()``) as a server would."""
        iterator = iter(iterable)
        first = next(iterator)
        produced = len(self.produced)
        rest = b"".join(iterator)
        if close is None:
            close = iterable.close  # type: ignore[attr-defined]
        close()
        return StreamProbe(first, produced, first + rest)

    def probe_wsgi(self, wsgi_app: Any) -> StreamProbe:
        """``stream_probe`` through a WSGI callable called by hand, as a server calls it (test
        clients that read whole bodies cannot show when the first chunk left)."""
        return self.probe(wsgi_app(make_environ("GET", "/stream"), lambda *args: None))

    def webtest_request(
        self,
        client: Any,
        method: str,
        path: str,
        body: bytes,
        headers: Optional[Dict[str, str]],
        query: str,
    ) -> Reply:
        """``request`` through a WebTest client, error statuses included."""
        url = f"{path}?{query}" if query else path
        response = client.request(
            url, method=method, body=body, headers=headers or {}, expect_errors=True
        )
        return self.reply_of(response.status_int, response.headerlist, response.body)


# ------------------------------------------------------ shared by every adapter's own tests


def collector_settings(collector_url: str, app_id: str, **extra: Any) -> Dict[str, Any]:
    """Settings (moesifwsgi's keys) that deliver to the collector at ``collector_url`` with a
    0.05 s batch timeout, so events arrive soon after each request; ``extra`` adds or overrides
    options."""
    return {
        "APPLICATION_ID": app_id,
        "BASE_URI": collector_url,
        "EVENT_BATCH_TIMEOUT": 0.05,
        **extra,
    }


# What shut_down_after_test was given, with each one's shutdown timeout.
_to_shut_down: List[Tuple[Any, float]] = []


def shut_down_after_test(integration: Any, timeout: float = 2) -> Any:
    """Has ``integration`` (anything with ``shutdown(timeout)``) shut down when the running test
    ends, so no sender thread outlives its test; returns it. ``integration`` may instead be a
    function that finds the integration then (None: there is none), for one a test attaches to
    an app later."""
    _to_shut_down.append((integration, timeout))
    return integration


def shut_down_test_integrations() -> None:
    """Shuts down what ``shut_down_after_test`` was given (conftest calls it after each test)."""
    while _to_shut_down:
        integration, timeout = _to_shut_down.pop(0)
        if not hasattr(integration, "shutdown"):
            integration = integration()
        if integration is not None:
            integration.shutdown(timeout=timeout)
