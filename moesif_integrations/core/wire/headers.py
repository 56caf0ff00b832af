"""Header names, joining and masking for wire events.

Header *values* under WSGI are latin-1-decoded bytes (PEP 3333); clients routinely send UTF-8
there. Values are re-decoded as UTF-8 so the event carries what the client meant and never
carries text that cannot be encoded as JSON.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, FrozenSet, Iterable, Optional, Tuple, Union

from .memo import Memo

# Canonical spellings that "capitalise each dash-separated word" gets wrong.
_ODD_NAMES: Dict[str, str] = {
    "www-authenticate": "WWW-Authenticate",
    "etag": "ETag",
    "dnt": "DNT",
    "te": "TE",
    "x-xss-protection": "X-XSS-Protection",
    "content-md5": "Content-MD5",
    "x-ua-compatible": "X-UA-Compatible",
    "sec-websocket-key": "Sec-WebSocket-Key",
    "sec-websocket-accept": "Sec-WebSocket-Accept",
    "sec-websocket-version": "Sec-WebSocket-Version",
    "sec-websocket-protocol": "Sec-WebSocket-Protocol",
    "sec-websocket-extensions": "Sec-WebSocket-Extensions",
    "sec-ch-ua": "Sec-CH-UA",
    "sec-ch-ua-mobile": "Sec-CH-UA-Mobile",
    "sec-ch-ua-platform": "Sec-CH-UA-Platform",
}

# Some CGI-style setups (Apache rewrite rules) pass Authorization under another key; moesifwsgi
# read it there too.
_ENVIRON_SPECIAL: Dict[str, str] = {"HTTP_CGI_AUTHORIZATION": "Authorization"}

# Names come from clients, so the caches are bounded: past this size, names are computed
# again instead of remembered (a client inventing names cannot grow memory).
_CACHE_LIMIT = 2048


def canonical_header_name(name: str) -> str:
    """``"x-forwarded-for"`` -> ``"X-Forwarded-For"``, with the odd ones (``ETag``) right."""
    lowered = name.lower()
    result = _ODD_NAMES.get(lowered)
    if result is None:
        result = "-".join(word[:1].upper() + word[1:] for word in lowered.split("-"))
    return result


def _environ_name(key: str) -> Tuple[str, str]:
    name = _ENVIRON_SPECIAL.get(key)
    if name is None:
        bare = key[5:] if key.startswith("HTTP_") else key
        name = canonical_header_name(fix_text(bare).replace("_", "-"))
    return name, name.lower()


def _plain_name(name: Union[str, bytes]) -> Tuple[str, str]:
    if isinstance(name, str):
        text = fix_text(name)
    else:
        # Byte names come from ASGI, lower-case by its spec: give them the canonical case, so
        # an event reads the same whichever adapter captured it.
        text = canonical_header_name(_as_text(name))
    return text, text.lower()


# WSGI environ key, or header name as the app or server gave it -> (the name in events, its
# lower-case form). Remembered, the names of the Flask GET's event cost 33k instructions fewer
# (request) and 10k (response) than derived afresh (valgrind; 7k is about 1 us).
_environ_names: Dict[str, Tuple[str, str]] = Memo(_environ_name, _CACHE_LIMIT)
_plain_names: Dict[Union[str, bytes], Tuple[str, str]] = Memo(_plain_name, _CACHE_LIMIT)


def header_name_from_environ_key(key: str) -> str:
    """``HTTP_X_FORWARDED_FOR`` -> ``X-Forwarded-For``, ``CONTENT_TYPE`` -> ``Content-Type``."""
    return _environ_names[key][0]


def fix_text(value: str) -> str:
    """Re-decodes a WSGI latin-1 string holding UTF-8 bytes; always returns UTF-8-encodable text.

    Bytes that are not UTF-8 become U+FFFD. Text that is not latin-1 at all (a framework that
    already decoded properly) is kept, minus lone surrogates, which JSON encoding would reject.
    """
    if value.isascii():
        return value
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return raw.decode("utf-8", "replace")


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return fix_text(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return fix_text(str(value))


class IndexedHeaders(Dict[str, str]):
    """Joined headers, one entry per name whatever its case, and the lower-case index that finds
    each entry's key (the first spelling seen). Made by ``join_headers``."""

    __slots__ = ("index",)

    index: Dict[str, str]

    def find(self, lower_name: str) -> Optional[str]:
        """The value of the header ``lower_name`` (lower-case), whatever its spelling here."""
        key = self.index.get(lower_name)
        return None if key is None else self[key]

    def replace(self, name: str, value: str) -> None:
        """Makes ``value`` the header's only value, under this spelling, as the last entry."""
        lowered = name.lower()
        key = self.index.get(lowered)
        if key is not None:
            del self[key]
        self.index[lowered] = name
        self[name] = value


