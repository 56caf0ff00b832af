from __future__ import annotations

import base64
import functools
import ipaddress
import json
import random
import string
from typing import Any, Dict, Optional, Tuple

import pytest
import reference

from moesif_integrations.core.config.schema import Settings
from moesif_integrations.core.record import ExchangeRecord
from moesif_integrations.core.wire.event import EventBuilder
from moesif_integrations.core.wire.headers import join_headers
from moesif_integrations.core.wire.identity import (
    ClientIpResolver,
    parse_ip,
    user_id_from_value,
)

AUTH = ("authorization",)


def b64url(data: bytes, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode("ascii")
    return text if padded else text.rstrip("=")


def jwt(claims: Dict[str, Any], padded: bool = False) -> str:
    header = b64url(b'{"alg":"HS256","typ":"JWT"}', padded)
    return f"{header}.{b64url(json.dumps(claims).encode(), padded)}.c2lnbmF0dXJl"


@functools.cache
def builder(names: Tuple[str, ...], field: str) -> EventBuilder:
    options = Settings(
        application_id="app", authorization_header_name=names, authorization_user_id_field=field
    )
    return EventBuilder(options, fingerprint_key=b"k")


def user_from_headers(
    headers: Dict[str, str], names: Tuple[str, ...] = AUTH, field: str = "sub"
) -> Optional[str]:
    """The user id of an event whose request carried ``headers``, as the builder reads it."""
    record = ExchangeRecord(request_headers=list(headers.items()))
    user_id: Optional[str] = builder(names, field).build(record)["user_id"]
    return user_id


def user(value: str, names: Tuple[str, ...] = AUTH, field: str = "sub") -> Any:
    return user_from_headers({"Authorization": value}, names, field)


# ------------------------------------------------------------------------------ user id


def test_bearer_jwt_sub() -> None:
    assert user("Bearer " + jwt({"sub": "user-42", "name": "Ann"})) == "user-42"


def test_jwt_payload_with_urlsafe_characters() -> None:
    # The incumbent decodes with the standard alphabet: these payloads gave no user at all.
    claims = {"sub": "u>>>?", "pad": "???>>>"}
    payload = b64url(json.dumps(claims).encode())
    assert "-" in payload or "_" in payload
    assert user("Bearer " + jwt(claims)) == "u>>>?"


def test_jwt_padding_tolerated_either_way() -> None:
    for claims in ({"sub": "a"}, {"sub": "ab"}, {"sub": "abc"}):
        assert user("Bearer " + jwt(claims, padded=True)) == claims["sub"]
        assert user("Bearer " + jwt(claims, padded=False)) == claims["sub"]


def test_claim_is_matched_case_insensitively() -> None:
    token = jwt({"UserId": 7})
    assert user("Bearer " + token, field="userId") == "7"
    assert user("Bearer " + token, field="USERID") == "7"


def test_claim_values_that_are_not_ids() -> None:
    assert user("Bearer " + jwt({"sub": None})) is None
    assert user("Bearer " + jwt({"sub": {"id": 1}})) is None
    assert user("Bearer " + jwt({"sub": ["a"]})) is None
    assert user("Bearer " + jwt({"sub": True})) is None
    assert user("Bearer " + jwt({"sub": "  "})) is None
    assert user("Bearer " + jwt({"other": "x"})) is None


def test_basic_gives_the_username() -> None:
    credential = base64.b64encode(b"ann@example.com:s3cr:et").decode()
    assert user("Basic " + credential) == "ann@example.com"
    assert user("basic " + credential) == "ann@example.com"


def test_basic_without_colon_or_username_is_none() -> None:
    assert user("Basic " + base64.b64encode(b"justtext").decode()) is None
    assert user("Basic " + base64.b64encode(b":password").decode()) is None


def test_basic_non_utf8_username() -> None:
    assert user("Basic " + base64.b64encode(b"caf\xe9:pw").decode()) == "caf\u00e9"


def test_bare_jwt_and_bare_base64_json() -> None:
    assert user(jwt({"sub": "bare"})) == "bare"
    assert user(b64url(b'{"sub": "plain-json"}')) == "plain-json"
    assert user("Token " + jwt({"sub": "custom-scheme"})) == "custom-scheme"


def test_comma_joined_value_uses_the_first_part() -> None:
    value = "Bearer " + jwt({"sub": "first"}) + ", Bearer " + jwt({"sub": "second"})
    assert user(value) == "first"


def test_first_configured_header_present_wins_case_insensitively() -> None:
    headers = {"x-user-token": jwt({"sub": "from-custom"}), "AUTHORIZATION": jwt({"sub": "std"})}
    names = ("x-missing", "x-user-token", "authorization")
    assert user_from_headers(headers, names, "sub") == "from-custom"
    assert user_from_headers(headers, ("Authorization",), "SUB") == "std"
    assert user_from_headers(headers, ("x-missing",), "sub") is None
    assert user_from_headers({}, AUTH, "sub") is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Bearer",
        "Bearer ",
        "Bearer a.b.c",
        "Bearer ..",
        "Bearer a.!!!!.c",
        "Bearer " + b64url(b"[1, 2]") + ".x.y",
        "Bearer " + b64url(b'"sub"') + ".x.y",
        "Basic",
        "Basic !!!",
        "Basic " + "A" * 5,
        "Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnag",
        "\u00e9\u00e9\u00e9",
        "Bearer \u00e9." + b64url(b'{"sub": 1}'),
        "Bearer x." + "A" * 20000 + ".y",
    ],
)
def test_malformed_values_give_none(value: str) -> None:
    result = user(value)
    assert result is None or isinstance(result, str)
    if value.startswith("Bearer \u00e9."):
        assert result == "1"  # the payload part is fine; only the header part is junk
    else:
        assert result is None


