"""Who called: a user id from the Authorization header, the client address behind proxies.

Both read request data an attacker controls, so both are total functions: malformed input
gives None, never an exception.
"""

from __future__ import annotations

import binascii
import ipaddress
import json
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple, Union, cast

from ..config.values import IPNetwork
from ..logs import LogOnce
from .headers import IndexedHeaders
from .memo import Memo

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# A credential longer than this is not decoded (a JWT is rarely over a few KB).
_MAX_TOKEN = 16384
_USER_ID_CACHE = 1024
_user_ids: Dict[Tuple[int, str], object] = {}
_NOT_CACHED = object()


# ------------------------------------------------------------------------------ user id


def _b64decode_lenient(text: str) -> Optional[bytes]:
    """base64 or base64url, padding optional; None when it cannot be decoded.

    Characters outside the alphabet are skipped rather than refused (binascii's non-strict
    mode, several times faster than ``b64decode(validate=True)``): whatever they turn into must
    still parse as JSON or contain a colon before anything is believed.
    """
    text = text.strip().rstrip("=").replace("-", "+").replace("_", "/")
    if not text or len(text) % 4 == 1:
        return None
    try:
        return binascii.a2b_base64(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        return None


def _claim_from_payload(encoded: str, field: str) -> Optional[str]:
    """The claim ``field`` (matched case-insensitively) of a base64 JSON object."""
    raw = _b64decode_lenient(encoded)
    if raw is None:
        return None
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict):
        return None
    value = payload.get(field)
    if value is None:
        for key, candidate in payload.items():
            if isinstance(key, str) and key.lower() == field:
                value = candidate
                break
    return _as_user_id(value)


def _as_user_id(value: Any) -> Optional[str]:
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _claim_from_token(token: str, field: str) -> Optional[str]:
    """A JWT's claim (the second dot-separated part), or a bare base64 JSON object's."""
    parts = token.split(".")
    if len(parts) >= 2:
        return _claim_from_payload(parts[1], field) if parts[1] else None
    return _claim_from_payload(token, field)


def _basic_username(credential: str) -> Optional[str]:
    raw = _b64decode_lenient(credential)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    username, colon, _ = text.partition(":")
    if not colon:
        return None
    return username.strip() or None


def user_id_from_value(value: str, field: str) -> Optional[str]:
    """The user id an authorization header's value carries; ``field`` is lower-case.

    Of a comma-joined value only the first part counts. ``Basic <b64>`` gives the username;
    ``Bearer <jwt>``, another scheme followed by a JWT, a bare JWT or a bare base64 JSON object
    give claim ``field`` (key matched case-insensitively) of the payload, decoded as base64url or
    base64 with or without padding. Anything else, or anything malformed, gives None.
    """
    if not value:
        return None
    try:
        return _user_id_of_value(value, field)
    except Exception:  # untrusted input: a parser surprise must not lose the event
        return None


def _user_id_of_value(value: str, field: str) -> Optional[str]:
    # Clients send the same credential again and again: remembered, a bearer token costs 31k
    # instructions fewer per event (valgrind). The cache is keyed by the value's hash (and the
    # claim name), so it keeps no credentials; str hashes are 64-bit and randomised per
    # process, so a collision is not a practical concern.
    key = (hash(value), field)
    cached = _user_ids.get(key, _NOT_CACHED)  # one lookup: another thread may clear the cache
    if cached is not _NOT_CACHED:
        return cast(Optional[str], cached)
    user_id = _decode_user_id(value, field)
    if len(_user_ids) >= _USER_ID_CACHE:
        _user_ids.clear()
    _user_ids[key] = user_id
    return user_id


def _decode_user_id(value: str, field: str) -> Optional[str]:
    value = value.split(",", 1)[0].strip()
    if not value or len(value) > _MAX_TOKEN:
        return None
    scheme, space, credential = value.partition(" ")
    if space:
        credential = credential.strip()
        if scheme.lower() == "basic":
            return _basic_username(credential)
        return _claim_from_token(credential, field)
    return _claim_from_token(value, field)


# ---------------------------------------------------------------------------- client IP


