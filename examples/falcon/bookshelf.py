"""What the WSGI app (``app.py``) and its ASGI twin (``asgi_app.py``) share: data, API keys and
the Moesif settings. Falcon passes ``(req, resp)`` to the hooks under WSGI and ASGI alike."""

from __future__ import annotations

import itertools
from typing import Any, Dict, Optional, Tuple

API_KEYS = {"key-ada": ("ada", "analytical-engines"), "key-grace": ("grace", "cobol-inc")}

BOOKS: Dict[int, Dict[str, Any]] = {
    1: {"id": 1, "title": "Notes on the Analytical Engine", "year": 1843},
    2: {"id": 2, "title": "Manual of Operation for the ASCC", "year": 1946},
}
NEXT_ID = itertools.count(3)


def owner_of(api_key: Optional[str]) -> Optional[Tuple[str, str]]:
    """(user, team) of an API key, or None."""
    return API_KEYS.get(api_key or "")


def new_book(data: Any) -> Optional[Dict[str, Any]]:
    """Stores a book from a request's JSON; None when it is not a valid book."""
    if not isinstance(data, dict) or not isinstance(data.get("title"), str):
        return None
    book = {"id": next(NEXT_ID), "title": data["title"], "year": data.get("year")}
    BOOKS[book["id"]] = book
    return book


def moesif_settings() -> Dict[str, Any]:
    # The authentication middleware put the caller in req.context.
    return {
        "IDENTIFY_USER": lambda req, resp: req.context.get("user"),
        "IDENTIFY_COMPANY": lambda req, resp: req.context.get("team"),
        "GET_METADATA": lambda req, resp: {"route": req.uri_template},
        "SKIP": lambda req, resp: req.path == "/health",
    }
