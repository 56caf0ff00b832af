# python -m moesif_integrations.collector --port 8000 &  MOESIF_APPLICATION_ID=local MOESIF_BASE_URI=http://127.0.0.1:8000 flask --app examples/flask/app.py run  # noqa: E501
"""A small inventory API captured by the Moesif Flask extension.

Clients authenticate with an ``X-Api-Key`` header; the key's owner becomes the event's user and
their team its company. Any ``MOESIF_<OPTION>`` environment variable (or ``app.config`` entry)
configures the capture, e.g. ``MOESIF_LOG_BODY=false``.
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, Optional

import flask

from moesif_integrations.flask import Moesif

API_KEYS = {"key-ada": ("ada", "analytical-engines"), "key-grace": ("grace", "cobol-inc")}


def identify_user(app: flask.Flask, environ: Dict[str, Any], response_headers: Any) -> Any:
    # Runs inside the request context, after the view: g holds what authenticate() found.
    return flask.g.get("user")


def identify_company(app: flask.Flask, environ: Dict[str, Any], response_headers: Any) -> Any:
    return flask.g.get("team")


moesif = Moesif(IDENTIFY_USER=identify_user, IDENTIFY_COMPANY=identify_company)


def create_app(config: Optional[Dict[str, Any]] = None) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(config or {})
    moesif.init_app(app)

    items: Dict[int, Dict[str, Any]] = {1: {"id": 1, "name": "gear", "qty": 12}}
    next_id = itertools.count(2)

    @app.before_request
    def authenticate() -> Any:
        if flask.request.endpoint == "health":
            return None
        owner = API_KEYS.get(flask.request.headers.get("X-Api-Key", ""))
        if owner is None:
            return {"error": "missing or unknown X-Api-Key"}, 401
        flask.g.user, flask.g.team = owner
        return None

    @app.get("/health")
    def health() -> Any:
        return {"status": "ok"}

    @app.get("/items")
    def list_items() -> Any:
        return {"items": list(items.values())}

    @app.get("/items/<int:item_id>")
    def get_item(item_id: int) -> Any:
        item = items.get(item_id)
        return item if item is not None else ({"error": "no such item"}, 404)

    @app.post("/items")
    def create_item() -> Any:
        data = flask.request.get_json(silent=True) or {}
        if not isinstance(data.get("name"), str):
            return {"error": "name is required"}, 400
        item = {"id": next(next_id), "name": data["name"], "qty": int(data.get("qty", 0))}
        items[item["id"]] = item
        return item, 201

    return app


app = create_app()

if __name__ == "__main__":
    app.run(port=5000)
