from __future__ import annotations

import base64
import datetime
import decimal
import gc
import gzip
import hashlib
import hmac
import ipaddress
import json
import math
import random
import re
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import reference

from moesif_integrations.core.config.schema import Settings
from moesif_integrations.core.record import ExchangeRecord
from moesif_integrations.core.wire import event as events_module
from moesif_integrations.core.wire import headers as headers_module
from moesif_integrations.core.wire.bodies import JsonDocument
from moesif_integrations.core.wire.event import (
    EventBuilder,
    MaskEventError,
    UnserializableEventError,
    build_uri,
    serialize_event,
)
from moesif_integrations.core.wire.headers import (
    HeaderMasker,
    header_name_from_environ_key,
    join_headers,
)
from moesif_integrations.core.wire.mask_event_model import from_event_model, to_event_model
from moesif_integrations.core.wire.memo import Memo
from moesif_integrations.core.wire.times import format_time, format_times

try:
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

# What a JSON body kept as its own text can be in an event.
KEPT_TEXT: Tuple[type, ...] = (JsonDocument,) + (() if orjson is None else (orjson.Fragment,))

KEY = b"k" * 32
TXN = "dda3bbde-3c99-4e70-97f6-19c5310efd63"


def fingerprint(secret: str, key: bytes = KEY) -> str:
    return "<masked:" + hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()[:16] + ">"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


JWT = "eyJhbGciOiJIUzI1NiJ9." + b64url(b'{"sub": "user-42"}') + ".sig"


# ------------------------------------------------------------------------------- time


def test_format_time_matches_datetime_exactly() -> None:
    rng = random.Random(7)
    samples = [0.0, 1.0, 1764101115.585, 1764101115.9995, 1764101115.0004999, 1764101115.9999996]
    samples += [rng.uniform(0, 4e9) for _ in range(20000)]
    for epoch in samples:
        expected = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
        assert format_time(epoch) == expected.isoformat(timespec="milliseconds")[:-6], epoch


def test_format_time_shape() -> None:
    assert format_time(1764101115.585) == "2025-11-25T20:05:15.585"
    assert format_time(1764101116.0) == "2025-11-25T20:05:16.000"
    # The cached second prefix must not leak into another second.
    assert format_time(1764101115.001) == "2025-11-25T20:05:15.001"


# ---------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "key,name",
    [
        ("HTTP_X_FORWARDED_FOR", "X-Forwarded-For"),
        ("CONTENT_TYPE", "Content-Type"),
        ("CONTENT_LENGTH", "Content-Length"),
        ("HTTP_HOST", "Host"),
        ("HTTP_WWW_AUTHENTICATE", "WWW-Authenticate"),
        ("HTTP_ETAG", "ETag"),
        ("HTTP_DNT", "DNT"),
        ("HTTP_TE", "TE"),
        ("HTTP_X_XSS_PROTECTION", "X-XSS-Protection"),
        ("HTTP_USER_AGENT", "User-Agent"),
        ("HTTP_CGI_AUTHORIZATION", "Authorization"),
    ],
)
def test_header_name_from_environ_key(key: str, name: str) -> None:
    assert header_name_from_environ_key(key) == name
    assert header_name_from_environ_key(key) == name  # and again, from the cache


def test_repeated_headers_are_joined_in_order_first_spelling_kept() -> None:
    pairs = [
        ("Set-Cookie", "a=1; Path=/"),
        ("Content-Type", "text/plain"),
        ("set-cookie", "b=2"),
        ("SET-COOKIE", "c=3"),
    ]
    assert join_headers(pairs, from_environ=False) == {
        "Set-Cookie": "a=1; Path=/, b=2, c=3",
        "Content-Type": "text/plain",
    }


def test_environ_pairs_get_header_names() -> None:
    pairs = [("HTTP_ACCEPT", "a"), ("CONTENT_TYPE", "application/json"), ("HTTP_ACCEPT", "b")]
    assert join_headers(pairs, from_environ=True) == {
        "Accept": "a, b",
        "Content-Type": "application/json",
    }


def test_wsgi_latin1_values_holding_utf8_are_redecoded() -> None:
    wsgi_value = "caf\u00e9 \u2603".encode().decode("latin-1")  # how PEP 3333 hands it over
    joined = join_headers([("X-Name", wsgi_value)], from_environ=False)
    assert joined == {"X-Name": "caf\u00e9 \u2603"}


def test_non_utf8_header_bytes_never_break_json() -> None:
    wsgi_value = b"bad \xff\xfe bytes".decode("latin-1")
    joined = join_headers([("HTTP_X_BAD", wsgi_value), ("X-Surrogate", "a\ud800b")], True)
    assert joined["X-Bad"] == "bad \ufffd\ufffd bytes"
    assert joined["X-Surrogate"] == "a?b"
    json.dumps(joined, ensure_ascii=False).encode("utf-8")


def test_non_string_header_values_become_text() -> None:
    assert join_headers([("X-Bytes", b"v\xc3\xa9"), ("X-Int", 5)], False) == {  # type: ignore[list-item]
        "X-Bytes": "v\u00e9",
        "X-Int": "5",
    }


# ---------------------------------------------------------------------------- masking