def join_headers(pairs: Iterable[Tuple[Any, Any]], from_environ: bool) -> IndexedHeaders:
    """Header pairs as one JSON object: repeated names (any case) joined with ``", "`` in order.

    The first spelling seen names the entry. With ``from_environ`` the names are WSGI environ
    keys and are turned into canonical header names; otherwise they are kept as the app or the
    server spelt them (byte names, from ASGI, get the canonical case). Values become text that
    JSON can carry.
    """
    joined = IndexedHeaders()
    index: Dict[str, str] = {}
    joined.index = index
    names = _environ_names if from_environ else _plain_names
    for key, value in pairs:
        if from_environ and not value and key[:8] == "CONTENT_":
            # wsgiref puts an empty CONTENT_LENGTH in every environ: no header was sent.
            continue
        name, lowered = names[key]
        if type(value) is not str or not value.isascii():
            value = _as_text(value)
        spelt = index.get(lowered)
        if spelt is None:
            index[lowered] = name
            joined[name] = value
        else:
            joined[spelt] = joined[spelt] + ", " + value
    return joined


# ---------------------------------------------------------------------------------- masking

_AUTHORIZATION = 1
_COOKIE = 2
_SET_COOKIE = 3
_OPAQUE = 4

_SENSITIVE_EXACT: Dict[str, int] = {
    "authorization": _AUTHORIZATION,
    "proxy-authorization": _AUTHORIZATION,
    "cookie": _COOKIE,
    "set-cookie": _SET_COOKIE,
    "x-api-key": _OPAQUE,
    "api-key": _OPAQUE,
    "apikey": _OPAQUE,
    "x-auth-token": _OPAQUE,
    "x-access-token": _OPAQUE,
    "x-amz-security-token": _OPAQUE,
    "x-auth": _OPAQUE,
    "x-session": _OPAQUE,
}
# Names containing one of these carry an authorization value (a scheme word, a credential).
_AUTHORIZATION_PARTS: Tuple[str, ...] = ("authorization", "authentication")
_SENSITIVE_PARTS: Tuple[str, ...] = (
    "auth-key",
    "auth_key",
    "access-key",
    "access_key",
    "private-key",
    "private_key",
    "signature",
    "session",
    "api-key",
    "api_key",
    "apikey",
    "secret",
    "token",
    "password",
    "passwd",
    "credential",
    "session-id",
    "sessionid",
)
# Names that contain a sensitive word but carry no credential.
_NEVER_SENSITIVE: FrozenSet[str] = frozenset({"x-moesif-transaction-id"})

# A scheme word worth keeping ("Bearer", "Basic", "AWS4-HMAC-SHA256"), then the credential.
# Letters and dashes only (plus the one well-known scheme with digits), so the first half of a
# "KEY SECRET" style value is not mistaken for a scheme and left in clear.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z-]{0,23}|AWS4-HMAC-SHA256)\s+(\S.*)", re.DOTALL)
# Where one Set-Cookie ends in a joined value: ", " followed by "name=" (an Expires date's
# ", 21 Oct 2015" has no "=" before the next space, so it is not a split point).
_NEXT_SET_COOKIE = re.compile(r",\s*(?=[^;,=\s]+=)")
_COOKIE_SEPARATOR = re.compile(r"[;,]")


