"""Decoding and shape checks of what clients POST: gzip or plain JSON, one object or an array."""

from __future__ import annotations

import json
import zlib
from typing import Any, Dict, List, Tuple

from moesif_integrations.core import json_backend

# Fields the collector insists on, per kind (docs/protocol.md, "The event" and "Users,
# companies, subscriptions, actions"). Dotted names are nested.
REQUIRED_FIELDS: Dict[str, Tuple[str, ...]] = {
    "events": ("request", "request.time", "request.uri", "request.verb"),
    "users": ("user_id",),
    "companies": ("company_id",),
    "subscriptions": ("subscription_id", "company_id"),
    "actions": ("action_name",),
}
# Present-but-optional objects whose own fields are then required.
_OPTIONAL_OBJECTS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "events": ("response", ("time", "status")),
}


class NonFinite(float):
    """NaN or an infinity a client sent (not JSON, but the standard library reads it): a float
    of its own type, so that storage writes it back as it came (orjson would write null)."""


class BadPayloadError(ValueError):
    """The body cannot be accepted; the message says why (it goes back to the client)."""


# Deeper values are refused: the standard library's json recurses once per level, and must read
# and write back whatever was stored.
MAX_NESTING = 500


def check_nesting(value: Any, limit: int = MAX_NESTING) -> None:
    """Raises BadPayloadError when arrays and objects nest more than ``limit`` levels deep
    (walked without recursion, so any depth is safe to check)."""
    stack: List[Tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            raise BadPayloadError(f"JSON nested more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children)


def decode_body(body: bytes, content_encoding: str, max_bytes: int) -> Any:
    """The JSON value of a request body, gunzipped when the client said so."""
    encoding = content_encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        body = _gunzip(body, max_bytes)
    elif encoding not in ("", "identity"):
        raise BadPayloadError(f"unsupported Content-Encoding {content_encoding!r}")
    orjson = json_backend.orjson
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # what orjson refuses (NaN, integers past 64 bits) the standard library may take
    try:
        return json.loads(body, parse_constant=NonFinite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayloadError(f"body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise BadPayloadError("body is not acceptable JSON: nested too deeply") from None


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        # Bounded so a small "gzip bomb" cannot exhaust memory.
        data = decompressor.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadPayloadError(f"body is not valid gzip: {exc}") from exc
    if len(data) > max_bytes:
        raise BadPayloadError(f"decompressed body is larger than {max_bytes} bytes")
    if not decompressor.eof:
        raise BadPayloadError("body is not valid gzip: truncated stream")
    return data


def items_of(kind: str, payload: Any, batch: bool, validate: bool) -> List[Dict[str, Any]]:
    """The objects to store from a decoded payload: an array for a batch, one object otherwise."""
    if batch:
        if not isinstance(payload, list):
            raise BadPayloadError(
                f"a batch of {kind} must be a JSON array, not {_json_type(payload)}"
            )
        items = payload
    else:
        items = [payload]
    for index, item in enumerate(items):
        where = f"item {index}: " if batch else ""
        if not isinstance(item, dict):
            raise BadPayloadError(
                f"{where}each of {kind} must be a JSON object, not {_json_type(item)}"
            )
        if validate:
            problem = _missing_field(kind, item)
            if problem:
                raise BadPayloadError(f"{where}{problem}")
    return items


def _missing_field(kind: str, item: Dict[str, Any]) -> str:
    for field in REQUIRED_FIELDS[kind]:
        problem = _check_path(item, field)
        if problem:
            return problem
    optional = _OPTIONAL_OBJECTS.get(kind)
    if optional is not None:
        name, fields = optional
        value = item.get(name)
        if value is not None:
            if not isinstance(value, dict):
                return f"{name} must be an object, not {_json_type(value)}"
            for field in fields:
                if value.get(field) in (None, ""):
                    return f"missing {name}.{field}"
    return ""


def _check_path(item: Dict[str, Any], dotted: str) -> str:
    value: Any = item
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(value, dict):
            return f"{'.'.join(parts[:depth])} must be an object, not {_json_type(value)}"
        value = value.get(part)
        if value is None or value == "":
            return f"missing {dotted}"
    return ""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