def masker(sensitive: bool = True, extra: Tuple[str, ...] = (), key: bytes = KEY) -> HeaderMasker:
    return HeaderMasker(sensitive, extra, key)


def test_fingerprint_is_keyed_hmac_sha256() -> None:
    assert masker().fingerprint("s3cret") == fingerprint("s3cret")
    long_key = b"x" * 100  # longer than the hash block: hashed first, as HMAC requires
    assert masker(key=long_key).fingerprint("s3cret") == fingerprint("s3cret", long_key)


def test_fingerprints_are_stable_and_distinct() -> None:
    m = masker()
    first = m.mask({"X-Api-Key": "key-one"})["X-Api-Key"]
    assert first == m.mask({"X-Api-Key": "key-one"})["X-Api-Key"]
    assert first == masker().mask({"x-api-key": "key-one"})["x-api-key"]
    assert first != m.mask({"X-Api-Key": "key-two"})["X-Api-Key"]
    assert first != masker(key=b"other").mask({"X-Api-Key": "key-one"})["X-Api-Key"]
    assert "key-one" not in first


def test_authorization_keeps_the_scheme() -> None:
    m = masker()
    masked = m.mask({"Authorization": "Bearer " + JWT, "Proxy-Authorization": "Basic dXNlcjpwdw=="})
    assert masked["Authorization"] == "Bearer " + fingerprint(JWT)
    assert masked["Proxy-Authorization"] == "Basic " + fingerprint("dXNlcjpwdw==")
    assert m.mask({"Authorization": "opaque-token"}) == {
        "Authorization": fingerprint("opaque-token")
    }
    # A "KEY SECRET" value: the first word is no scheme and is not left in clear.
    masked_pair = m.mask({"Authorization": "AKIA1234 secret"})["Authorization"]
    assert "AKIA1234" not in masked_pair


def test_cookie_names_are_kept_values_fingerprinted() -> None:
    masked = masker().mask({"Cookie": "session=abc123; theme=dark"})
    assert masked == {"Cookie": f"session={fingerprint('abc123')}; theme={fingerprint('dark')}"}
    # Two Cookie headers (HTTP/2 style) joined with ", ".
    joined = join_headers([("HTTP_COOKIE", "a=1"), ("HTTP_COOKIE", "b=2")], from_environ=True)
    assert masker().mask(joined) == {"Cookie": f"a={fingerprint('1')}; b={fingerprint('2')}"}


def test_set_cookie_keeps_names_and_attributes_even_when_joined() -> None:
    joined = join_headers(
        [
            ("Set-Cookie", "sid=s1; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly"),
            ("Set-Cookie", "pref=p2; Path=/"),
        ],
        from_environ=False,
    )
    masked = masker().mask(joined)
    assert masked["Set-Cookie"] == (
        f"sid={fingerprint('s1')}; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly, "
        f"pref={fingerprint('p2')}; Path=/"
    )


@pytest.mark.parametrize(
    "name",
    [
        "X-Api-Key",
        "Api-Key",
        "apikey",
        "X-Auth-Token",
        "X-Access-Token",
        "X-Amz-Security-Token",
        "X-Client-Secret",
        "X-My-Api_Key",
        "X-Refresh-Token",
        "X-CSRF-Token",
        "X-Password",
    ],
)
def test_api_key_like_headers_are_masked(name: str) -> None:
    assert masker().mask({name: "value"}) == {name: fingerprint("value")}


def test_ordinary_headers_are_not_masked() -> None:
    headers = {
        "X-Moesif-Transaction-Id": TXN,
        "Content-Type": "application/json",
        "User-Agent": "curl/8",
        "WWW-Authenticate": 'Bearer realm="api"',
    }
    assert masker().mask(headers) == headers


def test_masking_can_be_turned_off_except_for_extra_names() -> None:
    headers = {"Authorization": "Bearer x", "X-Internal": "secret", "X-Other": "o"}
    assert masker(sensitive=False).mask(headers) == headers
    assert masker(sensitive=False, extra=("x-internal", "authorization")).mask(headers) == {
        "Authorization": "Bearer " + fingerprint("x"),
        "X-Internal": fingerprint("secret"),
        "X-Other": "o",
    }


def test_mask_does_not_change_its_argument() -> None:
    headers = {"Authorization": "Bearer x"}
    masker().mask(headers)
    assert headers == {"Authorization": "Bearer x"}


# -------------------------------------------------------------------------------- uri


def test_uri_parts() -> None:
    assert build_uri("http", "api.example.com", "/items/5", "x=1&y=2") == (
        "http://api.example.com/items/5?x=1&y=2"
    )
    assert build_uri("https", "h", "/app" + "/items", "") == "https://h/app/items"
    assert build_uri("http", "h", "", "") == "http://h/"


def test_uri_default_ports_are_left_out() -> None:
    assert build_uri("http", "server.local:80", "/x", "") == "http://server.local/x"
    assert build_uri("https", "server.local:443", "/x", "") == "https://server.local/x"
    assert build_uri("http", "server.local:8080", "/x", "") == "http://server.local:8080/x"
    assert build_uri("https", "server.local:80", "/x", "") == "https://server.local:80/x"
    assert build_uri("http", "[::1]:80", "/x", "") == "http://[::1]/x"