def parse_ip(text: str) -> Optional[IPAddress]:
    """An address from ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1`` or ``"[::1]"``.

    IPv4-mapped IPv6 addresses are returned as IPv4, so ``::ffff:10.0.0.1`` is in 10.0.0.0/8.
    """
    candidate = text.strip().strip('"').strip()
    if candidate.startswith("["):
        end = candidate.find("]")
        if end < 0:
            return None
        candidate = candidate[1:end]
    elif candidate.count(":") == 1:
        candidate = candidate.partition(":")[0]
    if not candidate or len(candidate) > 64:
        return None
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_for(value: str) -> List[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` header, in order."""
    found = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, eq, item = pair.partition("=")
            if eq and key.strip().lower() == "for":
                found.append(item.strip())
    return found


_SPELLING = {"x-forwarded-for": "X-Forwarded-For", "forwarded": "Forwarded"}
_problems = LogOnce()


def _comma_separated(value: str) -> List[str]:
    """The hops of an ``X-Forwarded-For``-like header, in order."""
    return value.split(",")


# Verdicts remembered per resolver: past this many addresses, they are computed each time.
_VERDICT_LIMIT = 4096
Verdict = Tuple[Optional[str], bool]


class ClientIpResolver:
    """The client's address for one TRUSTED_PROXIES and TRUSTED_PROXY_HEADER setting, believing
    that one header, and only from trusted proxies.

    The peer is the server's ``REMOTE_ADDR``; None when the server gave none or it is not an
    address (a forwarding header is never believed without a trusted peer, so None is the safe
    answer). A peer outside the trusted networks is the client. Behind a trusted peer the hops
    of the one header the proxies write are read (``Forwarded``: its ``for=`` values; any other
    header: its comma-separated values); no other header is ever read, so a client cannot
    inject hops through a header the proxy passes through untouched. The hops are
    walked from right to left, skipping trusted addresses: the first untrusted one is the
    client; if all are trusted, the left-most. A hop that is not an address (``unknown``, an
    obfuscated ``_hidden`` id, garbage) ends the walk: a proxy we trust hid what lies beyond it,
    and anything further left was written by someone we do not trust; the answer is then the
    last address walked (or the peer). No header: the peer. Ports and brackets are stripped.

    Each address's verdict (its text, whether it is a trusted proxy) is remembered by the text
    it came as, with bounded memory: the same few peers and forwarded clients come again and
    again, and parsing an address and testing it against networks is slow pure Python.
    """

    def __init__(self, trusted: Tuple[IPNetwork, ...], header: str = "x-forwarded-for") -> None:
        self._trusted = trusted
        self._header = header = header.lower()
        self._hops_of: Callable[[str], List[str]] = (
            forwarded_for if header == "forwarded" else _comma_separated
        )
        # Address text -> (the address as text or None, whether it is a trusted proxy); each
        # remembered verdict spares about 48k instructions per event (valgrind). Peers and
        # hops apart: hops are written by clients, who must not crowd the peers out.
        self._peers: Dict[str, Verdict] = Memo(self._verdict, _VERDICT_LIMIT)
        self._hops: Dict[str, Verdict] = Memo(self._verdict, _VERDICT_LIMIT)

    def resolve(self, remote_addr: Optional[str], headers: IndexedHeaders) -> Optional[str]:
        """The client's address; ``headers`` are the request's, joined."""
        if not remote_addr:
            return None
        peer, is_proxy = self._peers[remote_addr]
        if not is_proxy:
            return peer
        try:
            return self._walk(peer, headers)
        except Exception:  # untrusted input: a parser surprise must not lose the event
            return None

    def _verdict(self, text: str) -> Verdict:
        address = parse_ip(text)
        if address is None:
            return None, False
        return str(address), any(address in network for network in self._trusted)

    def _walk(self, peer: Optional[str], headers: IndexedHeaders) -> Optional[str]:
        value = headers.find(self._header)
        if not value:
            self._hint_at_other_header(headers)
            return peer
        hops = self._hops_of(value)
        answer = peer
        for hop in reversed(hops):
            text, is_trusted = self._hops[hop]
            if text is None:
                break
            answer = text
            if not is_trusted:
                break
        return answer

    def _hint_at_other_header(self, headers: IndexedHeaders) -> None:
        """A trusted proxy that wrote no TRUSTED_PROXY_HEADER but the other standard header
        (before TRUSTED_PROXY_HEADER, ``Forwarded`` was read first): says once which setting
        would read it. That header is still not believed: the proxy may pass it through from
        the client."""
        other = "x-forwarded-for" if self._header == "forwarded" else "forwarded"
        if headers.find(other):
            _problems.log(
                f"proxy-header-{other}",
                logging.WARNING,
                "requests from trusted proxies carry %s but not %s (TRUSTED_PROXY_HEADER): the "
                "proxy's address is recorded as the client's. If the proxy writes %s itself, "
                "set TRUSTED_PROXY_HEADER to %s",
                _SPELLING.get(other, other),
                _SPELLING.get(self._header, self._header),
                _SPELLING.get(other, other),
                _SPELLING.get(other, other),
            )
