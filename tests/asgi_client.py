"""Calls an ASGI app the way a server does, with the request body in as many events as asked."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Dict, List, Tuple, TypeVar

T = TypeVar("T")


def run_coroutine(awaitable: Awaitable[T]) -> T:
    """Runs ``awaitable`` on a fresh event loop. Not ``asyncio.run()``: on Python before 3.12
    that leaves the thread with no current loop, and Falcon's ASGI TestClient, run later in the
    same test process, then fails with "There is no current event loop"."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(awaitable)
    finally:
        loop.close()


def call_asgi(
    app: Any, method: str, path: str, chunks: List[bytes], headers: List[Tuple[bytes, bytes]]
) -> Dict[str, Any]:
    """One request whose body comes in ``chunks`` (one ASGI event each); the reply back, as
    ``{"status": ..., "body": ...}``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "headers": headers,
        "client": ("203.0.113.7", 50123),
    }
    events = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ]
    reply: Dict[str, Any] = {"body": b""}

    async def receive() -> Dict[str, Any]:
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message: Dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            reply["status"] = message["status"]
        else:
            reply["body"] += message.get("body", b"")

    run_coroutine(app(scope, receive, send))
    return reply
