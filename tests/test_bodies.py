from __future__ import annotations

import base64
import gzip
import json
import tracemalloc
import zlib
from typing import Any

import pytest

from moesif_integrations.core.wire.bodies import (
    MASKED,
    JsonDocument,
    encode_body,
    is_json_type,
    mask_json_fields,
)
from moesif_integrations.core.wire.serialize import serialize_event

try:
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

LIMIT = 10_000


def encode(data: bytes, content_type: Any = None, content_encoding: Any = None, **kw: Any) -> Any:
    return encode_body(
        data,
        kw.pop("size", len(data)),
        kw.pop("limit", LIMIT),
        content_type,
        content_encoding,
        **kw,
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ----------------------------------------------------------------------------- no body


def test_empty_body_is_no_body() -> None:
    assert encode(b"") == (None, None)
    assert encode(b"", "application/json") == (None, None)


# ----------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/json",
        "application/problem+json",
        "application/vnd.api+json; charset=UTF-8",
    ],
)
def test_json_content_types_are_parsed(content_type: str) -> None:
    assert encode(b'{"a": [1, 2, {"b": null}]}', content_type) == (
        {"a": [1, 2, {"b": None}]},
        "json",
    )


def test_json_scalars_with_json_content_type() -> None:
    assert encode(b"42", "application/json") == (42, "json")
    assert encode(b'"text"', "application/json") == ("text", "json")


def test_is_json_type() -> None:
    assert is_json_type("application/json")
    assert is_json_type("application/merge-patch+json")
    assert not is_json_type("application/jsonl")
    assert not is_json_type("text/plain")
    assert not is_json_type("image/svg+xml")
    assert not is_json_type(None)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream"])
def test_text_that_looks_like_json_is_parsed(content_type: Any) -> None:
    assert encode(b'{"k": "v"}', content_type) == ({"k": "v"}, "json")
    assert encode(b"\r\n  [1, 2]\n", content_type) == ([1, 2], "json")


def test_text_that_is_not_json_is_base64() -> None:
    assert encode(b"hello world", "text/plain") == (b64(b"hello world"), "base64")
    # Starts like JSON, is not JSON.
    assert encode(b"{not json", "text/plain") == (b64(b"{not json"), "base64")
    # Valid JSON scalar without a JSON content type does not "look like" JSON.
    assert encode(b"42", "text/plain") == (b64(b"42"), "base64")


def test_invalid_json_with_json_content_type_is_base64_of_the_bytes() -> None:
    data = b'{"a": 1,'
    assert encode(data, "application/json") == (b64(data), "base64")


@pytest.mark.parametrize("data", [b'{"a": NaN}', b"[Infinity]", b"[-Infinity]", b'{"a": 1e999}'])
def test_non_finite_numbers_are_not_json(data: bytes) -> None:
    # The collector rejects NaN / Infinity; such a body must not poison the event.
    assert encode(data, "application/json") == (b64(data), "base64")


def test_non_utf8_json_is_base64() -> None:
    data = b'{"name": "caf\xe9"}'
    assert encode(data, "application/json") == (b64(data), "base64")


def test_utf8_bom_is_tolerated() -> None:
    assert encode(b'\xef\xbb\xbf{"a": 1}', "application/json") == ({"a": 1}, "json")


def test_deeply_nested_json_does_not_raise() -> None:
    data = b"[" * 200_000 + b"]" * 200_000
    body, encoding = encode(data, "application/json", limit=len(data))
    assert encoding == "base64"
    assert body == b64(data)


def test_binary_is_base64_exactly() -> None:
    data = bytes(range(256))
    body, encoding = encode(data, "application/octet-stream")
    assert encoding == "base64"
    assert base64.b64decode(body) == data


# ------------------------------------------------------------------------- truncation


def test_over_the_limit_gives_the_truncation_marker_not_a_cut_document() -> None:
    prefix = b'{"items": [1, 2, 3]}'  # the kept prefix happens to be valid JSON on its own
    assert encode(prefix, "application/json", size=50_000, limit=20) == (
        {
            "moesif_body_truncated": True,
            "size": 50_000,
            "limit": 20,
            "content_type": "application/json",
        },
        "json",
    )


def test_nothing_kept_but_something_sent_is_still_marked() -> None:
    body, encoding = encode(b"", "text/plain", size=5, limit=0)
    assert encoding == "json"
    assert body["moesif_body_truncated"] is True and body["size"] == 5