def test_uri_path_is_quoted_from_the_wsgi_bytes() -> None:
    wsgi_path = "/caf\u00e9/a b".encode().decode("latin-1")
    assert build_uri("http", "h", wsgi_path, "") == "http://h/caf%C3%A9/a%20b"
    # PATH_INFO is decoded: "%", "?" and "#" in it are literal and must be escaped.
    assert build_uri("http", "h", "/100%/a?b#c", "") == "http://h/100%25/a%3Fb%23c"
    # Invalid UTF-8 survives exactly.
    assert build_uri("http", "h", b"/\xff".decode("latin-1"), "") == "http://h/%FF"
    # A framework that already decoded the path properly.
    assert build_uri("http", "h", "/\u2603", "") == "http://h/%E2%98%83"


def test_uri_query_keeps_its_escapes() -> None:
    assert build_uri("http", "h", "/", "q=a%20b&r=%2F") == "http://h/?q=a%20b&r=%2F"
    assert build_uri("http", "h", "/", "q=a b&p=100%") == "http://h/?q=a%20b&p=100%25"
    assert build_uri("http", "h", "/", "a[]=1&b=x/y?z") == "http://h/?a[]=1&b=x/y?z"


# ------------------------------------------------------------------------ the builder


def record(**changes: Any) -> ExchangeRecord:
    r = ExchangeRecord()
    r.request_time = 1764101115.585
    r.response_time = 1764101115.5869
    r.method = "POST"
    r.scheme = "https"
    r.host = "api.example.com"
    r.path = "/items/5"
    r.query = "x=1"
    r.request_headers = [
        ("HTTP_HOST", "api.example.com"),
        ("CONTENT_TYPE", "application/json"),
        ("HTTP_AUTHORIZATION", "Bearer " + JWT),
        ("HTTP_X_MOESIF_TRANSACTION_ID", "not-a-uuid"),
    ]
    r.request_headers_cgi = True
    r.remote_addr = "203.0.113.7"
    r.request_body = b'{"name": "ann", "password": "p"}'
    r.request_body_size = len(r.request_body)
    r.status = 201
    r.response_headers = [
        ("Content-Type", "application/json"),
        ("Set-Cookie", "sid=1"),
        ("Set-Cookie", "t=2"),
        ("X-Moesif-Transaction-Id", TXN),
    ]
    r.response_body = b'{"ok": true}'
    r.response_body_size = len(r.response_body)
    r.transaction_id = TXN
    r.company_id = "comp-1"
    r.session_token = "sess-1"
    r.metadata = {"datacenter": "westus"}
    for name, value in changes.items():
        setattr(r, name, value)
    return r


def plain(event: Any) -> Any:
    """The event with JsonDocuments replaced by their values (what a reader of the JSON sees)."""
    if isinstance(event, JsonDocument):
        return event.value
    if orjson is not None and isinstance(event, orjson.Fragment):
        return json.loads(orjson.dumps(event))
    if isinstance(event, dict):
        return {key: plain(value) for key, value in event.items()}
    if isinstance(event, list):
        return [plain(value) for value in event]
    return event


def settings(**options: Any) -> Settings:
    """Settings with these options (lower-case names); no proxy is trusted unless said."""
    return Settings(**{"application_id": "app-id", "trusted_proxies": (), **options})


def build(options: Optional[Settings] = None, **changes: Any) -> Dict[str, Any]:
    return EventBuilder(options or settings(), fingerprint_key=KEY).build(record(**changes))


def test_the_whole_event() -> None:
    event = build(settings(api_version="1.2.3"))
    assert plain(event) == {
        "request": {
            "time": "2025-11-25T20:05:15.585",
            "uri": "https://api.example.com/items/5?x=1",
            "verb": "POST",
            "headers": {
                "Host": "api.example.com",
                "Content-Type": "application/json",
                "Authorization": "Bearer " + fingerprint(JWT),
                "X-Moesif-Transaction-Id": TXN,
            },
            "api_version": "1.2.3",
            "ip_address": "203.0.113.7",
            "body": {"name": "ann", "password": "<masked>"},  # masked by default
            "transfer_encoding": "json",
        },
        "response": {
            "time": "2025-11-25T20:05:15.586",
            "status": 201,
            "headers": {
                "Content-Type": "application/json",
                "Set-Cookie": f"sid={fingerprint('1')}, t={fingerprint('2')}",
                "X-Moesif-Transaction-Id": TXN,
            },
            "body": {"ok": True},
            "transfer_encoding": "json",
        },
        "session_token": "sess-1",
        "user_id": "user-42",
        "company_id": "comp-1",
        "metadata": {"datacenter": "westus"},
        "direction": "Incoming",
        "weight": 1,
        "blocked_by": None,
        "transaction_id": TXN,
    }
    assert json.loads(serialize_event(event)) == plain(event)


def test_user_id_from_the_record_wins_over_the_header() -> None:
    assert build(user_id="from-hook")["user_id"] == "from-hook"


