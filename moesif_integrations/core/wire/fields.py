"""Credential fields masked in query strings and in JSON and form bodies (docs/protocol.md,
"Masking").

Names are matched without regard to case. A masked JSON value becomes ``"<masked>"``; a masked
query or form value becomes ``%3Cmasked%3E`` (``<masked>`` percent-encoded), the rest of the
text staying exactly as it was sent.
"""

from __future__ import annotations

import functools
from typing import FrozenSet
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


@functools.lru_cache(maxsize=64)
def field_names(names: FrozenSet[str]) -> FrozenSet[str]:
    """``names`` in lower case, the form every matcher here takes; made once per distinct set."""
    return frozenset(name.lower() for name in names if name)


def mask_urlencoded(text: str, names: FrozenSet[str]) -> str:
    """``name=value&...`` (a query string, a form body as latin-1 text) with the value of every
    parameter whose name, percent-decoded, is one of ``names`` (lower-case, see field_names)
    replaced; ``text`` itself when nothing is masked."""
    if not names or not text:
        return text
    parts = text.split("&")
    changed = False
    for index, part in enumerate(parts):
        raw_name, _, value = part.partition("=")
        if not value:
            continue  # no value (or none given) to hide
        name = unquote_plus(raw_name) if "%" in raw_name or "+" in raw_name else raw_name
        if name.strip().lower() in names:
            parts[index] = raw_name + "=" + MASKED_URLENCODED
            changed = True
    return "&".join(parts) if changed else text
