"""Captured body bytes -> the event's ``body`` and ``transfer_encoding`` (docs/protocol.md,
"Bodies").

A JSON body goes as its parsed value (``"json"``), anything else as base64 (``"base64"``). A
body larger than the capture limit goes as a small marker object, never as a cut document.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

from .. import json_backend
from .fields import field_names, mask_urlencoded

MASKED = "<masked>"

_JSON_TYPES = frozenset({"application/json", "text/json"})
_FORM_TYPE = "application/x-www-form-urlencoded"
_WHITESPACE = b" \t\r\n"


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; the collector would reject the whole event.
    raise ValueError(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan, and nan != 0
        raise ValueError(text)
    return value


_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


class JsonDocument:
    """A JSON body that was parsed and found valid, with the text it came as.

    ``serialize_event`` writes ``text`` into the event as it is instead of encoding ``value``
    again: re-encoding a parsed body costs more than parsing it did.
    """

    __slots__ = ("text", "value")

    def __init__(self, text: str, value: Any) -> None:
        self.text = text
        self.value = value

    def __repr__(self) -> str:
        return f"JsonDocument({self.value!r})"


def truncation_marker(
    size: int, limit: int, content_type: Optional[str], **extra: Any
) -> Dict[str, Any]:
    """What goes instead of a body that exceeds the capture limit."""
    marker: Dict[str, Any] = {
        "moesif_body_truncated": True,
        "size": size,
        "limit": limit,
        "content_type": content_type,
    }
    marker.update(extra)
    return marker


def is_json_type(content_type: Optional[str]) -> bool:
    """application/json, text/json and application/*+json, parameters ignored."""
    if not content_type:
        return False
    mime = content_type.partition(";")[0].strip().lower()
    return mime in _JSON_TYPES or (mime.startswith("application/") and mime.endswith("+json"))


def parse_json(data: bytes) -> Optional[JsonDocument]:
    """The document when ``data`` is one strict JSON document in UTF-8, else None.

    Lone surrogates (``"\\ud800"``, which no UTF-8 text can hold) become U+FFFD, in the value
    and in the text, so the document is valid UTF-8 JSON however it is sent on."""
    try:
        text = data.decode("utf-8")
        if text[:1] == "\ufeff":
            text = text[1:]
        value = _decoder.decode(text)
    except (ValueError, RecursionError):
        # UnicodeDecodeError and JSONDecodeError are ValueErrors; so is an integer beyond
        # Python's digit limit. A document nested deeper than the stack is RecursionError.
        return None
    if _SURROGATE_ESCAPE.search(text) is not None:
        value = replace_surrogates(value)
        text = _surrogate_free.encode(value)
    return JsonDocument(text, value)


# A \u escape of a surrogate, paired or not: only then can the parsed value hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_surrogate_free = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def without_surrogates(text: str) -> str:
    """``text`` with every surrogate code point (which UTF-8 cannot encode) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def replace_surrogates(value: Any) -> Any:
    """``value`` (parsed JSON, or an event) with every lone surrogate in its strings and keys
    replaced by U+FFFD; containers are copied only where something changed."""
    if isinstance(value, str):
        return without_surrogates(value)
    if isinstance(value, dict):
        return {replace_surrogates(key): replace_surrogates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_surrogates(item) for item in value]
    return value


def _base64(data: bytes) -> Tuple[str, str]:
    return base64.b64encode(data).decode("ascii"), "base64"


def _content_codings(content_encoding: Optional[str]) -> Optional[List[str]]:
    """The codings to undo, outermost last; None when one of them is not gzip or deflate."""
    if not content_encoding:
        return []
    codings = []
    for coding in content_encoding.lower().split(","):
        coding = coding.strip()
        if not coding or coding == "identity":
            continue
        if coding not in ("gzip", "x-gzip", "deflate"):
            return None
        codings.append(coding)
    return codings


class _TooLargeError(Exception):
    pass


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    """Decompresses at most ``limit`` bytes of output; raises _TooLargeError past it, zlib.error
    (or ValueError) on corrupt or incomplete input."""
    wbits_choices: Tuple[int, ...]
    if coding == "deflate":
        # HTTP "deflate" is zlib-wrapped, but some servers send raw deflate.
        wbits_choices = (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    else:
        wbits_choices = (16 + zlib.MAX_WBITS,)
    last_error: Optional[Exception] = None
    for wbits in wbits_choices:
        try:
            return _inflate_members(data, wbits, limit)
        except zlib.error as exc:
            last_error = exc
    assert last_error is not None
    raise last_error


def _inflate_members(data: bytes, wbits: int, limit: int) -> bytes:
    out: List[bytes] = []
    produced = 0
    remaining = data
    # gzip allows several members back to back; each needs a fresh decompressor.
    while remaining:
        decompressor = zlib.decompressobj(wbits)
        chunk = decompressor.decompress(remaining, limit + 1 - produced)
        produced += len(chunk)
        if produced > limit:
            raise _TooLargeError()
        out.append(chunk)
        if decompressor.unconsumed_tail:
            # Output stopped at the bound with input left: more output would follow.
            raise _TooLargeError()
        if not decompressor.eof:
            raise zlib.error("incomplete compressed body")
        remaining = decompressor.unused_data
        if wbits < 0 or wbits == zlib.MAX_WBITS:
            if remaining.strip(b"\0" + _WHITESPACE):
                raise zlib.error("trailing data after the compressed body")
            break
        remaining = remaining.lstrip(b"\0")
    return b"".join(out)


def encode_body(
    data: bytes,
    total_size: int,
    limit: int,
    content_type: Optional[str],
    content_encoding: Optional[str],
    masks: FrozenSet[str] = frozenset(),
    keep_text: bool = False,
) -> Tuple[Any, Optional[str]]:
    """The event's (body, transfer_encoding) for a captured body; (None, None) when there is none.

    - ``total_size`` over ``limit`` (only a prefix was kept): the truncation marker, ``"json"``.
    - ``Content-Encoding`` gzip / x-gzip / deflate (several are undone in order): decompressed
      to at most ``limit`` bytes. Past that, the truncation marker, whose ``size`` is then the
      *compressed* (wire) size and which also says ``"content_encoding"``: decompressing a
      whole zip bomb just to count it is exactly what the bound is for. A corrupt or truncated
      stream, or a coding that cannot be undone here (br, zstd), gives base64 of the raw bytes.
    - A JSON content type, or any body whose first non-blank byte is ``{`` or ``[``: the parsed
      value when it is strict JSON (no NaN / Infinity), else base64.
    - A form body (``application/x-www-form-urlencoded``) with ``masks``: base64 of its bytes,
      the values of the fields in ``masks`` replaced (``mask_urlencoded``).
    - Anything else: base64.

    ``masks``: field names hidden in a parsed JSON body (``mask_json_fields``) or a
    form body, matched without regard to case; never applied to the truncation marker.
    ``keep_text``: a JSON body nothing was masked in comes back with its original text, rather
    than as the bare value: an ``orjson.Fragment`` of its bytes with orjson, else a
    ``JsonDocument`` (value and text); ``serialize_event`` writes either as it is.
    """
    size = len(data)
    if total_size > size:
        size = total_size
    if size > limit:
        return truncation_marker(size, limit, content_type), "json"
    if not data:
        return None, None
    if content_encoding:
        codings = _content_codings(content_encoding)
        if codings is None:
            return _base64(data)
        decoded = data
        try:
            for coding in reversed(codings):
                decoded = _inflate(decoded, coding, limit)
        except _TooLargeError:
            marker = truncation_marker(size, limit, content_type, content_encoding=content_encoding)
            return marker, "json"
        except (zlib.error, ValueError):
            return _base64(data)
        if not decoded:
            return None, None
        data = decoded
    names = field_names(masks)
    if names and is_form_type(content_type):
        return _base64(mask_urlencoded(data.decode("latin-1"), names).encode("latin-1"))
    if is_json_type(content_type) or _looks_like_json(data):
        orjson = json_backend.orjson
        if keep_text and orjson is not None:
            # orjson validates the document and embeds its own bytes: the body goes exactly as
            # sent (orjson's parsed value would turn integers beyond 64 bits into floats, so a
            # document with something to mask is parsed again, exactly, below).
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                pass  # the exact parse below decides (it accepts a BOM, lone surrogates)
            else:
                if not (names and _mask_in_place(parsed, names)):
                    return orjson.Fragment(bytes(data)), "json"
        document = parse_json(data)
        if document is not None:
            masked = bool(names) and _mask_in_place(document.value, names)
            return (document if keep_text and not masked else document.value), "json"
    return _base64(data)


def is_form_type(content_type: Optional[str]) -> bool:
    """application/x-www-form-urlencoded, parameters ignored."""
    if not content_type:
        return False
    return content_type.partition(";")[0].strip().lower() == _FORM_TYPE


def _looks_like_json(data: bytes) -> bool:
    first = data[:1]
    if first in _WHITESPACE and first:
        first = data.lstrip(_WHITESPACE)[:1]
    return first == b"{" or first == b"["


def mask_json_fields(value: Any, names: FrozenSet[str]) -> Any:
    """Replaces the value of every object key in ``names``, at any depth and without regard to
    case, with ``"<masked>"``.

    Works in place (a parsed body belongs to the event) and returns ``value``. Iterative, so a
    deeply nested document cannot exhaust the stack.
    """
    if names:
        _mask_in_place(value, field_names(names))
    return value


def _mask_in_place(value: Any, lowered: FrozenSet[str]) -> bool:
    """mask_json_fields, with ``lowered`` names (field_names); says whether anything was
    masked."""
    masked = False
    pending: List[Any] = [value]
    while pending:
        item = pending.pop()
        children: Iterable[Any] = item
        if isinstance(item, dict):
            # One pass in C over the keys first (parsed JSON: every key is a str): most objects
            # hold no name to mask.
            if not lowered.isdisjoint(map(str.lower, item)):
                for key in item:
                    if key.lower() in lowered:
                        item[key] = MASKED
                        masked = True
            children = item.values()
        elif not isinstance(item, list):
            continue
        for child in children:
            if isinstance(child, (dict, list)):
                pending.append(child)
    return masked
