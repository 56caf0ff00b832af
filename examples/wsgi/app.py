# python -m moesif_integrations.collector --port 8000 & MOESIF_APPLICATION_ID=local MOESIF_BASE_URI=http://127.0.0.1:8000 python examples/wsgi/app.py  # noqa: E501
"""A small plain-WSGI API wrapped by ``MoesifMiddleware``, configured the moesifwsgi way.

The settings dict is what a moesifwsgi user already has. ``APPLICATION_ID`` and ``BASE_URI`` are
left out of it on purpose: they come from ``MOESIF_APPLICATION_ID`` and ``MOESIF_BASE_URI`` in
the environment, so the same code ships to the hosted collector or a local one.

Run it as a script (the standard library's wsgiref serves it on ``PORT``, default 5000), or
``gunicorn examples.wsgi.app:app`` from the repository root. Then, for example::

    curl -H 'X-Api-Key: key-alice' -H 'Content-Type: application/json' \\
         -d '{"name": "gadget", "password": "hunter2"}' http://127.0.0.1:5000/items
    curl http://127.0.0.1:8000/_collector/events
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from moesif_integrations import MoesifMiddleware

StartResponse = Callable[..., Any]

# API key -> (user id, company id). A real app would look these up in its database.
API_KEYS: Dict[str, Tuple[str, str]] = {
    "key-alice": ("alice", "acme"),
    "key-bob": ("bob", "globex"),
}

_items: Dict[int, Dict[str, Any]] = {1: {"id": 1, "name": "widget", "price": 9.5}}
_items_lock = threading.Lock()


def _json(start_response: StartResponse, status: str, value: Any) -> List[bytes]:
    body = json.dumps(value).encode("utf-8")
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _read_json(environ: Dict[str, Any]) -> Any:
    length = environ.get("CONTENT_LENGTH") or ""
    raw = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""
    return json.loads(raw or b"null")


def api(environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """GET /health, GET /items, GET /items/<id>, POST /items (JSON)."""
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO") or "/"
    if path == "/health":
        return _json(start_response, "200 OK", {"ok": True})

    account = API_KEYS.get(environ.get("HTTP_X_API_KEY", ""))
    if account is not None:
        # Where the identification hooks below find who called.
        environ["example.user"], environ["example.company"] = account

    if path == "/items" and method == "GET":
        with _items_lock:
            return _json(start_response, "200 OK", list(_items.values()))
    if path == "/items" and method == "POST":
        if account is None:
            return _json(start_response, "401 Unauthorized", {"error": "X-Api-Key required"})
        try:
            fields = _read_json(environ)
        except ValueError:
            fields = None
        if not isinstance(fields, dict) or not isinstance(fields.get("name"), str):
            return _json(start_response, "400 Bad Request", {"error": "expected {'name': ...}"})
        with _items_lock:
            item = {"id": max(_items, default=0) + 1, "name": fields["name"]}
            _items[item["id"]] = item
        return _json(start_response, "201 Created", item)
    if path.startswith("/items/") and method == "GET":
        with _items_lock:
            found = _items.get(int(path[7:])) if path[7:].isdigit() else None
        if found is not None:
            return _json(start_response, "200 OK", found)
    return _json(start_response, "404 Not Found", {"error": "not found"})


# --- the moesifwsgi hooks: same names, same arguments --------------------------------------


def skip(app: Any, environ: Dict[str, Any]) -> bool:
    # Load balancer health checks are not API calls worth recording.
    return environ.get("PATH_INFO") == "/health"


def identify_user(
    app: Any, environ: Dict[str, Any], response_headers: Optional[Dict[str, str]] = None
) -> Optional[str]:
    return environ.get("example.user")


def identify_company(
    app: Any, environ: Dict[str, Any], response_headers: Optional[Dict[str, str]] = None
) -> Optional[str]:
    return environ.get("example.company")


def get_metadata(app: Any, environ: Dict[str, Any]) -> Dict[str, Any]:
    return {"datacenter": os.environ.get("DATACENTER", "local"), "service": "items-api"}


moesif_settings: Dict[str, Any] = {
    # APPLICATION_ID and BASE_URI: from MOESIF_APPLICATION_ID and MOESIF_BASE_URI.
    "LOG_BODY": True,
    "API_VERSION": "1.0.0",
    "SKIP": skip,
    "IDENTIFY_USER": identify_user,
    "IDENTIFY_COMPANY": identify_company,
    "GET_METADATA": get_metadata,
    # Field names hidden in JSON bodies, at any depth, before the event leaves the process.
    "REQUEST_BODY_MASKS": ["password"],
}

app = MoesifMiddleware(api, moesif_settings)


def main() -> None:
    import signal
    import sys
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIServer, make_server

    class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
        # server_close() then waits for requests in flight: their events are recorded after
        # the response is sent, and must be queued before the final flush.
        daemon_threads = False
        block_on_close = True

    port = int(os.environ.get("PORT", "5000"))
    server = make_server("127.0.0.1", port, app, ThreadingWSGIServer)
    print(f"Serving the example API on http://127.0.0.1:{port} (Ctrl-C stops it)")
    # SIGTERM (docker stop, systemd) ends as cleanly as Ctrl-C: queued events still go out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        # Deliver what is still queued before the process ends.
        app.shutdown(timeout=5)


if __name__ == "__main__":
    main()
