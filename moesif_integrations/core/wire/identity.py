"""Who called: a user id from the Authorization header, the client address behind proxies.

Both read request data an attacker controls, so both are total functions: malformed input
gives None, never an exception.
"""

from __future__ import annotations

import binascii
import ipaddress
import json
from typing import Any, Dict, List, Optional, Tuple, Union, cast

from .headers import find_header

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

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


def user_id_from_authorization(
    headers: Dict[str, str], header_names: Tuple[str, ...], field: str
) -> Optional[str]:
    """The user id carried by the first of ``header_names`` present in ``headers``.

    Of a comma-joined value only the first part counts. ``Basic <b64>`` gives the username;
    ``Bearer <jwt>``, another scheme followed by a JWT, a bare JWT or a bare base64 JSON object
    give claim ``field`` (key matched case-insensitively) of the payload, decoded as base64url or
    base64 with or without padding. Anything else, or anything malformed, gives None.
    """
    try:
        return _user_id(headers, header_names, field.lower())
    except Exception:  # untrusted input: a parser surprise must not lose the event
        return None


def _user_id(headers: Dict[str, str], header_names: Tuple[str, ...], field: str) -> Optional[str]:
    value = None
    for name in header_names:
        value = find_header(headers, name.lower())
        if value is not None:
            break
    if not value:
        return None
    return _user_id_of_value(value, field)


def user_id_from_value(value: str, field: str) -> Optional[str]:
    """``user_id_from_authorization`` once the header's value is found; ``field`` lower-case."""
    if not value:
        return None
    try:
        return _user_id_of_value(value, field)
    except Exception:  # untrusted input: a parser surprise must not lose the event
        return None


def _user_id_of_value(value: str, field: str) -> Optional[str]:
    # Clients send the same credential again and again. The cache is keyed by the value's
    # hash (and the claim name), so it keeps no credentials; str hashes are 64-bit and
    # randomised per process, so a collision is not a practical concern.
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

_parsed: Dict[str, Optional[IPAddress]] = {}
_PARSED_LIMIT = 4096


def parse_ip(text: str) -> Optional[IPAddress]:
    """An address from ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1`` or ``"[::1]"``.

    IPv4-mapped IPv6 addresses are returned as IPv4, so ``::ffff:10.0.0.1`` is in 10.0.0.0/8.
    """
    if text in _parsed:
        return _parsed[text]
    result = _parse_ip(text)
    if len(_parsed) < _PARSED_LIMIT:
        _parsed[text] = result
    return result


def _parse_ip(text: str) -> Optional[IPAddress]:
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


def _is_trusted(address: IPAddress, trusted: Tuple[IPNetwork, ...]) -> bool:
    # An IPv4 address is simply not "in" an IPv6 network (no error), so mixed tuples are fine.
    return any(address in network for network in trusted)


