"""Transaction ids: one UUID per exchange, a client's own id reused only when it is a UUID."""

from __future__ import annotations

import os
import random
import re
from typing import List, Optional

_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# random is reseeded in a forked child by the interpreter, so children never repeat ids.
_bits = random.getrandbits
# Ids are made in batches: one call for many keeps the request path's share small and warm in
# the CPU caches (made one at a time between an app's requests, each cost several times more).
_BATCH = 64
_HEX_PER_ID = 32
_pool: List[str] = []
# The RFC 4122 variant: the two top bits of the 17th hex digit are 10.
_VARIANT_DIGIT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def _refill() -> None:
    text = f"{_bits(_BATCH * _HEX_PER_ID * 4):0{_BATCH * _HEX_PER_ID}x}"
    variant = _VARIANT_DIGIT
    _pool.extend(
        [
            f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant[h[16]]}{h[17:20]}-{h[20:32]}"
            for h in [text[i : i + _HEX_PER_ID] for i in range(0, len(text), _HEX_PER_ID)]
        ]
    )


def new_transaction_id() -> str:
    """A random UUID4 as text; cheaper than uuid.uuid4() on the request path."""
    while True:
        try:
            return _pool.pop()  # atomic: threads never get the same id
        except IndexError:
            _refill()


if hasattr(os, "register_at_fork"):
    # A child must not hand out the ids its parent already made.
    os.register_at_fork(after_in_child=_pool.clear)


def transaction_id_for(client_supplied: Optional[str]) -> str:
    """Reuses the client's X-Moesif-Transaction-Id only when it is a well-formed UUID."""
    if client_supplied and len(client_supplied) == 36 and _UUID_TEXT.fullmatch(client_supplied):
        return client_supplied.lower()
    return new_transaction_id()
