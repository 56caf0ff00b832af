"""One wire event -> compact UTF-8 JSON bytes, or a clear error for that one event."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import uuid
from typing import Any, Callable, Dict, List

from .. import json_backend
from .bodies import JsonDocument


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


def _make_fast_encode() -> Callable[[Any], str]:
    """The C encoder built once: JSONEncoder.encode builds it anew on every call, which costs
    about 0.7 us, and an event takes up to three calls. Falls back to ``_compact`` where the
    C accelerator is missing (PyPy) or behaves differently."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _compact.encode
    try:
        iterencode = make(
            None, _convert, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )

        def encode(value: Any) -> str:
            return "".join(iterencode(value, 0))

        sample = {"a": [1, 2.5, None, True, "\u00e9"], "b": {"c": "d"}}
        if encode(sample) != _compact.encode(sample):
            return _compact.encode
        return encode
    except Exception:
        return _compact.encode


_encode_compact = _make_fast_encode()
# For text with lone surrogates (from "\ud800" escapes in a JSON body), which UTF-8 cannot
# encode: \u escapes carry it exactly as the client sent it.
_ascii = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=_convert
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
            # Without OPT_NON_STR_KEYS first: it slows every dict down, and only user metadata
            # can have keys that are not strings (orjson then raises, and the option is used).
            return orjson.dumps(event, default=_orjson_default)
        except (TypeError, ValueError):
            pass
        try:
            return orjson.dumps(event, default=_orjson_default, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, ValueError):
            # orjson refuses lone surrogates and integers beyond 64 bits, which the standard
            # encoder carries; it decides, and raises for what neither can carry.
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
    try:
        return _encode(event).encode("utf-8")
    except UnicodeEncodeError:
        return _ascii.encode(event).encode("ascii")


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
        return _encode_compact(event)
    # Encode everything else in one call, then append the sections with their body texts.
    rest = {key: value for key, value in event.items() if key not in spliced}
    parts = [_encode_compact(rest)[:-1]]
    for key in spliced:
        section: Dict[str, Any] = event[key]
        document: JsonDocument = section["body"]
        others = {name: value for name, value in section.items() if name != "body"}
        encoded = _encode_compact(others)[:-1]
        parts.append(f'"{key}":{encoded}{"," if others else ""}"body":{document.text}}}')
    head = parts[0]
    return head + ("," if rest else "") + ",".join(parts[1:]) + "}"
