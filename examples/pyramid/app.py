# python -m moesif_integrations.collector --port 8000 &  MOESIF_APPLICATION_ID=local MOESIF_BASE_URI=http://127.0.0.1:8000 python examples/pyramid/app.py  # noqa: E501
"""A small notes API captured by the Moesif Pyramid integration; serves on 127.0.0.1:6543.

Clients send ``Authorization: Bearer <key>``. The security policy turns the key into the
authenticated user, who becomes the event's user; the user's team is the event's company (a hook
named by a dotted name, as an ``.ini`` file would name it). ``MOESIF_<OPTION>`` environment
variables set what the ``moesif.*`` settings leave out, e.g. ``MOESIF_LOG_BODY=false``.

    curl -H 'Authorization: Bearer key-ada' -d '{"text": "hello"}' http://127.0.0.1:6543/notes
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any, Dict, List, Optional

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPBadRequest, HTTPNotFound
from pyramid.security import Allowed, Denied
from pyramid.view import view_config

API_KEYS = {"key-ada": "ada", "key-grace": "grace"}
TEAMS = {"ada": "analytical-engines", "grace": "cobol-inc"}

# Pyramid settings as an .ini [app:main] section gives them: strings.
SETTINGS = {
    "moesif.api_version": "1.0",
    "moesif.identify_company": ".identify_company",
    "moesif.skip": ".is_health_check",
    "moesif.request_body_masks": "password secret",
}


class ApiKeyPolicy:
    """Pyramid 2 security policy: the bearer key names the user; writing needs a user."""

    def identity(self, request: Any) -> Optional[str]:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return API_KEYS.get(key) if scheme.lower() == "bearer" else None

    def authenticated_userid(self, request: Any) -> Optional[str]:
        return self.identity(request)

    def permits(self, request: Any, context: Any, permission: str) -> Any:
        if permission == "write" and self.identity(request) is None:
            return Denied("an API key is needed")
        return Allowed("allowed")

    def remember(self, request: Any, userid: str, **kw: Any) -> List[Any]:
        return []

    def forget(self, request: Any, **kw: Any) -> List[Any]:
        return []


def identify_company(app: Any, environ: Dict[str, Any], response_headers: Any) -> Optional[str]:
    # Hooks run inside the tween: the Pyramid request is at hand.
    request = environ["moesif.request"]
    return TEAMS.get(request.authenticated_userid or "")


def is_health_check(app: Any, environ: Dict[str, Any]) -> bool:
    return bool(environ.get("PATH_INFO") == "/health")


_notes: Dict[int, Dict[str, Any]] = {}
_ids = itertools.count(1)
_lock = threading.Lock()


@view_config(route_name="notes", request_method="GET", renderer="json")
def list_notes(request: Any) -> Any:
    with _lock:
        return {"notes": list(_notes.values())}


@view_config(route_name="notes", request_method="POST", renderer="json", permission="write")
def create_note(request: Any) -> Any:
    try:
        text = str(request.json_body["text"])
    except (ValueError, KeyError, TypeError):
        raise HTTPBadRequest(json_body={"error": 'expected {"text": "..."}'}) from None
    with _lock:
        note = {"id": next(_ids), "text": text, "author": request.authenticated_userid}
        _notes[note["id"]] = note
    request.response.status = 201
    return note


@view_config(route_name="note", request_method="GET", renderer="json")
def get_note(request: Any) -> Any:
    with _lock:
        note = _notes.get(int(request.matchdict["id"]))
    if note is None:
        raise HTTPNotFound(json_body={"error": "no such note"})
    return note


@view_config(route_name="health", renderer="string")
def health(request: Any) -> str:
    return "ok"


def main(global_config: Optional[Dict[str, str]] = None, **settings: str) -> Any:
    """The WSGI app; also a PasteDeploy entry point, so an .ini can override SETTINGS."""
    with Configurator(settings={**SETTINGS, **settings}) as config:
        config.set_security_policy(ApiKeyPolicy())
        config.include("moesif_integrations.pyramid")
        config.add_route("notes", "/notes")
        config.add_route("note", "/notes/{id:\\d+}")
        config.add_route("health", "/health")
        config.scan()
    return config.make_wsgi_app()


app = main()

if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    port = int(os.environ.get("PORT", "6543"))
    print(f"serving on http://127.0.0.1:{port}")
    make_server("127.0.0.1", port, app).serve_forever()