def test_user_id_is_read_before_masking_with_configured_header_and_field() -> None:
    token = "x." + b64url(b'{"uid": 77}') + ".y"
    options = settings(
        authorization_header_name=("x-user-token",), authorization_user_id_field="uid"
    )
    event = build(options, request_headers=[("HTTP_X_USER_TOKEN", token)])
    assert event["user_id"] == "77"
    assert event["request"]["headers"]["X-User-Token"] == fingerprint(token)


def test_client_ip_behind_trusted_proxy() -> None:
    options = settings(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    headers = [("HTTP_X_FORWARDED_FOR", "6.6.6.6, 198.51.100.4")]
    assert (
        build(options, remote_addr="10.0.0.9", request_headers=headers)["request"]["ip_address"]
        == "198.51.100.4"
    )
    assert build(remote_addr="10.0.0.9", request_headers=headers)["request"]["ip_address"] == (
        "10.0.0.9"
    )
    assert build(remote_addr=None)["request"]["ip_address"] is None


def test_without_bodies_the_keys_are_absent() -> None:
    event = build(request_body=None, response_body=None)
    assert "body" not in event["request"] and "transfer_encoding" not in event["request"]
    assert "body" not in event["response"] and "transfer_encoding" not in event["response"]
    event = build(settings(log_body=False))
    assert "body" not in event["request"] and "body" not in event["response"]
    event = build(request_body=b"", request_body_size=0)
    assert "body" not in event["request"]


def test_body_limits_masks_and_encodings() -> None:
    options = settings(request_max_body_size=10, response_body_masks=("secret",))
    event = build(
        options,
        response_headers=[("content-type", "application/json"), ("content-encoding", "gzip")],
        response_body=gzip.compress(b'{"secret": "s", "n": [{"secret": 1}]}'),
        response_body_size=999,
    )
    assert event["request"]["body"] == {
        "moesif_body_truncated": True,
        "size": len(record().request_body or b""),
        "limit": 10,
        "content_type": "application/json",
    }
    assert event["response"]["body"] == {"secret": "<masked>", "n": [{"secret": "<masked>"}]}
    assert event["response"]["transfer_encoding"] == "json"


def test_binary_response_body_is_base64() -> None:
    event = build(response_headers=[("Content-Type", "image/png")], response_body=b"\x89PNG")
    assert event["response"]["body"] == base64.b64encode(b"\x89PNG").decode()
    assert event["response"]["transfer_encoding"] == "base64"


def test_transaction_id_header_added_once_and_omitted_when_disabled() -> None:
    headers = build()["request"]["headers"]
    assert [name for name in headers if name.lower() == "x-moesif-transaction-id"] == [
        "X-Moesif-Transaction-Id"
    ]
    assert headers["X-Moesif-Transaction-Id"] == TXN
    event = build(settings(disabled_transaction_id=True), transaction_id=None)
    assert "transaction_id" not in event
    assert event["request"]["headers"]["X-Moesif-Transaction-Id"] == "not-a-uuid"


def test_non_dict_metadata_is_dropped() -> None:
    assert build(metadata=["not", "an", "object"])["metadata"] is None
    assert build(metadata=None)["metadata"] is None


def test_outgoing_record() -> None:
    event = build(
        direction="Outgoing",
        request_headers=[("Accept", "*/*")],
        request_headers_cgi=False,
        remote_addr=None,
        weight=4,
        blocked_by="rule-1",
    )
    assert event["direction"] == "Outgoing"
    # The call went out without the header: the event says what was sent, and carries the id.
    assert event["request"]["headers"] == {"Accept": "*/*"}
    assert event["transaction_id"] == TXN
    assert event["request"]["ip_address"] is None
    assert event["weight"] == 4 and event["blocked_by"] == "rule-1"


def test_the_builder_reads_the_settings_as_the_schema_normalised_them() -> None:
    token = "x." + b64url(b'{"UserId": 7}') + ".y"
    options = Settings(
        application_id="app",
        authorization_header_name=("Authorization", "X-Token"),
        authorization_user_id_field="userId",
        request_header_masks=("X-A",),
        request_body_masks=("password",),
        request_max_body_size=40,
        response_max_body_size=5,
        mask_sensitive_headers=False,
    )
    event = build(
        options,
        request_headers=[("HTTP_X_TOKEN", token), ("HTTP_X_A", "a"), ("HTTP_COOKIE", "c=1")],
        request_body=b'{"password": "p", "n": 1}',
        request_body_size=25,
    )
    assert event["user_id"] == "7"
    assert event["request"]["headers"]["X-A"] == fingerprint("a")
    assert event["request"]["headers"]["X-Token"] == token  # sensitive masking is off
    assert event["request"]["headers"]["Cookie"] == "c=1"
    assert event["request"]["body"] == {"password": "<masked>", "n": 1}
    assert event["response"]["body"]["limit"] == 5


# ------------------------------------------------------------------------ MASK_EVENT_MODEL


@pytest.fixture
def moesifapi() -> Any:
    return pytest.importorskip("moesifapi.models")


def test_mask_event_model_identity_round_trip_is_exact(moesifapi: Any) -> None:
    expected = plain(build())
    masked = build(settings(mask_event_model=lambda event: event))
    assert masked == expected
    assert "tags" not in masked and "ip_address" not in masked["response"]


def test_mask_event_model_sees_an_event_model_and_its_changes_are_kept(moesifapi: Any) -> None:
    seen: List[Any] = []

    def hook(event: Any) -> Any:
        seen.append(event)
        event.request.body["password"] = None
        event.response.headers.pop("Set-Cookie")
        event.metadata["masked"] = True
        event.tags = "a,b"
        return event

    masked = build(settings(mask_event_model=hook))
    assert isinstance(seen[0], moesifapi.EventModel)
    assert isinstance(seen[0].request, moesifapi.EventRequestModel)
    assert masked["request"]["body"] == {"name": "ann", "password": None}
    assert "Set-Cookie" not in masked["response"]["headers"]
    assert masked["metadata"] == {"datacenter": "westus", "masked": True}
    assert masked["tags"] == "a,b"
    assert masked["transaction_id"] == TXN
    assert json.loads(serialize_event(masked)) == masked


def test_mask_event_model_round_trip_keeps_fields_the_model_lacks(moesifapi: Any) -> None:
    event = plain(build())
    event["trace_id"] = "t-1"
    event["request"]["extra"] = 5
    assert from_event_model(to_event_model(event), event) == event


def test_mask_event_model_failures_fail_closed(moesifapi: Any) -> None:
    def raises(event: Any) -> Any:
        raise RuntimeError("bug in the user's hook")

    def breaks(event: Any) -> Any:
        del event.request  # to_dictionary() can no longer work
        return event

    def drops_request(event: Any) -> Any:
        event.request = None
        return event

    for hook in (raises, lambda event: None, lambda event: {"a": 1}, breaks, drops_request):
        with pytest.raises(MaskEventError):
            build(settings(mask_event_model=hook))


def test_mask_event_model_without_disabled_transaction_id_invents_nothing(moesifapi: Any) -> None:
    options = settings(mask_event_model=lambda event: event, disabled_transaction_id=True)
    assert "transaction_id" not in build(options, transaction_id=None)


# -------------------------------------------------------------------------- serialising


def test_serialised_event_is_compact_utf8() -> None:
    data = serialize_event({"a": "caf\u00e9 \u2603", "b": [1, 2.5, None, True]})
    assert data == '{"a":"caf\u00e9 \u2603","b":[1,2.5,null,true]}'.encode()


def test_json_documents_are_written_as_their_text(json_backend: str) -> None:
    # With orjson every JSON body keeps its own bytes; with the standard library only large
    # ones (splicing costs more than re-encoding a small body).
    small = build()["response"]["body"]
    assert isinstance(small, KEPT_TEXT) == (json_backend == "orjson")
    big = json.dumps({"items": list(range(2000))}).encode()
    event = build(response_body=big, response_body_size=len(big))
    assert isinstance(event["response"]["body"], KEPT_TEXT)
    event["request"]["body"] = JsonDocument('{"spaced" :  [1,  2]}', {"spaced": [1, 2]})
    data = serialize_event(event)
    assert b'"body":{"spaced" :  [1,  2]}' in data
    assert json.loads(data) == plain(event)


def test_json_document_sections_alone() -> None:
    doc = JsonDocument("[1]", [1])
    assert json.loads(serialize_event({"request": {"body": doc}})) == {"request": {"body": [1]}}
    assert json.loads(serialize_event({"response": {"body": doc}, "x": 1})) == {
        "response": {"body": [1]},
        "x": 1,
    }


def strict_utf8_json(data: bytes) -> Any:
    """The event the collector reads from ``data``, which must be UTF-8 JSON whose strings hold
    no surrogate (a lone one is not Unicode text: collectors answer 500 to it)."""
    value = json.loads(data.decode("utf-8"))
    assert not re.search(rb"\\u[dD][89a-fA-F]", data), data
    return value


def test_lone_surrogates_from_a_json_body_become_replacement_characters(json_backend: str) -> None:
    event = build(response_body=b'{"s": "\\ud800", "\\udc00k": ["\\ud83d\\ude00"]}')
    sent = strict_utf8_json(serialize_event(event))
    assert sent["response"]["body"] == {"s": "\ufffd", "\ufffdk": ["\U0001f600"]}
    event["metadata"] = {"s": "\udc00", "\ud800": ("x\ud800",)}
    sent = strict_utf8_json(serialize_event(event))
    assert sent["metadata"] == {"s": "\ufffd", "\ufffd": ["x\ufffd"]}
    assert sent["response"]["body"] == {"s": "\ufffd", "\ufffdk": ["\U0001f600"]}


@pytest.mark.parametrize(
    "where",
    ["request_body", "response_body", "metadata", "user_id", "session_token", "headers", "query"],
)
def test_every_event_on_the_wire_is_valid_utf8_json(json_backend: str, where: str) -> None:
    # Surrogates and invalid bytes wherever a client or a hook can put them.
    bad_text = "a\ud800b\udfffc"
    changes: Dict[str, Any] = {
        "request_body": {"request_body": b'{"k": "\\udbff", "l": "\xc3\xa9"}'},
        "response_body": {"response_body": b'["\\udc00", "\\ud800\\u0041"]'},
        "metadata": {"metadata": {bad_text: [bad_text, {"n": bad_text}]}},
        "user_id": {"user_id": bad_text, "company_id": bad_text},
        "session_token": {"session_token": bad_text},
        "headers": {"request_headers": [("HTTP_X_A", bad_text), ("HTTP_X_B", "\xff\xfe")]},
        "query": {"query": "q=" + bad_text + "&r=\xff"},
    }[where]
    data = serialize_event(build(**changes))
    sent = strict_utf8_json(data)
    assert "\ufffd" in data.decode("utf-8") or where in ("headers", "query")
    assert sent["request"]["verb"]


def test_common_python_types_in_metadata() -> None:
    ident = uuid.UUID(TXN)
    metadata = {
        "when": datetime.datetime(2026, 11, 25, 20, 5, 15, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2026, 11, 25),
        "price": decimal.Decimal("19.99"),
        "big": decimal.Decimal("12345678901234567890.123"),
        "id": ident,
        "raw": b"\x00\x01",
        "tags": {"only"},
    }
    assert json.loads(serialize_event({"metadata": metadata}))["metadata"] == {
        "when": "2026-11-25T20:05:15+00:00",
        "day": "2026-11-25",
        "price": 19.99,
        "big": "12345678901234567890.123",
        "id": TXN,
        "raw": "AAE=",
        "tags": ["only"],
    }


@pytest.mark.parametrize(
    "bad",
    [object(), complex(1, 2), {(1, 2): 3}],
)
def test_unserialisable_metadata_raises(bad: Any, json_backend: str) -> None:
    with pytest.raises(UnserializableEventError):
        serialize_event({"metadata": {"value": bad}})


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf, decimal.Decimal("NaN")])
def test_non_finite_numbers_become_null(number: Any, json_backend: str) -> None:
    # JSON has no NaN and the collector refuses the token: null keeps the rest of the event.
    data = serialize_event({"metadata": {"value": number, "kept": [1.5, number]}})
    assert json.loads(data) == {"metadata": {"value": None, "kept": [1.5, None]}}