def test_fuzz_never_raises() -> None:
    rng = random.Random(1234)
    alphabet = string.printable + "\u00e9\u2028\ud800=.-_ "
    seeds = ["Bearer ", "Basic ", "", "Bearer " + jwt({"sub": "x"})[:12]]
    for _ in range(3000):
        text = rng.choice(seeds) + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        result = user(text)
        assert result is None or isinstance(result, str)


# ---------------------------------------------------------------------------- client IP

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def client_ip(
    peer: Optional[str], headers: Dict[str, str], trusted: Any, header: str = "X-Forwarded-For"
) -> Optional[str]:
    """The production answer (a fresh resolver, then the same one again from what it
    remembered), checked against the reference."""
    resolver = ClientIpResolver(trusted, header)
    joined = join_headers(headers.items(), False)
    answer = resolver.resolve(peer, joined)
    assert resolver.resolve(peer, joined) == answer
    assert answer == reference.client_ip(peer, headers, trusted, header)
    return answer


def test_untrusted_peer_is_the_client_and_headers_are_ignored() -> None:
    spoofed = {"X-Forwarded-For": "1.1.1.1", "Forwarded": "for=2.2.2.2"}
    assert client_ip("203.0.113.7", spoofed, ()) == "203.0.113.7"
    assert client_ip("203.0.113.7", spoofed, TRUSTED) == "203.0.113.7"


def test_missing_or_invalid_peer_gives_none() -> None:
    headers = {"X-Forwarded-For": "1.1.1.1"}
    assert client_ip(None, headers, TRUSTED) is None
    assert client_ip("", headers, TRUSTED) is None
    assert client_ip("/run/app.sock", headers, TRUSTED) is None
    assert client_ip("unix:", headers, ()) is None


def test_trusted_peer_without_headers_is_the_client() -> None:
    assert client_ip("10.0.0.5", {}, TRUSTED) == "10.0.0.5"


def test_x_forwarded_for_walked_right_to_left() -> None:
    # The left-most entry is what the client claimed; only entries our proxies added count.
    headers = {"X-Forwarded-For": "6.6.6.6, 198.51.100.9, 10.1.1.1"}
    assert client_ip("10.0.0.2", headers, TRUSTED) == "198.51.100.9"


def test_x_forwarded_for_all_trusted_gives_the_left_most() -> None:
    headers = {"X-Forwarded-For": "10.9.9.9, 10.1.1.1"}
    assert client_ip("10.0.0.2", headers, TRUSTED) == "10.9.9.9"


def test_x_forwarded_for_ports_and_brackets_are_stripped() -> None:
    assert client_ip("10.0.0.2", {"X-Forwarded-For": "198.51.100.9:5123"}, TRUSTED) == (
        "198.51.100.9"
    )
    assert client_ip("10.0.0.2", {"x-forwarded-for": "[2001:db8::1]:443"}, TRUSTED) == (
        "2001:db8::1"
    )


def test_forwarded_header_with_ipv6_brackets_and_quotes() -> None:
    headers = {
        "Forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https, For=10.2.2.2;by=10.0.0.1',
        "X-Forwarded-For": "9.9.9.9",
    }
    assert client_ip("10.0.0.2", headers, TRUSTED, "Forwarded") == "2001:db8:cafe::17"
    assert client_ip("10.0.0.2", headers, TRUSTED) == "9.9.9.9"