class _KeyedHash:
    """HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once.

    Equal to ``hmac.digest(key, message, "sha256")``, 12k instructions fewer per fingerprint of
    a bearer token (valgrind): the stdlib sets up an OpenSSL HMAC context on every call.
    """

    _BLOCK = 64

    def __init__(self, key: bytes) -> None:
        if len(key) > self._BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(self._BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class HeaderMasker:
    """Replaces credential-bearing header values with stable, keyed fingerprints.

    Sensitive by default (``mask_sensitive``): ``Authorization``, ``Proxy-Authorization``,
    ``Cookie``, ``Set-Cookie``, the common API-key headers (``X-Api-Key``, ``Api-Key``,
    ``Apikey``, ``X-Auth-Token``, ``X-Access-Token``, ``X-Amz-Security-Token``, ``X-Auth``,
    ``X-Session``), any name containing ``authorization`` or ``authentication`` (masked like
    ``Authorization``: ``X-Authorization``, ``Authentication``) and any name containing
    ``auth-key``, ``auth_key``, ``access-key``, ``access_key``, ``private-key``,
    ``private_key``, ``signature``, ``session``, ``api-key``, ``api_key``, ``apikey``,
    ``secret``, ``token``, ``password``, ``passwd``, ``credential``, ``session-id`` or
    ``sessionid``. That includes CSRF headers
    (``X-CSRF-Token``): a fingerprint still shows whether the token was sent and whether it
    changed, which is all analytics needs from it. ``X-Moesif-Transaction-Id`` is never masked.
    ``extra_names`` (lower-case) are masked whatever ``mask_sensitive`` says.

    A masked value becomes ``<masked:XXXXXXXXXXXXXXXX>``, the first 16 hex digits of
    HMAC-SHA256(key, value): under one key the same credential always gives the same text (so
    one client's calls can be told apart from another's), and without the key, which never
    leaves the app (``fingerprint_key`` in event.py), a fingerprint cannot confirm a guess.
    Authorization values keep their scheme word (``Bearer <masked:...>``); cookies keep their names
    (``a=<masked:...>; b=<masked:...>``) and Set-Cookie keeps its attributes (``Path``,
    ``Expires``, ...).
    """

    def __init__(self, mask_sensitive: bool, extra_names: Tuple[str, ...], key: bytes) -> None:
        self._mask_sensitive = mask_sensitive
        self._extra = frozenset(name.lower() for name in extra_names)
        self._fingerprints = _KeyedHash(key)
        # A repeated credential's fingerprint: 16k instructions fewer per event (valgrind).
        self._fingerprint_cache: Dict[int, str] = {}
        # Header name as spelt -> kind of masking (0: none); remembered, 82k instructions fewer
        # for the Flask GET's event (valgrind).
        self._kinds: Dict[str, int] = Memo(self._kind_of, _CACHE_LIMIT)

    def _kind_of(self, name: str) -> int:
        lowered = name.lower()
        if lowered in _NEVER_SENSITIVE:
            return 0
        kind = 0
        if self._mask_sensitive:
            kind = _SENSITIVE_EXACT.get(lowered, 0)
            if not kind and any(part in lowered for part in _AUTHORIZATION_PARTS):
                kind = _AUTHORIZATION
            if not kind and any(part in lowered for part in _SENSITIVE_PARTS):
                kind = _OPAQUE
        if not kind and lowered in self._extra:
            kind = _SENSITIVE_EXACT.get(lowered, _OPAQUE)
        return kind

    def fingerprint(self, secret: str) -> str:
        # Keyed by the secret's hash, not the secret: the cache holds no credentials.
        key = hash(secret)
        cached = self._fingerprint_cache.get(key)
        if cached is not None:
            return cached
        digest = self._fingerprints.digest(secret.encode("utf-8", "replace"))
        fingerprint = "<masked:" + digest[:8].hex() + ">"
        if len(self._fingerprint_cache) >= _CACHE_LIMIT:
            self._fingerprint_cache.clear()
        self._fingerprint_cache[key] = fingerprint
        return fingerprint

    def mask(self, headers: Dict[str, str]) -> Dict[str, str]:
        """Headers with sensitive values fingerprinted; ``headers`` itself is not changed."""
        kinds = self._kinds
        if not any(map(kinds.__getitem__, headers)):
            return headers  # nothing to mask
        masked = dict(headers)
        for name, value in headers.items():
            kind = kinds[name]
            if kind == _AUTHORIZATION:
                masked[name] = self._mask_authorization(value)
            elif kind == _COOKIE:
                masked[name] = self._mask_cookie(value)
            elif kind == _SET_COOKIE:
                masked[name] = ", ".join(
                    self._mask_set_cookie(one) for one in _NEXT_SET_COOKIE.split(value)
                )
            elif kind == _OPAQUE:
                masked[name] = self.fingerprint(value)
        return masked

    def _mask_authorization(self, value: str) -> str:
        match = _SCHEME.fullmatch(value.strip())
        if match is None:
            return self.fingerprint(value)
        return match.group(1) + " " + self.fingerprint(match.group(2))

    def _mask_cookie(self, value: str) -> str:
        parts = []
        # Cookie values cannot hold "," (RFC 6265), so it only appears where several Cookie
        # headers (HTTP/2 sends one per cookie) were joined.
        for crumb in _COOKIE_SEPARATOR.split(value):
            crumb = crumb.strip()
            if not crumb:
                continue
            name, eq, cookie_value = crumb.partition("=")
            if eq:
                parts.append(name.strip() + "=" + self.fingerprint(cookie_value.strip()))
            else:
                parts.append(self.fingerprint(crumb))
        return "; ".join(parts)

    def _mask_set_cookie(self, value: str) -> str:
        first, sep, attributes = value.partition(";")
        name, eq, cookie_value = first.partition("=")
        if not eq:
            masked_first = self.fingerprint(first.strip())
        else:
            masked_first = name.strip() + "=" + self.fingerprint(cookie_value.strip())
        return masked_first + sep + attributes