def test_big_integers_survive_and_lone_surrogates_are_replaced(json_backend: str) -> None:
    event = {"metadata": {"id": 2**70, "text": "\ud800x"}}
    sent = strict_utf8_json(serialize_event(event))
    assert sent == {"metadata": {"id": 2**70, "text": "\ufffdx"}}


def test_cyclic_metadata_raises() -> None:
    cycle: Dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises(UnserializableEventError):
        serialize_event({"metadata": cycle})
    event = build(metadata=cycle)  # with a JsonDocument body: the spliced path
    with pytest.raises(UnserializableEventError):
        serialize_event(event)


def test_an_empty_content_length_from_the_server_is_not_a_header() -> None:
    headers = join_headers([("CONTENT_LENGTH", ""), ("HTTP_ACCEPT", "*/*")], True)
    assert headers == {"Accept": "*/*"}


def test_asgi_byte_header_names_get_the_canonical_case() -> None:
    headers = join_headers([(b"content-type", b"application/json"), (b"x-api-key", b"k")], False)
    assert headers == {"Content-Type": "application/json", "X-Api-Key": "k"}


# ------------------------------------------------ the join against the reference


@pytest.mark.parametrize(
    "pairs, from_environ",
    [
        ([("HTTP_HOST", "h"), ("HTTP_ACCEPT", "*/*"), ("CONTENT_TYPE", "text/plain")], True),
        ([("CONTENT_LENGTH", ""), ("CONTENT_TYPE", ""), ("HTTP_ACCEPT", "a")], True),
        ((("HTTP_HOST", "h"), ("HTTP_X_REQUEST_ID", "1")), True),
        (iter([("HTTP_ACCEPT", "a"), ("HTTP_ACCEPT", "b")]), True),
        # Two keys naming one header: joined.
        ([("HTTP_AUTHORIZATION", "a"), ("HTTP_CGI_AUTHORIZATION", "b")], True),
        ([("CONTENT_TYPE", "text/plain"), ("HTTP_CONTENT_TYPE", "application/json")], True),
        ([("CONTENT_LENGTH", ""), ("HTTP_CONTENT_LENGTH", "")], True),
        # Values to re-decode or turn into text.
        ([("HTTP_X_NAME", "caf\u00c3\u00a9")], True),
        ([("HTTP_X_NAME", "\u2603")], True),
        ([("HTTP_X_BYTES", b"v")], True),
        ([("HTTP_X_INT", 5)], True),
        # A name that is not ASCII once re-decoded.
        ([("HTTP_X_\u00c3\u00a9", "v")], True),
        ([("X-Fast-One", "1"), ("x-fast-two", "2")], False),
        ((("X-Fast-One", "1"),), False),
        (iter([("X-One", "1"), ("x-one", "2")]), False),
        # The same name in two spellings, or twice.
        ([("X-Case", "1"), ("x-case", "2"), ("X-CASE", "3")], False),
        ([("X-Dup", "1"), ("X-Dup", "2")], False),
        ([(b"x-bytes", b"1"), (b"content-type", b"text/plain")], False),
        ([("X-Value", "caf\u00c3\u00a9"), ("X-Int", 7), ("X-F\u00e4st", "1")], False),
    ],
)
def test_join_agrees_with_the_reference(pairs: Any, from_environ: bool) -> None:
    listed = list(pairs)
    expected = reference.join_headers(listed, from_environ)
    for _ in range(2):  # the second time with every name remembered
        joined = join_headers(iter(listed) if isinstance(pairs, Iterator) else pairs, from_environ)
        assert joined == expected and list(joined) == list(expected)
        for name in {key.lower() for key in expected} | {"content-type", "x-nope"}:
            assert joined.find(name) == reference.find_header(expected, name)


