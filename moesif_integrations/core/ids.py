"""Transaction ids: one UUID per exchange, a client's own id reused only when it is a UUID."""

from __future__ import annotations

import random
import re
from typing import Optional

_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# Version 4 and RFC 4122 variant bits.
_VERSION_MASK = ~(0xF000 << 64) & ~(0xC000 << 48) & ((1 << 128) - 1)
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)
# random is reseeded in a forked child by the interpreter, so children never repeat ids.
_bits = random.getrandbits


def new_transaction_id() -> str:
    """A random UUID4 as text; cheaper than uuid.uuid4() on the request path."""
    h = "%032x" % ((_bits(128) & _VERSION_MASK) | _VERSION_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def transaction_id_for(client_supplied: Optional[str]) -> str:
    """Reuses the client's X-Moesif-Transaction-Id only when it is a well-formed UUID."""
    if client_supplied and len(client_supplied) == 36 and _UUID_TEXT.fullmatch(client_supplied):
        return client_supplied.lower()
    return new_transaction_id()