def test_only_the_one_trusted_proxy_header_is_read() -> None:
    """A proxy that appends to X-Forwarded-For and passes the client's Forwarded through: the
    client cannot choose its address by sending Forwarded; and the other way round."""
    spoofed = {"Forwarded": "for=6.6.6.6", "X-Forwarded-For": "198.51.100.9"}
    assert client_ip("10.0.0.2", spoofed, TRUSTED) == "198.51.100.9"
    appended = {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=198.51.100.9"}
    assert client_ip("10.0.0.2", appended, TRUSTED, "Forwarded") == "198.51.100.9"
    # The one header absent: the proxy itself, never the other header.
    assert client_ip("10.0.0.2", {"Forwarded": "for=6.6.6.6"}, TRUSTED) == "10.0.0.2"
    headers = {"Forwarded": "proto=https;host=example.com", "X-Forwarded-For": "192.0.2.60"}
    assert client_ip("10.0.0.2", headers, TRUSTED, "Forwarded") == "10.0.0.2"
    # Any header a proxy writes a client address to.
    assert client_ip("10.0.0.2", {"X-Real-IP": "192.0.2.7"}, TRUSTED, "X-Real-IP") == "192.0.2.7"


@pytest.mark.parametrize("hidden", ["unknown", "_hidden", '"_SEVKISEK"', "garbage"])
def test_a_hop_that_is_not_an_address_ends_the_walk(hidden: str) -> None:
    headers = {"Forwarded": f"for=6.6.6.6, for={hidden}, for=10.3.3.3"}
    # What lies beyond the hidden hop was written by someone we do not trust.
    assert client_ip("10.0.0.2", headers, TRUSTED, "Forwarded") == "10.3.3.3"
    headers = {"X-Forwarded-For": f"6.6.6.6, {hidden}"}
    assert client_ip("10.0.0.2", headers, TRUSTED) == "10.0.0.2"


def test_ipv4_mapped_peer_matches_ipv4_networks() -> None:
    headers = {"X-Forwarded-For": "198.51.100.1"}
    assert client_ip("::ffff:10.0.0.2", headers, TRUSTED) == "198.51.100.1"
    assert client_ip("::ffff:203.0.113.7", headers, TRUSTED) == "203.0.113.7"


def test_ipv6_peer_in_trusted_network() -> None:
    headers = {"X-Forwarded-For": "2001:db8::99, fd00::1"}
    assert client_ip("fd00::2", headers, TRUSTED) == "2001:db8::99"


def test_parse_ip_forms() -> None:
    assert str(parse_ip("1.2.3.4")) == "1.2.3.4"
    assert str(parse_ip(" 1.2.3.4:80 ")) == "1.2.3.4"
    assert str(parse_ip('"[::1]:80"')) == "::1"
    assert str(parse_ip("::1")) == "::1"
    assert parse_ip("[::1") is None
    assert parse_ip("unknown") is None
    assert parse_ip("999.1.1.1") is None


def test_client_ip_fuzz_never_raises() -> None:
    rng = random.Random(99)
    alphabet = '0123456789abcdef.:[]",; =_forFOR\u00e9'
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for header in ("Forwarded", "X-Forwarded-For"):
            result = client_ip("10.0.0.1", {header: text}, TRUSTED, header)
            assert result is None or ipaddress.ip_address(result)


@pytest.mark.parametrize(
    "peer, headers",
    [
        ("203.0.113.7", {"X-Forwarded-For": "1.1.1.1"}),
        ("10.0.0.2", {}),
        ("10.0.0.2", {"X-Forwarded-For": "6.6.6.6, 198.51.100.9, 10.1.1.1"}),
        ("10.0.0.2", {"x-forwarded-for": "10.9.9.9, 10.1.1.1"}),
        ("10.0.0.2", {"Forwarded": "for=6.6.6.6, for=unknown, for=10.3.3.3"}),
        ("10.0.0.2", {"Forwarded": "proto=https", "X-Forwarded-For": "192.0.2.60"}),
        ("10.0.0.2:5000", {"X-Forwarded-For": "[2001:db8::1]:443"}),
        ("junk", {"X-Forwarded-For": "1.1.1.1"}),
        ("", {"X-Forwarded-For": "1.1.1.1"}),
        (None, {}),
    ],
)
def test_one_resolver_remembers_verdicts_across_requests(
    peer: Any, headers: Dict[str, str]
) -> None:
    resolver = ClientIpResolver(TRUSTED)
    joined = join_headers(headers.items(), False)
    expected = reference.client_ip(peer, headers, TRUSTED)
    for _ in range(2):  # the second time from the remembered verdicts
        assert resolver.resolve(peer, joined) == expected
        no_headers = join_headers((), False)
        assert resolver.resolve(peer, no_headers) == reference.client_ip(peer, {}, TRUSTED)


def test_user_id_from_a_found_value() -> None:
    assert user_id_from_value("Bearer " + jwt({"sub": "u-1"}), "sub") == "u-1"
    assert user_id_from_value("Basic " + base64.b64encode(b"alice:pw").decode(), "sub") == "alice"
    assert user_id_from_value("", "sub") is None
    assert user_id_from_value("garbage", "sub") is None