def test_masking_still_happens_after_events_with_nothing_to_mask() -> None:
    m = masker()
    clear = {"Accept": "*/*", "X-Request-Id": "1"}
    assert m.mask(clear) is clear
    assert m.mask(clear) is clear  # now told by the set of clear names alone
    masked = m.mask({**clear, "X-Api-Key": "k"})
    assert masked == {**clear, "X-Api-Key": fingerprint("k")}
    assert masker(sensitive=False).mask({"X-Api-Key": "k"}) == {"X-Api-Key": "k"}
    assert masker(sensitive=False, extra=("accept",)).mask(clear)["Accept"] == fingerprint("*/*")


def test_uri_expressions_agree_with_the_reference() -> None:
    rng = random.Random(5)
    alphabet = [chr(code) for code in range(0x180)] + ["%41", "%zz", "%4", "\u2603"]
    pairs = [
        (events_module._PATH_UNSAFE_TEXT, reference.PATH_UNSAFE_TEXT),
        (events_module._PATH_UNSAFE_BYTES, reference.PATH_UNSAFE_BYTES),
        (events_module._QUERY_UNSAFE_TEXT, reference.QUERY_UNSAFE_TEXT),
        (events_module._QUERY_UNSAFE_BYTES, reference.QUERY_UNSAFE_BYTES),
    ]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        for ours, theirs in pairs:
            subject: Any = text if isinstance(ours.pattern, str) else text.encode()
            assert ours.findall(subject) == theirs.findall(subject), repr(subject)


