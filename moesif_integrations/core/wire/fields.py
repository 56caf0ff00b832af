"""Credential fields masked in query strings and in JSON and form bodies (docs/protocol.md,
"Masking").

Names are matched without regard to case. A masked JSON value becomes ``"<masked>"``; a masked
query or form value becomes ``%3Cmasked%3E`` (``<masked>`` percent-encoded), the rest of the
text staying exactly as it was sent.
"""

from __future__ import annotations

import functools
import re
from typing import FrozenSet, Iterable, Optional, Pattern
from urllib.parse import unquote_plus

# The default list (MASK_SENSITIVE_FIELDS), lower-case.
SENSITIVE_FIELDS: FrozenSet[str] = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "new_password",
        "old_password",
        "current_password",
        "secret",
        "client_secret",
        "api_secret",
        "secret_key",
        "private_key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "session_token",
        "bearer_token",
        "api_key",
        "apikey",
        "api-key",
        "access_key",
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-security-token",
        "x-amz-credential",
        "credential",
        "credentials",
    }
)

MASKED_URLENCODED = "%3Cmasked%3E"


class FieldNames:
    """A set of field names, lower-case, matched without regard to case, with a quick test of
    whether a JSON document can hold one of them as a key."""

    __slots__ = ("names", "_quoted")

    def __init__(self, names: Iterable[str]) -> None:
        self.names: FrozenSet[str] = frozenset(name.lower() for name in names if name)
        self._quoted: Optional[Pattern[bytes]] = None
        if self.names and all(name.isascii() for name in self.names):
            alternatives = b"|".join(re.escape(name.encode("ascii")) for name in sorted(self.names))
            self._quoted = re.compile(b'"(?:' + alternatives + b')"', re.IGNORECASE)

    def __bool__(self) -> bool:
        return bool(self.names)

    def may_be_key_in(self, data: bytes) -> bool:
        """False when no key of ``data`` (JSON) can be one of the names, which spares the parse
        and the walk. A key may be written with escapes ("pass\\u0077ord"), so any backslash
        means "maybe"; so does a name that is not ASCII (bytes only fold ASCII case)."""
        if not self.names:
            return False
        if self._quoted is None or b"\\" in data:
            return True
        return self._quoted.search(data) is not None


@functools.lru_cache(maxsize=64)
def field_names(names: FrozenSet[str]) -> FieldNames:
    """The FieldNames of ``names``, made once per distinct set."""
    return FieldNames(names)


def mask_urlencoded(text: str, names: FieldNames) -> str:
    """``name=value&...`` (a query string, a form body as latin-1 text) with the value of every
    parameter whose name, percent-decoded, is one of ``names`` replaced; ``text`` itself when
    nothing is masked."""
    if not names or not text:
        return text
    parts = text.split("&")
    changed = False
    for index, part in enumerate(parts):
        name, equals, value = part.partition("=")
        if equals and value and unquote_plus(name).strip().lower() in names.names:
            parts[index] = name + "=" + MASKED_URLENCODED
            changed = True
    return "&".join(parts) if changed else text
