# python -m moesif_integrations.collector --port 8000 &  MOESIF_APPLICATION_ID=local MOESIF_BASE_URI=http://127.0.0.1:8000 python examples/bottle/app.py  # noqa: E501
"""A small inventory API captured by the Moesif Bottle plugin.

Clients authenticate with an ``X-Api-Key`` header; the key's owner becomes the event's user and
their team its company. ``/health`` is left out of the capture by its route config. Any
``MOESIF_<OPTION>`` environment variable (or ``app.config["moesif.<option>"]`` entry) configures
the capture, e.g. ``MOESIF_LOG_BODY=false``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Dict

import bottle

from moesif_integrations.bottle import MoesifPlugin

API_KEYS = {"key-ada": ("ada", "analytical-engines"), "key-grace": ("grace", "cobol-inc")}


def identify_user(app: bottle.Bottle, environ: Dict[str, Any], response_headers: Any) -> Any:
    # Runs once the response has ended; authenticate() left the caller in the environ.
    return environ.get("inventory.user")


def identify_company(app: bottle.Bottle, environ: Dict[str, Any], response_headers: Any) -> Any:
    return environ.get("inventory.team")


app = bottle.Bottle()
app.config["moesif.api_version"] = "1.0"
app.install(MoesifPlugin(IDENTIFY_USER=identify_user, IDENTIFY_COMPANY=identify_company))

items: Dict[int, Dict[str, Any]] = {1: {"id": 1, "name": "gear", "qty": 12}}
next_id = itertools.count(2)


@app.hook("before_request")
def authenticate() -> None:
    if bottle.request.path == "/health":
        return
    owner = API_KEYS.get(bottle.request.get_header("X-Api-Key", ""))
    if owner is None:
        error = json.dumps({"error": "missing or unknown X-Api-Key"})
        raise bottle.HTTPResponse(error, 401, {"Content-Type": "application/json"})
    bottle.request.environ["inventory.user"], bottle.request.environ["inventory.team"] = owner


@app.get("/health", moesif={"enabled": False})
def health() -> Any:
    return {"status": "ok"}


@app.get("/items")
def list_items() -> Any:
    return {"items": list(items.values())}


@app.get("/items/<item_id:int>")
def get_item(item_id: int) -> Any:
    item = items.get(item_id)
    if item is None:
        bottle.response.status = 404
        return {"error": "no such item"}
    return item


@app.post("/items")
def create_item() -> Any:
    data = bottle.request.json or {}
    if not isinstance(data.get("name"), str):
        bottle.response.status = 400
        return {"error": "name is required"}
    item = {"id": next(next_id), "name": data["name"], "qty": int(data.get("qty", 0))}
    items[item["id"]] = item
    bottle.response.status = 201
    return item


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=8080)