@pytest.mark.parametrize(
    "parts, uri",
    [
        (("http", "h", "/a?b", "x=1"), "http://h/a%3Fb?x=1"),
        (("http", "h", "", "q=1"), "http://h/?q=1"),
        (("http", "h", "/p", "a=%41&b=%zz"), "http://h/p?a=%41&b=%25zz"),
        (("http", "h", "/p", "q=?&r=/"), "http://h/p?q=?&r=/"),
        (("http", "h", "/a b", "c d"), "http://h/a%20b?c%20d"),
        (("http", "h:80", "/%", "%"), "http://h/%25?%25"),
        (("http", "h", "/{x}", "y=|"), "http://h/%7Bx%7D?y=%7C"),
        (("http", "h", "/\u2603", "x=\u2603"), "http://h/%E2%98%83?x=%E2%98%83"),
        (("http", "b\u00c3\u00bccher.de", "/", ""), "http://b\u00fccher.de/"),
    ],
)
def test_uri_quoting(parts: Tuple[str, str, str, str], uri: str) -> None:
    assert build_uri(*parts) == uri
    assert build_uri(*parts) == uri  # the host's origin remembered


def test_uri_origin_is_remembered_per_scheme() -> None:
    for _ in range(2):
        assert build_uri("https", "origin.test:443", "/", "") == "https://origin.test/"
        assert build_uri("http", "origin.test:443", "/", "") == "http://origin.test:443/"
        assert build_uri("http", "origin.test:80", "/", "") == "http://origin.test/"
        assert build_uri("https", "origin.test:80", "/", "") == "https://origin.test:80/"


def test_format_times_agrees_with_format_time_near_every_boundary() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        second = rng.choice([0, 1_764_101_115, rng.randrange(2**31), 2**32 - 1, 2**32, 2**33])
        start = second + rng.randrange(1000) / 1000
        first = start + rng.choice([0.0, 5e-7, 1e-6, 2e-6, 2.5e-6, 3e-6, 996e-6, 997.5e-6, 999e-6])
        first = rng.choice([first, math.nextafter(first, 0.0), math.nextafter(first, math.inf)])
        later = first + rng.choice([0.0, 1e-6, 7e-5, 1e-3, 0.4])
        expected = (
            datetime.datetime.fromtimestamp(first, datetime.timezone.utc),
            datetime.datetime.fromtimestamp(later, datetime.timezone.utc),
        )
        texts = tuple(t.replace(tzinfo=None).isoformat(timespec="milliseconds") for t in expected)
        assert format_times(first, later) == texts
        assert format_times(first, later) == texts  # now from the millisecond remembered