def test_exactly_at_the_limit_is_not_truncated() -> None:
    data = b'{"a": "' + b"x" * 100 + b'"}'
    assert encode(data, "application/json", limit=len(data)) == ({"a": "x" * 100}, "json")


# ------------------------------------------------------------------- content encodings


def test_gzip_body_is_decompressed_then_parsed() -> None:
    data = gzip.compress(b'{"user": "ann"}')
    assert encode(data, "application/json", "gzip") == ({"user": "ann"}, "json")
    assert encode(data, "application/json", "x-gzip") == ({"user": "ann"}, "json")


def test_gzip_binary_is_base64_of_the_decompressed_bytes() -> None:
    raw = bytes(range(200))
    assert encode(gzip.compress(raw), "application/octet-stream", "GZIP") == (b64(raw), "base64")


def test_concatenated_gzip_members() -> None:
    data = gzip.compress(b'{"a": ') + gzip.compress(b"[1, 2]}")
    assert encode(data, "application/json", "gzip") == ({"a": [1, 2]}, "json")


def test_deflate_zlib_wrapped_and_raw() -> None:
    wrapped = zlib.compress(b'{"d": 1}')
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = compressor.compress(b'{"d": 2}') + compressor.flush()
    assert encode(wrapped, "application/json", "deflate") == ({"d": 1}, "json")
    assert encode(raw, "application/json", "deflate") == ({"d": 2}, "json")


def test_stacked_encodings_are_undone_in_reverse_order() -> None:
    data = gzip.compress(zlib.compress(b'{"x": true}'))
    assert encode(data, "application/json", "deflate, gzip") == ({"x": True}, "json")


@pytest.mark.parametrize(
    "data",
    [
        b"\x1f\x8b\x08\x00garbage-not-gzip",
        gzip.compress(b'{"a": 1}')[:-6],  # cut short: no end of stream
        gzip.compress(b'{"a": 1}') + b"trailing junk",
    ],
)
def test_corrupt_gzip_is_base64_of_the_raw_bytes(data: bytes) -> None:
    assert encode(data, "application/json", "gzip") == (b64(data), "base64")


def test_unsupported_encoding_is_base64_of_the_raw_bytes() -> None:
    data = b"\x8b\x02\x80some-brotli"
    assert encode(data, "application/json", "br") == (b64(data), "base64")
    assert encode(data, "application/json", "gzip, br") == (b64(data), "base64")


def test_identity_encoding_is_nothing_to_undo() -> None:
    assert encode(b'{"i": 1}', "application/json", "identity") == ({"i": 1}, "json")


