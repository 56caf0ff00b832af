"""Calls a WSGI app the way a server does, for in-process tests of the generic middleware."""

from __future__ import annotations

import io
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple


class Result:
    def __init__(self) -> None:
        self.status: Optional[str] = None
        self.headers: List[Tuple[str, str]] = []
        self.body = b""
        self.chunks: List[bytes] = []

    @property
    def status_code(self) -> int:
        assert self.status is not None
        return int(self.status[:3])

    def header(self, name: str) -> Optional[str]:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def make_environ(
    method: str = "GET",
    path: str = "/",
    body: bytes = b"",
    headers: Optional[Dict[str, str]] = None,
    query: str = "",
    chunked: bool = False,
    **extra: Any,
) -> Dict[str, Any]:
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
        "HTTP_HOST": "api.example.com",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body and not chunked:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            environ["HTTP_" + key] = value
    environ.update(extra)
    return environ


def call(
    app: Callable[..., Iterable[bytes]],
    method: str = "GET",
    path: str = "/",
    body: bytes = b"",
    headers: Optional[Dict[str, str]] = None,
    environ: Optional[Dict[str, Any]] = None,
    **kwargs: Any,
) -> Result:
    env = environ if environ is not None else make_environ(method, path, body, headers, **kwargs)
    result = Result()

    def start_response(
        status: str, response_headers: List[Tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        result.status = status
        result.headers = list(response_headers)
        return result.chunks.append

    iterable = app(env, start_response)
    try:
        for chunk in iterable:
            result.chunks.append(chunk)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    result.body = b"".join(result.chunks)
    return result