def _random_record(rng: random.Random) -> ExchangeRecord:
    def l1(text: str) -> str:
        return text.encode().decode("latin-1")  # the WSGI view of UTF-8 text

    environ_values = {
        "HTTP_HOST": ["api.example.com", "api.example.com:80"],
        "HTTP_AUTHORIZATION": ["Bearer " + JWT, "Basic YWxpY2U6cHc=", ""],
        "HTTP_CGI_AUTHORIZATION": ["Bearer " + JWT],
        "CONTENT_TYPE": ["application/json", "text/plain", ""],
        "CONTENT_LENGTH": ["", "12"],
        "HTTP_CONTENT_LENGTH": [""],
        "HTTP_COOKIE": ["a=1; b=2"],
        "HTTP_X_FORWARDED_FOR": ["198.51.100.9, 10.0.0.3", "unknown", "10.1.1.1"],
        "HTTP_FORWARDED": ["for=198.51.100.7", "proto=https"],
        "HTTP_X_MOESIF_TRANSACTION_ID": ["client-id", JWT],
        "HTTP_X_NAME": ["plain", l1("caf\u00e9"), "\u2603"],
        "HTTP_X_REQUEST_ID": ["3f1c"],
    }
    plain_values = {
        "Content-Type": ["application/json", "text/html"],
        "content-type": ["application/json"],
        "Content-Encoding": ["gzip", "identity"],
        "Set-Cookie": ["sid=1; Path=/"],
        "Authorization": ["Bearer " + JWT],
        "X-Forwarded-For": ["198.51.100.9"],
        "X-Moesif-Transaction-Id": [TXN],
        "X-Name": [l1("caf\u00e9"), "v"],
        b"x-bytes": [b"v"],
    }
    r = record()
    r.request_headers_cgi = rng.random() < 0.6
    source = environ_values if r.request_headers_cgi else plain_values
    names = rng.sample(list(source), rng.randint(0, 7))
    r.request_headers = [(name, rng.choice(source[name])) for name in names]  # type: ignore[misc]
    names = [rng.choice(list(plain_values)) for _ in range(rng.randint(0, 4))]
    r.response_headers = [(name, rng.choice(plain_values[name])) for name in names]  # type: ignore[misc]
    r.remote_addr = rng.choice([None, "203.0.113.7", "10.0.0.2", "10.0.0.2:5000", "junk"])
    r.path = rng.choice(["/items/5", "", "/a b", "/a?b"])
    r.query = rng.choice(["", "x=1", "q=%41%zz", "q=?"])
    r.transaction_id = rng.choice([None, TXN, JWT])
    r.user_id = rng.choice([None, None, "u-1"])
    bodies = [None, b"", b'{"a": 1}', b'{"password": "p"}', b"\xef\xbb\xbf[1]", b"text", b"[1"]
    bodies.append(gzip.compress(b'{"z": 1}'))
    r.request_body = rng.choice(bodies)
    r.request_body_size = len(r.request_body or b"") + rng.choice([0, 0, 10**6])
    r.response_body = rng.choice(bodies)
    r.response_body_size = len(r.response_body or b"")
    r.request_time += rng.random()
    r.response_time = r.request_time + rng.choice([0.0, 7e-5, 0.3])
    return r


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "trusted_proxies": (ipaddress.ip_network("10.0.0.0/8"),),
            "request_body_masks": ("password",),
        },
        {"authorization_header_name": ("x-moesif-transaction-id", "authorization")},
        {"mask_sensitive_headers": False, "request_header_masks": ("x-name",)},
        {"request_max_body_size": 10, "disabled_transaction_id": True},
    ],
)
def test_memos_never_change_an_event(
    options: Dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(11)
    records = [_random_record(rng) for _ in range(400)]
    builder = EventBuilder(settings(**options), fingerprint_key=KEY)
    remembered = [serialize_event(builder.build(r)) for r in records]
    remembered += [serialize_event(builder.build(r)) for r in records]  # every memo warm
    # Now every memo computes each answer afresh and keeps none.
    monkeypatch.setattr(Memo, "__missing__", lambda memo, key: memo._make(key))
    for memo in [item for item in gc.get_objects() if isinstance(item, Memo)]:
        memo.clear()
    monkeypatch.setattr(
        events_module, "format_times", lambda a, b: (format_time(a), format_time(b))
    )
    fresh = EventBuilder(settings(**options), fingerprint_key=KEY)
    assert remembered == [serialize_event(fresh.build(r)) for r in records] * 2


def test_a_user_id_read_from_the_transaction_header_is_the_events_id() -> None:
    options = settings(authorization_header_name=("x-moesif-transaction-id",))
    for cgi, pairs in (
        (True, [("HTTP_X_MOESIF_TRANSACTION_ID", "client-id")]),
        (True, []),
        (False, [("x-moesif-transaction-id", "client-id")]),
        (False, [("Accept", "*/*")]),
    ):
        event = build(options, request_headers=pairs, request_headers_cgi=cgi, transaction_id=JWT)
        assert event["user_id"] == "user-42"
        assert event["request"]["headers"]["X-Moesif-Transaction-Id"] == JWT


def test_joins_stay_right_once_the_name_memory_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    for memo in (headers_module._plain_names, headers_module._environ_names):
        monkeypatch.setattr(memo, "limit", len(memo))
    pairs = [("X-Never-Seen-Before", "1"), ("x-never-seen-before", "2")]
    assert join_headers(pairs, False) == {"X-Never-Seen-Before": "1, 2"}
    environ_pairs = [("HTTP_X_NEVER_SEEN_EITHER", "1")]
    assert join_headers(environ_pairs, True) == {"X-Never-Seen-Either": "1"}
    assert not {name for name, _ in pairs} & set(headers_module._plain_names)
    assert "HTTP_X_NEVER_SEEN_EITHER" not in headers_module._environ_names