def _forwarded_for(value: str) -> List[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` header, in order."""
    found = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, eq, item = pair.partition("=")
            if eq and key.strip().lower() == "for":
                found.append(item.strip())
    return found


def client_ip(
    remote_addr: Optional[str], headers: Dict[str, str], trusted: Tuple[IPNetwork, ...]
) -> Optional[str]:
    """The client's address, believing forwarding headers only from trusted proxies.

    The peer is ``remote_addr``; None when the server gave none or it is not an address (a
    forwarding header is never believed without a trusted peer, so None is the safe answer).
    A peer outside ``trusted`` is the client. Behind a trusted peer the hops of ``Forwarded``
    (its ``for=`` values; used when it has any) or else ``X-Forwarded-For`` are walked from right
    to left, skipping trusted addresses: the first untrusted one is the client; if all are
    trusted, the left-most. A hop that is not an address (``unknown``, an obfuscated
    ``_hidden`` id, garbage) ends the walk: a proxy we trust hid what lies beyond it, and
    anything further left was written by someone we do not trust; the answer is then the last
    address walked (or the peer). No header: the peer. Ports and brackets are stripped.
    """
    try:
        return _client_ip(remote_addr, headers, trusted)
    except Exception:  # untrusted input: a parser surprise must not lose the event
        return None


def _client_ip(
    remote_addr: Optional[str], headers: Dict[str, str], trusted: Tuple[IPNetwork, ...]
) -> Optional[str]:
    if not remote_addr:
        return None
    peer = parse_ip(remote_addr)
    if peer is None:
        return None
    if not trusted or not _is_trusted(peer, trusted):
        return str(peer)
    hops: List[str] = []
    forwarded = find_header(headers, "forwarded")
    if forwarded:
        hops = _forwarded_for(forwarded)
    if not hops:
        forwarded_for = find_header(headers, "x-forwarded-for")
        if forwarded_for:
            hops = forwarded_for.split(",")
    answer = peer
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            break
        answer = address
        if not _is_trusted(address, trusted):
            break
    return str(answer)


class ClientIpResolver:
    """``client_ip`` for one TRUSTED_PROXIES setting, remembering each address's verdict.

    Network membership is slow pure-Python in ipaddress and the same few peers (the proxies,
    or the clients themselves) and the same few forwarded clients come again and again, so each
    address's verdict is looked up by its text. A trusted peer's answer depends on the
    forwarding headers, and is the peer itself when there are none. The memory is bounded.
    """

    def __init__(self, trusted: Tuple[IPNetwork, ...]) -> None:
        self._trusted = trusted
        # Address text -> (the address as text or None, whether it is a trusted proxy). Peers
        # and hops apart: hops are written by clients, who must not crowd the peers out.
        self._peers: Dict[str, Tuple[Optional[str], bool]] = {}
        self._hops: Dict[str, Tuple[Optional[str], bool]] = {}
        # Peer text -> the answer, for the peers that are the client themselves (no proxy):
        # one lookup for callers before they call ``resolve``.
        self.clients: Dict[str, str] = {}

    def _verdict(
        self, text: str, known: Dict[str, Tuple[Optional[str], bool]]
    ) -> Tuple[Optional[str], bool]:
        verdict = known.get(text)
        if verdict is None:
            address = parse_ip(text)
            trusted = self._trusted
            if address is None:
                verdict = (None, False)
            else:
                verdict = (str(address), bool(trusted) and _is_trusted(address, trusted))
            if len(known) < _PARSED_LIMIT:
                known[text] = verdict
                if known is self._peers and verdict[0] is not None and not verdict[1]:
                    self.clients[text] = verdict[0]
        return verdict

    def resolve(
        self,
        remote_addr: Optional[str],
        headers: Dict[str, str],
        index: Optional[Dict[str, str]] = None,
    ) -> Optional[str]:
        """``client_ip(remote_addr, headers, trusted)``. ``index`` (lower-case name -> key in
        ``headers``), when given, is how the forwarding headers are found."""
        if not remote_addr:
            return None
        peer_text, is_proxy = self._peers.get(remote_addr) or self._verdict(
            remote_addr, self._peers
        )
        if not is_proxy:
            return peer_text
        if index is None:
            forwarded = find_header(headers, "forwarded")
            forwarded_for = find_header(headers, "x-forwarded-for")
        else:
            forwarded = headers.get(index.get("forwarded"))  # type: ignore[arg-type]
            forwarded_for = headers.get(index.get("x-forwarded-for"))  # type: ignore[arg-type]
        if forwarded is None and forwarded_for is None:
            return peer_text
        try:
            return self._walk(peer_text, forwarded, forwarded_for)
        except Exception:  # untrusted input: a parser surprise must not lose the event
            return None

    def _walk(
        self, peer_text: Optional[str], forwarded: Optional[str], forwarded_for: Optional[str]
    ) -> Optional[str]:
        """``_client_ip``'s walk of the hops from right to left, with the verdicts remembered."""
        hops: List[str] = []
        if forwarded:
            hops = _forwarded_for(forwarded)
        if not hops and forwarded_for:
            hops = forwarded_for.split(",")
        answer = peer_text
        hop_verdicts = self._hops
        for hop in reversed(hops):
            text, is_trusted = hop_verdicts.get(hop) or self._verdict(hop, hop_verdicts)
            if text is None:
                break
            answer = text
            if not is_trusted:
                break
        return answer
