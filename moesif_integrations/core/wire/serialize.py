"""One wire event -> compact UTF-8 JSON bytes, or a clear error for that one event."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import uuid
from typing import Any, Dict, List

from .. import json_backend
from .bodies import JsonDocument, without_surrogates


class UnserializableEventError(ValueError):
    """The event holds something JSON cannot carry; the worker drops this one event."""


def _convert(value: Any) -> Any:
    """``default`` hook: the common non-JSON types users put in metadata."""
    if isinstance(value, JsonDocument):
        return value.value
    orjson = json_backend.orjson
    if orjson is not None and type(value) is orjson.Fragment:
        # A body the builder kept as its bytes, in an event orjson could not write: the
        # standard encoder reads the bytes back.
        return json.loads(orjson.dumps(value))
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return None  # as non-finite floats: JSON has no NaN, the collector rejects it
        as_float = float(value)
        # Keep the exact digits when a float would change them (money, long ids).
        if math.isfinite(as_float) and decimal.Decimal(repr(as_float)) == value:
            return as_float
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset)):
        items: List[Any] = list(value)
        return items
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# One encoder for all events: json.dumps with options builds a new encoder per call. ``default``
# costs nothing until a value needs it, so no separate "without default" fast path is needed.
# No circular-reference bookkeeping: a cycle (only possible in user metadata) still fails, as
# RecursionError, and the check costs about a tenth of the encoding time.
_compact = json.JSONEncoder(
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    check_circular=False,
    default=_convert,
)


_SECTIONS = ("request", "response")


def serialize_event(event: Dict[str, Any]) -> bytes:
    """Compact JSON in UTF-8. Datetimes, dates and times become ISO strings, Decimals numbers
    (strings when a float would change them), UUIDs strings, bytes base64, sets lists, and
    non-finite numbers (NaN, Infinity) null, which is all JSON can say of them.

    A request or response body held as a JsonDocument or an orjson Fragment is written as its
    original text (it was validated when parsed).

    Raises UnserializableEventError for anything else and for cycles.
    """
    orjson = json_backend.orjson
    if orjson is not None:
        try:
            # OPT_NON_STR_KEYS: user metadata may have keys that are not strings.
            return orjson.dumps(event, default=_orjson_default, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, ValueError):
            # orjson refuses lone surrogates and integers beyond 64 bits: the standard encoder
            # carries big integers, replaces lone surrogates, and raises for what neither can
            # carry.
            pass
    try:
        try:
            return _encode_utf8(event)
        except ValueError as exc:
            if "Out of range float" not in str(exc):
                raise
            return _encode_utf8(_finite(event))
    except (TypeError, ValueError, RecursionError, OverflowError) as exc:
        raise UnserializableEventError(str(exc)) from exc


def _encode_utf8(event: Dict[str, Any]) -> bytes:
    text = _encode(event)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (metadata, hook answers, a framework's decoding) are not UTF-8 and the
        # collector rejects their escapes: each becomes U+FFFD, so the event is valid UTF-8 JSON.
        return without_surrogates(text).encode("utf-8")


def _finite(value: Any) -> Any:
    """A copy with NaN and the infinities as None (the standard encoder refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _orjson_default(value: Any) -> Any:
    if isinstance(value, JsonDocument):
        return json_backend.orjson.Fragment(value.text)
    return _convert(value)


def _has_document(section: Any) -> bool:
    return isinstance(section, dict) and isinstance(section.get("body"), JsonDocument)


def _encode(event: Dict[str, Any]) -> str:
    spliced = [key for key in _SECTIONS if _has_document(event.get(key))]
    if not spliced:
        return _compact.encode(event)
    # Encode everything else in one call, then append the sections with their body texts.
    rest = {key: value for key, value in event.items() if key not in spliced}
    parts = [_compact.encode(rest)[:-1]]
    for key in spliced:
        section: Dict[str, Any] = event[key]
        document: JsonDocument = section["body"]
        others = {name: value for name, value in section.items() if name != "body"}
        encoded = _compact.encode(others)[:-1]
        parts.append(f'"{key}":{encoded}{"," if others else ""}"body":{document.text}}}')
    head = parts[0]
    return head + ("," if rest else "") + ",".join(parts[1:]) + "}"