def test_zip_bomb_is_bounded_and_marked_with_the_compressed_size() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        body, encoding = encode(bomb, "application/json", "gzip", limit=100_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # never held the 64 MB
    assert encoding == "json"
    assert body == {
        "moesif_body_truncated": True,
        "size": len(bomb),
        "limit": 100_000,
        "content_type": "application/json",
        "content_encoding": "gzip",
    }


def test_decompressed_size_bound_is_exact() -> None:
    payload = b"[" + b"1," * 49 + b"1]"
    size = len(payload)
    assert encode(gzip.compress(payload), "application/json", "gzip", limit=size)[1] == "json"
    body, _ = encode(gzip.compress(payload), "application/json", "gzip", limit=size - 1)
    assert body["moesif_body_truncated"] is True


# ------------------------------------------------------------------------- body masks


def test_mask_json_fields_at_any_depth() -> None:
    value = {
        "password": "hunter2",
        "user": {"name": "ann", "card": {"number": "4111", "cvv": "123"}},
        "items": [{"token": "t1", "qty": 1}, [{"token": "t2"}], "token"],
        "PassWord": "case differs",
    }
    result = mask_json_fields(value, frozenset({"password", "TOKEN", "card"}))
    assert result == {
        "password": MASKED,
        "user": {"name": "ann", "card": MASKED},
        "items": [{"token": MASKED, "qty": 1}, [{"token": MASKED}], "token"],
        "PassWord": MASKED,  # names are matched without regard to case
    }


def test_mask_json_fields_handles_scalars_and_deep_documents() -> None:
    assert mask_json_fields("password", frozenset({"password"})) == "password"
    assert mask_json_fields(None, frozenset({"x"})) is None
    deep: Any = {"secret": 1}
    for _ in range(5000):
        deep = [deep]
    mask_json_fields(deep, frozenset({"secret"}))
    inner = deep
    while isinstance(inner, list):
        inner = inner[0]
    assert inner == {"secret": MASKED}


def test_encode_body_applies_masks_to_json_only() -> None:
    masks = frozenset({"password"})
    assert encode(b'{"password": "p", "u": "ann"}', "application/json", masks=masks) == (
        {"password": MASKED, "u": "ann"},
        "json",
    )
    marker, _ = encode(b'{"password": "p"}', "application/json", size=99, limit=5, masks=masks)
    assert marker["moesif_body_truncated"] is True and "password" not in marker


def kept_value(body: Any) -> Any:
    """The value of a body kept with its text (a JsonDocument, or an orjson Fragment)."""
    if isinstance(body, JsonDocument):
        return body.value
    assert orjson is not None and isinstance(body, orjson.Fragment)
    return json.loads(orjson.dumps(body))


def test_keep_text_returns_the_document_with_its_text(json_backend: str) -> None:
    data = b'{"a": [1, 2],  "b": "\\u00e9", "big": 123456789012345678901234567890}'
    body, encoding = encode(data, "application/json", keep_text=True)
    assert encoding == "json"
    if json_backend == "orjson":
        assert isinstance(body, orjson.Fragment) and orjson.dumps(body) == data
    else:
        assert isinstance(body, JsonDocument) and body.text == data.decode()
    assert kept_value(body) == {"a": [1, 2], "b": "\u00e9", "big": 123456789012345678901234567890}


def test_keep_text_gives_the_plain_value_once_something_was_masked() -> None:
    masks = frozenset({"b"})
    body, _ = encode(b'{"a": 1, "b": 2}', "application/json", masks=masks, keep_text=True)
    assert body == {"a": 1, "b": MASKED}
    untouched, _ = encode(b'{"a": 1}', "application/json", masks=masks, keep_text=True)
    assert kept_value(untouched) == {"a": 1}


def test_masks_find_keys_written_with_escapes() -> None:
    data = b'{"pass\\u0077ord": "hunter2", "n": 1}'
    body, _ = encode(data, "application/json", masks=frozenset({"password"}), keep_text=True)
    assert body == {"password": MASKED, "n": 1}


@pytest.mark.skipif(orjson is None, reason="orjson is not installed")
def test_with_orjson_a_json_body_keeps_its_own_bytes() -> None:
    data = b'{"a": [1, 2], "big": 123456789012345678901234567890}'
    content_type = "application/x-fragment-test+json"
    for given in (data, bytearray(data), data):  # the content type's answer is remembered
        body, encoding = encode(given, content_type, keep_text=True)
        assert encoding == "json" and isinstance(body, orjson.Fragment)
        assert orjson.dumps(body) == data
    # What orjson refuses goes to the exact parse, which accepts a BOM, and lone surrogates,
    # which become U+FFFD in the value and in the text.
    body, _ = encode(b"\xef\xbb\xbf[1]", content_type, keep_text=True)
    assert isinstance(body, JsonDocument) and body.value == [1]
    body, _ = encode(b'{"s": "\\ud800"}', content_type, keep_text=True)
    assert isinstance(body, JsonDocument) and body.value == {"s": "\ufffd"}
    assert json.loads(body.text.encode("utf-8")) == {"s": "\ufffd"}
    assert encode(b"[1", content_type, keep_text=True) == (b64(b"[1"), "base64")


@pytest.mark.skipif(orjson is None, reason="orjson is not installed")
@pytest.mark.parametrize("metadata", [{"big": 2**70}, {"text": "\udc00"}])
def test_a_fragment_body_survives_the_standard_encoder(metadata: Any) -> None:
    # orjson cannot write this metadata: the whole event goes through the standard encoder,
    # which reads the Fragment's bytes back.
    event = {"response": {"body": orjson.Fragment(b'{"n": 123456789012345678901234567890}')}}
    event["metadata"] = metadata
    data = serialize_event(event)
    assert b'"body":{"n":123456789012345678901234567890}' in data
    sent = {key: "\ufffd" if value == "\udc00" else value for key, value in metadata.items()}
    assert json.loads(data.decode("utf-8"))["metadata"] == sent  # lone surrogates replaced
